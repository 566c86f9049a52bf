"""Image reading for tvcli: every image becomes float32 H x W x C in [0, 1].

Conventions (DESIGN.md section 1): integer images are scaled by their type's
maximum, so 8-bit files are divided by 255 and 16-bit files by 65535; boolean
images become 0 / 1; float images (TIFF, ``.npy``) keep their values unchanged
(they are *not* clipped or rescaled - pass the right ``data_range`` to the
metrics if they are not in [0, 1]). Grey images get C = 1; colour images keep
all their channels (RGB 3, RGBA 4); multi-frame files (GIF, multi-page TIFF)
are rejected rather than silently cut to one frame.

``read_image`` raises :class:`ImageReadError` (a ``ValueError``) with a
one-line message for a missing, unreadable or unsupported file, so a command
line can print it and go on with the next file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ImageMeta", "ImageReadError", "read_image", "to_tensor"]

#: File endings that folder scans treat as images (lower case, with the dot).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".npy")


class ImageReadError(ValueError):
    """A file could not be read as one image (message is one line)."""


@dataclass(frozen=True)
class ImageMeta:
    """Facts about a file as stored, before conversion to float32 [0, 1].

    Attributes:
        path: the file read.
        dtype: numpy dtype of the stored samples (e.g. ``'uint8'``, ``'uint16'``).
        bit_depth: bits per sample for integer types (8, 16, ...), 0 for float.
        scale: the divisor applied (255, 65535, 1 for float / bool).
        shape: stored array shape (H, W) or (H, W, C).
        channels: C of the returned array.
    """

    path: str
    dtype: str
    bit_depth: int
    scale: float
    shape: tuple[int, ...]
    channels: int


def _load(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import imageio.v3 as iio

    with warnings.catch_warnings():
        # On a file no plugin recognises imageio tries them all, and some warn
        # about their own deprecation; the one-line error we raise says enough.
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(iio.imread(path))


def read_image(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """Reads one image file.

    Args:
        path: an image file (PNG, JPEG, TIFF, BMP, WebP, anything imageio reads)
            or a ``.npy`` array of shape (H, W) or (H, W, C).

    Returns:
        ``(img, meta)``: ``img`` is a C-contiguous float32 array of shape
        (H, W, C) - values in [0, 1] for integer and bool files, unchanged for
        float files - and ``meta`` an :class:`ImageMeta`.

    Raises:
        ImageReadError: the file is missing, unreadable, or not one 2-D image.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    try:
        arr = _load(p)
    except Exception as exc:  # imageio raises many types; the reason is in the text
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{p}: cannot read as an image ({reason})") from None
    stored_shape = tuple(int(d) for d in arr.shape)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3 or arr.shape[-1] > 4:
        raise ImageReadError(
            f"{p}: expected one H x W or H x W x C (C <= 4) image, got array of shape "
            f"{tuple(arr.shape)} (multi-frame files are not supported)"
        )
    dtype = arr.dtype
    if dtype == np.bool_:
        scale, bits = 1.0, 1
    elif np.issubdtype(dtype, np.unsignedinteger):
        bits = dtype.itemsize * 8
        scale = float(np.iinfo(dtype).max)
    elif np.issubdtype(dtype, np.signedinteger):
        # Rare (some TIFFs); scaling by the type's max keeps 0 at 0.
        bits = dtype.itemsize * 8
        scale = float(np.iinfo(dtype).max)
    elif np.issubdtype(dtype, np.floating):
        scale, bits = 1.0, 0
    else:
        raise ImageReadError(f"{p}: unsupported sample type {dtype}")
    img = arr.astype(np.float32)
    if scale != 1.0:
        img /= np.float32(scale)
    if not np.isfinite(img).all():
        raise ImageReadError(f"{p}: contains NaN or infinite values")
    meta = ImageMeta(str(p), str(dtype), bits, scale, stored_shape, int(img.shape[-1]))
    return np.ascontiguousarray(img), meta


def to_tensor(img: np.ndarray, device: str | None = None):
    """H x W x C float array -> torch float32 tensor of shape (C, H, W)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()
    return t.to(device) if device is not None else t
