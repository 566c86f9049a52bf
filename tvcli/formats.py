"""The image file formats tvcli reads and writes, by file ending.

A module of constants without numpy, so that the command line can plan and list
folders (and answer ``--help``) before the image libraries are imported;
:mod:`tvcli.io` does the reading and writing.
"""

from __future__ import annotations

__all__ = ["EXTENSIONS", "IMAGE_EXTENSIONS"]

#: File extension -> format name (the formats :func:`tvcli.io.write_image` writes).
EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".webp": "webp",
}
#: File endings that folder scans for reading treat as images (``tvcli eval``).
IMAGE_EXTENSIONS = (*EXTENSIONS, ".npy")
