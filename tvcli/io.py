"""Image reading and writing for tvcli (imageio + Pillow/tifffile).

Images are handed to the solvers as float32 arrays of shape (H, W, C) with values
in [0, 1]: 8-bit samples are divided by 255, 16-bit ones by 65535; float TIFFs
are passed through unscaled. C is 1 (gray), 2 (gray + alpha), 3 (RGB) or
4 (RGBA); :class:`ImageMeta` remembers what the file held so that the output can
keep the input's bit depth. EXIF orientation is applied on read (the output is
stored upright without an orientation tag).

Supported: PNG, JPEG, TIFF, BMP, WebP (all without downloads), and ``.npy``
arrays for reading. 16-bit PNGs go through :mod:`tvcli._png16` because Pillow
truncates 16-bit colour PNGs. Multi-frame files (multi-page TIFF) are rejected
rather than silently cut to one frame; float data with NaN/Inf is rejected.

Writes are atomic: the encoded bytes go to a temporary file in the destination
folder which is then renamed over the target, so an interrupted run never
leaves a partial image behind.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "ImageError",
    "ImageMeta",
    "ImageReadError",
    "ImageWriteError",
    "UnsupportedFormatError",
    "atomic_write_bytes",
    "decode_image",
    "encode_image",
    "ensure_folder",
    "format_from_path",
    "read_image",
    "to_float",
    "to_samples",
    "to_tensor",
    "write_image",
]

# File extension -> format name.
EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
    ".bmp": "bmp", ".webp": "webp",
}
# Sample types each format can store, best first, and channel counts it can hold.
_DTYPES = {
    "png": ("uint16", "uint8"), "tiff": ("float32", "uint16", "uint8"),
    "jpeg": ("uint8",), "bmp": ("uint8",), "webp": ("uint8",),
}
_CHANNELS = {"png": (1, 2, 3, 4), "tiff": (1, 2, 3, 4), "jpeg": (1, 3), "bmp": (1, 3),
             "webp": (3, 4)}
#: File endings that folder scans for reading treat as images (``tvcli eval``).
IMAGE_EXTENSIONS = (*EXTENSIONS, ".npy")
_MAXVAL = {"uint8": 255.0, "uint16": 65535.0}
# Pillow modes read as they are (P, palette, is expanded to RGB/RGBA by imageio).
_PILLOW_NATIVE = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F"}


class ImageError(ValueError):
    """Base class of image I/O errors; the message is one line for the user."""


class ImageReadError(ImageError):
    """The file is unreadable, corrupt or truncated."""


class UnsupportedFormatError(ImageReadError):
    """The format (or its bit depth / channel layout) is not supported."""


class ImageWriteError(ImageError):
    """The output could not be written (folder missing or not writable, ...)."""


@dataclass(frozen=True)
class ImageMeta:
    """What an image file held, as read by :func:`read_image`.

    Attributes:
        format: 'png', 'jpeg', 'tiff', 'bmp' or 'webp'.
        dtype: sample type in the file: 'uint8', 'uint16' or 'float32'.
        width, height: size in pixels (after EXIF orientation).
        channels: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
        path: the file read ('' for bytes).
    """

    format: str
    dtype: str
    width: int
    height: int
    channels: int
    path: str = ""

    @property
    def has_alpha(self) -> bool:
        """Whether the last channel is alpha (gray + alpha or RGBA)."""
        return self.channels in (2, 4)

    @property
    def color_channels(self) -> int:
        """Channels that are filtered (alpha excluded)."""
        return self.channels - int(self.has_alpha)

    @property
    def bit_depth(self) -> int:
        """Bits per integer sample: 8 or 16; 0 for float data (kept as stored)."""
        return {"uint8": 8, "uint16": 16}.get(self.dtype, 0)

    @property
    def scale(self) -> float:
        """The divisor applied on read: 255, 65535, or 1 for float data."""
        return _MAXVAL.get(self.dtype, 1.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the array :func:`read_image` returns."""
        return (self.height, self.width, self.channels)

    def as_dict(self) -> dict:
        """A JSON-serialisable dict (with bit_depth and has_alpha)."""
        return {**asdict(self), "bit_depth": self.bit_depth, "has_alpha": self.has_alpha}


def sniff_format(data: bytes) -> str | None:
    """The format of encoded image bytes from their magic number, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def format_from_path(path: str | os.PathLike) -> str:
    """The output format named by a path's extension; raises UnsupportedFormatError."""
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise UnsupportedFormatError(
            f"unsupported output format {ext or '(no extension)'!r}; "
            f"use one of {', '.join(sorted(EXTENSIONS))}"
        )
    return EXTENSIONS[ext]


# ---------------------------------------------------------------- reading

def to_float(samples: np.ndarray) -> tuple[np.ndarray, str]:
    """Integer/float samples -> (float32 (H, W, C) in [0, 1], file dtype name)."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.dtype == np.bool_:
        return samples.astype(np.float32), "uint8"
    if samples.dtype in (np.uint8, np.uint16):  # divide in place: one float copy, not two
        dtype = str(samples.dtype)
        img = samples.astype(np.float32)
        img /= np.float32(_MAXVAL[dtype])
        return img, dtype
    if samples.dtype in (np.int32, np.uint32) and samples.size and samples.max() <= 65535 \
            and samples.min() >= 0:  # Pillow's 'I' mode for 16-bit gray
        return samples.astype(np.float32) / np.float32(65535.0), "uint16"
    if samples.dtype in (np.float16, np.float32, np.float64):
        return samples.astype(np.float32), "float32"
    raise UnsupportedFormatError(f"unsupported sample type {samples.dtype}")


def _decode_pillow(data: bytes) -> np.ndarray:
    import imageio.v3 as iio

    mode = iio.immeta(data, plugin="pillow").get("mode")
    # CMYK, YCbCr, LAB, ... are converted to RGB; the rest is read as stored.
    kwargs = {} if mode in _PILLOW_NATIVE else {"mode": "RGB"}
    img = iio.imread(data, plugin="pillow", rotate=True, **kwargs)
    if mode == "PA" and img.ndim == 3 and img.shape[2] == 2:  # defensive: palette+alpha
        img = iio.imread(data, plugin="pillow", rotate=True, mode="RGBA")
    return img


def _decode_tiff(data: bytes) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if len(tif.pages) > 1:
            raise UnsupportedFormatError(f"multi-page TIFF ({len(tif.pages)} pages) is not "
                                         "supported; expected one image")
        page = tif.pages[0]
        img = page.asarray()
        if page.planarconfig == 2 and img.ndim == 3:  # separate planes: (C, H, W)
            img = np.moveaxis(img, 0, -1)
    return img


def decode_image(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, ImageMeta]:
    """Decodes encoded image bytes; see :func:`read_image`."""
    from tvcli import _png16

    fmt = sniff_format(data)
    if fmt is None:
        if not data:
            raise ImageReadError(f"{name}: empty file")
        raise UnsupportedFormatError(
            f"{name}: cannot read: not a PNG, JPEG, TIFF, BMP or WebP image "
            "(unsupported format)")
    try:
        if fmt == "png" and _png16.is_png16(data):
            samples = _png16.decode_png16(data)
        elif fmt == "tiff":
            samples = _decode_tiff(data)
        else:
            samples = _decode_pillow(data)
    except ImageError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow / tifffile / zlib raise many types for bad files
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{name}: cannot read {fmt.upper()} image (corrupt or "
                             f"truncated?): {why}") from exc
    return _from_samples(samples, fmt, name)


def _from_samples(samples: np.ndarray, fmt: str, name: str) -> tuple[np.ndarray, ImageMeta]:
    """Checks the layout, converts to float32 [0, 1] and builds the meta."""
    if samples.ndim not in (2, 3) or (samples.ndim == 3 and samples.shape[2] > 4) \
            or samples.size == 0:
        raise UnsupportedFormatError(
            f"{name}: expected one H x W or H x W x C (C <= 4) image, got array of shape "
            f"{tuple(samples.shape)}")
    img, dtype = to_float(samples)
    if dtype == "float32" and not np.isfinite(img).all():
        raise ImageReadError(f"{name}: contains NaN or infinite values")
    height, width, channels = img.shape
    return img, ImageMeta(fmt, dtype, width, height, channels, name)


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Reads an image file into float32 (H, W, C) in [0, 1] and its :class:`ImageMeta`.

    8-bit samples are divided by 255 and 16-bit by 65535; float TIFFs are kept as
    stored. EXIF orientation is applied. Palette images become RGB(A), CMYK RGB.

    ``.npy`` files (H x W or H x W x C arrays) are read too; float data is kept
    as stored and must be finite.

    Raises:
        ImageReadError: missing, unreadable, corrupt or truncated file (a
            ValueError; the message is one line naming the file).
        UnsupportedFormatError: (a subclass) not a PNG, JPEG, TIFF, BMP, WebP or
            .npy, or an unsupported layout.
    """
    if Path(path).suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ImageReadError(f"{path}: no such file") from None
        except (OSError, ValueError) as exc:
            raise ImageReadError(f"{path}: cannot read .npy array ({exc})") from None
        return _from_samples(arr, "npy", str(path))
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path))


# ---------------------------------------------------------------- writing

def choose_dtype(fmt: str, wanted: str, *, strict: bool = False) -> str:
    """The sample type to store: ``wanted`` if ``fmt`` can hold it, else the closest.

    With ``strict`` an impossible request raises UnsupportedFormatError instead.
    """
    allowed = _DTYPES[fmt]
    if wanted in allowed:
        return wanted
    if strict:
        raise UnsupportedFormatError(
            f"{fmt.upper()} cannot store {wanted} samples (it can: {', '.join(allowed)})")
    return allowed[0]  # float -> uint16 in PNG; 16-bit -> 8-bit in JPEG/BMP/WebP


def to_samples(img: np.ndarray, dtype: str) -> np.ndarray:
    """float (H, W, C) -> samples of ``dtype``; integers are clipped to [0, 1] and rounded."""
    if dtype == "float32":
        return np.ascontiguousarray(img, dtype=np.float32)
    out = np.clip(img, 0.0, 1.0)
    out *= np.float32(_MAXVAL[dtype])
    np.rint(out, out=out)  # round, not truncate: 0.999 * 255 must give 255
    return out.astype(dtype)


def encode_image(img: np.ndarray, fmt: str, dtype: str) -> bytes:
    """Encodes float (H, W, C) data as ``fmt`` with samples of ``dtype`` (must be allowed)."""
    import imageio.v3 as iio

    from tvcli import _png16

    if dtype not in _DTYPES[fmt]:
        raise UnsupportedFormatError(f"{fmt.upper()} cannot store {dtype} samples")
    channels = img.shape[2]
    if channels not in _CHANNELS[fmt]:
        if fmt == "webp" and channels in (1, 2):  # WebP has no gray mode: replicate
            img = np.concatenate([img[:, :, :1]] * 3 + ([img[:, :, 1:]] if channels == 2
                                                         else []), axis=2)
        else:
            raise UnsupportedFormatError(
                f"{fmt.upper()} cannot store an alpha channel; write PNG, TIFF or WebP")
    samples = to_samples(img, dtype)
    if samples.shape[2] == 1:
        samples = samples[:, :, 0]
    if fmt == "tiff":
        import tifffile

        buf = io.BytesIO()
        photometric = "rgb" if samples.ndim == 3 and samples.shape[2] >= 3 else "minisblack"
        extrasamples = ("unassalpha",) if samples.ndim == 3 and samples.shape[2] in (2, 4) \
            else None
        tifffile.imwrite(buf, samples, photometric=photometric, extrasamples=extrasamples)
        return buf.getvalue()
    if fmt == "png" and dtype == "uint16":
        return _png16.encode_png16(samples)
    # JPEG: high quality without chroma subsampling (TV keeps colour edges sharp);
    # WebP: lossless, and "exact" keeps the colour under fully transparent pixels.
    options = {"jpeg": {"quality": 95, "subsampling": 0},
               "webp": {"lossless": True, "exact": True}}.get(fmt, {})
    return iio.imwrite("<bytes>", samples, extension="." + ("jpg" if fmt == "jpeg" else fmt),
                       plugin="pillow", **options)


def ensure_folder(folder: str | os.PathLike) -> None:
    """Creates ``folder`` and its parents; ImageWriteError (one line) if impossible."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ImageWriteError(f"cannot create folder {str(folder)!r}: a file is in the way "
                              "(not a folder)") from None
    except OSError as exc:
        raise ImageWriteError(
            f"cannot create folder {str(folder)!r} ({exc.strerror or exc})") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically: temp file in the same folder + rename.

    On any error, KeyboardInterrupt included, the temp file is removed and
    ``path`` is untouched. Raises ImageWriteError with a one-line reason.
    """
    path = Path(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    except FileNotFoundError:
        if folder.is_dir():  # e.g. /proc: the folder is there but files cannot be made
            raise ImageWriteError(f"{path}: cannot write in folder {str(folder)!r}") from None
        raise ImageWriteError(f"{path}: folder {str(folder)!r} does not exist") from None
    except NotADirectoryError:
        raise ImageWriteError(f"{path}: {str(folder)!r} is not a folder") from None
    except OSError as exc:
        raise ImageWriteError(
            f"{path}: cannot write in folder {str(folder)!r} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ImageWriteError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise


def write_image(
    path: str | os.PathLike,
    img: np.ndarray,
    meta: ImageMeta | None = None,
    *,
    dtype: str | None = None,
) -> ImageMeta:
    """Writes float (H, W, C) data atomically; the format comes from the extension.

    The sample type is ``dtype`` if given (an error if the format cannot hold
    it), else ``meta.dtype`` (the input's bit depth) where the format can hold
    it, else the closest the format offers (float -> 16-bit PNG, 16-bit -> 8-bit
    JPEG). Integer outputs are clipped to [0, 1] and rounded.

    Returns:
        The :class:`ImageMeta` of what was written.
    """
    fmt = format_from_path(path)
    wanted = dtype or (meta.dtype if meta else "uint8")
    stored = choose_dtype(fmt, wanted, strict=dtype is not None)
    if img.ndim == 2:
        img = img[:, :, None]
    atomic_write_bytes(path, encode_image(img, fmt, stored))
    height, width, channels = img.shape
    return ImageMeta(fmt, stored, width, height, channels)


def to_tensor(img: np.ndarray, device: str | None = None):
    """H x W x C float array -> torch float32 tensor of shape (C, H, W)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()
    return t.to(device) if device is not None else t
