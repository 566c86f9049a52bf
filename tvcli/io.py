"""Image reading and writing for tvcli, on maintained codecs.

Images are handed to the solvers as float32 arrays of shape (H, W, C) with values
in [0, 1]: 8-bit samples are divided by 255, 16-bit ones by 65535; float TIFFs
are passed through unscaled. C is 1 (gray), 2 (gray + alpha), 3 (RGB) or
4 (RGBA); :class:`ImageMeta` remembers what the file held (bit depth, ICC
profile, DPI, EXIF) so that the output can keep it. EXIF / TIFF orientation is
applied on read (the output is stored upright, its orientation tag dropped).

Codecs: PNG pixels through libpng (``imagecodecs``; 1-16 bits, palettes and tRNS
transparency expanded to alpha; interlaced files through ``pypng``), TIFF through
``tifffile`` + ``imagecodecs`` (LZW, deflate, zstd, JPEG, ...; MINISWHITE and
palettes converted), JPEG, BMP and WebP through Pillow, which also reads the
metadata. ``.npy`` arrays can be read too. Multi-frame files (multi-page TIFF,
animated PNG and WebP) are rejected rather than silently cut to one frame
(:func:`read_volume` reads a TIFF stack as one volume, :func:`write_volume` writes
one);
float data with NaN/Inf is rejected; images above the decompression-bomb limit
(:func:`max_pixels`) are refused before decoding.

Writes are atomic: the encoded bytes go to a temporary file in the destination
folder which is then renamed over the target, so an interrupted run never
leaves a partial image behind.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tvcli.formats import EXTENSIONS, IMAGE_EXTENSIONS

__all__ = [
    "EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "ImageError",
    "ImageMeta",
    "ImageReadError",
    "ImageWriteError",
    "UnsupportedFormatError",
    "VOLUME_DTYPES",
    "VolumeMeta",
    "atomic_write_bytes",
    "decode_image",
    "decode_volume",
    "encode_image",
    "encode_volume",
    "ensure_folder",
    "format_from_path",
    "read_image",
    "read_volume",
    "to_float",
    "to_samples",
    "to_tensor",
    "write_image",
    "write_volume",
]

# Sample types each format can store, best first, and channel counts it can hold.
_DTYPES = {
    "png": ("uint16", "uint8"), "tiff": ("float32", "uint16", "uint8"),
    "jpeg": ("uint8",), "bmp": ("uint8",), "webp": ("uint8",),
}
_CHANNELS = {"png": (1, 2, 3, 4), "tiff": (1, 2, 3, 4), "jpeg": (1, 3), "bmp": (1, 3),
             "webp": (3, 4)}
_MAXVAL = {"uint8": 255.0, "uint16": 65535.0}
# Pillow modes read as they are (palettes and colour keys are expanded to RGB(A)).
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
        icc_profile: the embedded ICC colour profile (raw bytes), if any and if its
            colour space fits the pixels (a CMYK JPEG's profile is dropped with
            the conversion to RGB).
        dpi: (horizontal, vertical) resolution in dots per inch, if stored.
        exif: the EXIF block (TIFF-structured bytes as Pillow writes them), with the
            orientation tag removed because the pixels are stored upright.
        planar: a TIFF whose channels were stored in separate planes (the array is
            (H, W, C) all the same; a TIFF written with this meta stores them so too).
    """

    format: str
    dtype: str
    width: int
    height: int
    channels: int
    path: str = ""
    icc_profile: bytes | None = field(default=None, repr=False)
    dpi: tuple[float, float] | None = None
    exif: bytes | None = field(default=None, repr=False)
    planar: bool = False

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
        """A JSON-serialisable dict (with bit_depth and has_alpha; ICC and EXIF as
        their sizes in bytes, 0 when absent)."""
        return {"format": self.format, "dtype": self.dtype, "width": self.width,
                "height": self.height, "channels": self.channels, "path": self.path,
                "bit_depth": self.bit_depth, "has_alpha": self.has_alpha,
                "icc_profile_bytes": len(self.icc_profile or b""),
                "dpi": list(self.dpi) if self.dpi else None,
                "exif_bytes": len(self.exif or b"")}


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


class _Extras:
    """Metadata gathered while decoding: ICC profile, DPI, EXIF, orientation."""

    def __init__(self) -> None:
        self.icc_profile: bytes | None = None
        self.dpi: tuple[float, float] | None = None
        self.exif: bytes | None = None
        self.orientation = 1
        self.planar = False  # TIFF channels in separate planes (PlanarConfiguration 2)


def max_pixels() -> int:
    """The decompression-bomb limit: images with more pixels are refused unread.

    Pillow's own limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP),
    applied to every format; ``TVCLI_MAX_PIXELS`` overrides it.
    """
    env = os.environ.get("TVCLI_MAX_PIXELS")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ImageError(f"TVCLI_MAX_PIXELS must be a number, got {env!r}") from None
    from PIL import Image

    return 2 * int(Image.MAX_IMAGE_PIXELS or 0) or 1 << 62


def _open_pillow(data: bytes):
    """``PIL.Image.open`` on bytes (header only, no pixels decoded yet).

    Pillow's own size guard is switched off for the call: the caller applies the
    same limit through :func:`_check_pixels` right after, so that every format
    gets one message and ``TVCLI_MAX_PIXELS`` applies to all of them.
    """
    import warnings

    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(width: int, height: int) -> None:
    """UnsupportedFormatError before decoding an image larger than :func:`max_pixels`."""
    limit = max_pixels()
    if width * height > limit:
        raise UnsupportedFormatError(
            f"{width}x{height} = {width * height / 1e6:.0f} megapixels is above the "
            f"decompression-bomb limit of {limit / 1e6:.0f} megapixels (a guard against "
            "malicious files); set TVCLI_MAX_PIXELS to allow larger images")


def _pillow_extras(im) -> _Extras:
    """ICC profile, DPI and EXIF (with its orientation) of an opened Pillow image."""
    extras = _Extras()
    extras.icc_profile = im.info.get("icc_profile") or None
    dpi = im.info.get("dpi")
    if dpi and all(float(v) > 0 for v in dpi[:2]):
        extras.dpi = (float(dpi[0]), float(dpi[1]))
    try:
        exif = im.getexif()
    except Exception:  # a broken EXIF block must not make the pixels unreadable
        return extras
    if len(exif):
        extras.orientation = int(exif.get(_ORIENTATION, 1) or 1)
        if _ORIENTATION in exif:
            del exif[_ORIENTATION]  # the pixels are stored upright on output
        extras.exif = exif.tobytes() if len(exif) else None
    return extras


def _refuse_animation(im, fmt: str) -> None:
    """UnsupportedFormatError for a file holding several frames (animated PNG or
    WebP): decoding would silently keep the first frame only (issue 27)."""
    frames = getattr(im, "n_frames", 1) or 1
    if frames > 1:
        raise UnsupportedFormatError(
            f"animated {fmt} ({frames} frames) is not supported: tvcli would keep only "
            "the first frame; extract the frames to single images first")


def _decode_png(data: bytes) -> tuple[np.ndarray, _Extras]:
    """PNG of any bit depth / colour type; tRNS transparency becomes an alpha channel.

    libpng (through imagecodecs) decodes the pixels; pypng the rare interlaced
    files (libpng's simple reader would print a warning for each); Pillow reads
    the header and metadata only.
    """
    import imagecodecs

    with _open_pillow(data) as im:  # header and chunks before IDAT only
        _check_pixels(*im.size)
        _refuse_animation(im, "PNG")  # libpng would decode the default image only
        extras = _pillow_extras(im)
        interlaced = bool(im.info.get("interlace"))
    if not interlaced:
        return imagecodecs.png_decode(data), extras
    import png  # pypng

    width, height, rows, info = png.Reader(bytes=data).asDirect()  # expands palette/tRNS
    samples = np.vstack([np.asarray(row) for row in rows]).reshape(height, width,
                                                                   info["planes"])
    depth = info["bitdepth"]
    if depth not in (8, 16):  # 1/2/4-bit gray, or an sBIT depth: rescale to 8 / 16 bits
        top = 255 if depth < 8 else 65535
        samples = np.rint(samples * (top / (2 ** depth - 1)))
    return samples.astype(np.uint8 if depth <= 8 else np.uint16), extras


_TIFF_RESOLUTION_UNIT = {2: 1.0, 3: 2.54}  # inch, centimetre -> factor to dots per inch


def _decode_tiff(data: bytes) -> tuple[np.ndarray, _Extras]:
    """One-page TIFF via tifffile (imagecodecs for LZW, deflate, JPEG, zstd, ...).

    MINISWHITE (0 = white) is inverted to the usual 0 = black, a palette is
    applied, the ICC profile and resolution are kept.
    """
    import tifffile

    extras = _Extras()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if len(tif.pages) > 1:
            raise UnsupportedFormatError(f"multi-page TIFF ({len(tif.pages)} pages) is not "
                                         "supported; expected one image")
        page = tif.pages[0]
        if int(getattr(page, "imagedepth", 1) or 1) > 1:
            raise UnsupportedFormatError(
                f"3-D TIFF (one page of depth {page.imagedepth}) is not supported as one "
                "image; expected a 2-D image")
        _check_pixels(int(page.imagewidth), int(page.imagelength))
        photometric = tifffile.PHOTOMETRIC(page.photometric)
        allowed = {tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE,
                   tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.PALETTE}
        if photometric == tifffile.PHOTOMETRIC.YCBCR and page.compression in (6, 7):
            allowed.add(photometric)  # JPEG-in-TIFF: tifffile decodes it to RGB
        if photometric not in allowed:
            raise UnsupportedFormatError(
                f"TIFF colour space {photometric.name} is not supported (use gray, RGB or "
                "palette)")
        img = page.asarray()
        if page.planarconfig == 2 and img.ndim == 3:  # separate planes: (C, H, W)
            img = np.moveaxis(img, 0, -1)
            extras.planar = True
        if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            img = _invert_first_channel(img)
        elif photometric == tifffile.PHOTOMETRIC.PALETTE:
            cmap = np.asarray(page.colormap)  # (3, 2**bits) uint16
            if np.all(cmap % 257 == 0):
                cmap = (cmap // 257).astype(np.uint8)
            img = np.moveaxis(cmap[:, img], 0, -1)
        tags = page.tags
        if 34675 in tags:  # InterColorProfile
            extras.icc_profile = bytes(tags[34675].value)
        extras.orientation = int(tags[274].value) if 274 in tags else 1
        unit = int(tags[296].value) if 296 in tags else 2
        if 282 in tags and 283 in tags and unit in _TIFF_RESOLUTION_UNIT:
            dpi = [_rational(tags[t].value) * _TIFF_RESOLUTION_UNIT[unit] for t in (282, 283)]
            if all(v > 0 for v in dpi):
                extras.dpi = (dpi[0], dpi[1])
    return img, extras


def _rational(value) -> float:
    """A TIFF RATIONAL (numerator, denominator) or number as a float (0 if invalid)."""
    if isinstance(value, tuple):
        return value[0] / value[1] if len(value) == 2 and value[1] else 0.0
    return float(value)


def _invert_first_channel(img: np.ndarray) -> np.ndarray:
    """MINISWHITE -> MINISBLACK: ``max - v`` on the gray channel (alpha untouched)."""
    img = np.array(img)
    gray = img[..., 0] if img.ndim == 3 else img
    if gray.dtype == np.bool_:
        gray[...] = ~gray
    elif np.issubdtype(gray.dtype, np.unsignedinteger):
        gray[...] = np.iinfo(gray.dtype).max - gray
    else:
        raise UnsupportedFormatError(f"MINISWHITE TIFF with {gray.dtype} samples is not "
                                     "supported")
    return img


def _decode_pillow(data: bytes) -> tuple[np.ndarray, _Extras]:
    """JPEG, BMP and WebP via Pillow; palettes and colour keys become RGB(A)."""

    with _open_pillow(data) as im:
        _check_pixels(*im.size)
        _refuse_animation(im, (im.format or "image").upper())
        extras = _pillow_extras(im)
        im.load()
        if im.mode in ("P", "PA") or ("transparency" in im.info and im.mode in ("L", "RGB")):
            im = im.convert("RGBA" if im.mode != "L" else "LA")
        elif im.mode not in _PILLOW_NATIVE:
            # CMYK, YCbCr, LAB, ...: converted to RGB; their ICC profile no longer applies
            im = im.convert("RGB")
            extras.icc_profile = None
        samples = np.asarray(im)
    return samples, extras


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF / TIFF orientation (1-8) so that the image is stored upright."""
    if orientation in (5, 6, 7, 8):
        img = np.swapaxes(img, 0, 1)  # transpose first, then the flips below
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    return np.ascontiguousarray(img)


def _failure(exc: Exception, fmt: str, name: str) -> ImageReadError:
    """The one-line error for a decoder exception: unsupported feature or damaged file."""
    from PIL import Image

    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        return UnsupportedFormatError(f"{name}: {why} (Pillow's decompression-bomb guard; set "
                                      "TVCLI_MAX_PIXELS to allow larger images)")
    low = why.lower()
    if any(k in low for k in _UNSUPPORTED_HINTS):
        return UnsupportedFormatError(f"{name}: cannot read {fmt.upper()} image: unsupported "
                                      f"feature: {why}")
    return ImageReadError(f"{name}: cannot read {fmt.upper()} image (corrupt or "
                          f"truncated?): {why}")


# Words in decoder messages that mean "valid file, feature not supported here".
_UNSUPPORTED_HINTS = ("not supported", "unsupported", "not available", "requires",
                      "not implemented", "not configured", "unknown compression",
                      "no decoder", "decoder not")
_ORIENTATION = 0x0112
_JPEG_MAX_EXIF = 65533  # one APP1 segment, its length field included


def decode_image(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, ImageMeta]:
    """Decodes encoded image bytes; see :func:`read_image`."""
    fmt = sniff_format(data)
    if fmt is None:
        if not data:
            raise ImageReadError(f"{name}: empty file")
        raise UnsupportedFormatError(
            f"{name}: cannot read: not a PNG, JPEG, TIFF, BMP or WebP image "
            "(unsupported format)")
    try:
        decoder = {"png": _decode_png, "tiff": _decode_tiff}.get(fmt, _decode_pillow)
        samples, extras = decoder(data)
        samples = _orient(samples, extras.orientation)
    except ImageError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow / tifffile / libpng raise many types for bad files
        raise _failure(exc, fmt, name) from exc
    img, meta = _from_samples(samples, fmt, name)
    return img, replace(meta, icc_profile=_icc_for(extras.icc_profile, meta.color_channels),
                        dpi=extras.dpi, exif=extras.exif,
                        planar=extras.planar and meta.channels > 1)


def _icc_for(profile: bytes | None, color_channels: int) -> bytes | None:
    """``profile`` if its colour space fits the image (GRAY for 1, RGB for 3), else None."""
    if not profile or len(profile) < 20:
        return None
    space = profile[16:20]
    fits = space == b"GRAY" if color_channels == 1 else space == b"RGB "
    return profile if fits else None


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


def _read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; ImageReadError with one line naming the file otherwise."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None


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
    return decode_image(_read_bytes(path), str(path))


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


def encode_image(img: np.ndarray, fmt: str, dtype: str, meta: ImageMeta | None = None) -> bytes:
    """Encodes float (H, W, C) data as ``fmt`` with samples of ``dtype`` (must be allowed).

    The ICC profile, DPI and EXIF of ``meta`` (the input's) are stored where
    ``fmt`` can hold them: PNG all three; JPEG all three; TIFF ICC and DPI; WebP
    ICC and EXIF; BMP DPI only.
    """
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
    color = samples.shape[2] - int(samples.shape[2] in (2, 4))
    icc = _icc_for(meta.icc_profile, color) if meta is not None else None
    dpi = meta.dpi if meta is not None else None
    exif = meta.exif if meta is not None else None
    if samples.shape[2] == 1:
        samples = samples[:, :, 0]
    if fmt == "png":
        return _encode_png(samples, icc, dpi, exif)
    if fmt == "tiff":
        import tifffile

        buf = io.BytesIO()
        photometric = "rgb" if samples.ndim == 3 and samples.shape[2] >= 3 else "minisblack"
        extrasamples = ("unassalpha",) if samples.ndim == 3 and samples.shape[2] in (2, 4) \
            else None
        extra = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
        if meta is not None and meta.planar and samples.ndim == 3:
            # as the input stored them: one plane per channel, (C, H, W)
            samples = np.moveaxis(samples, 2, 0)
            extra["planarconfig"] = "separate"
        tifffile.imwrite(buf, samples, photometric=photometric, extrasamples=extrasamples,
                         iccprofile=icc, **extra)
        return buf.getvalue()
    from PIL import Image

    # JPEG: high quality without chroma subsampling (TV keeps colour edges sharp);
    # WebP: lossless, and "exact" keeps the colour under fully transparent pixels.
    options: dict = {"jpeg": {"quality": 95, "subsampling": 0},
                     "webp": {"lossless": True, "exact": True}}.get(fmt, {})
    if icc and fmt in ("jpeg", "webp"):
        options["icc_profile"] = icc
    if exif and (fmt == "webp" or (fmt == "jpeg" and len(exif) <= _JPEG_MAX_EXIF)):
        options["exif"] = exif  # (a JPEG segment holds 64 KiB: a larger EXIF is dropped)
    if dpi and fmt in ("jpeg", "bmp"):
        options["dpi"] = tuple(round(v) for v in dpi)
    buf = io.BytesIO()
    Image.fromarray(samples).save(buf, format=fmt.upper(), **options)
    return buf.getvalue()


def _encode_png(samples: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None,
                exif: bytes | None) -> bytes:
    """8/16-bit PNG via libpng (imagecodecs); metadata chunks added with pypng.

    zlib level 4 with the Sub filter: 1-3 % larger than libpng's or Pillow's
    defaults on Kodak photos and 1.3-3.5x faster to encode (benchmarks/io_codecs.py,
    figures in docs/cli.md).
    """
    import imagecodecs

    data = imagecodecs.png_encode(samples, level=4, filter=16)
    chunks: list[tuple[bytes, bytes]] = []
    if icc:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        per_metre = [max(1, round(v / 0.0254)) for v in dpi]
        chunks.append((b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
    if exif:
        chunks.append((b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    if not chunks:
        return data
    import png  # pypng: chunk framing and CRCs

    stored = list(png.Reader(bytes=data).chunks())
    buf = io.BytesIO()
    png.write_chunks(buf, [stored[0], *chunks, *stored[1:]])  # right after IHDR
    return buf.getvalue()


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
    atomic_write_bytes(path, encode_image(img, fmt, stored, meta))
    height, width, channels = img.shape
    return ImageMeta(fmt, stored, width, height, channels, str(path))


def to_tensor(img: np.ndarray, device: str | None = None):
    """H x W x C float array -> torch float32 tensor of shape (C, H, W)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()
    return t.to(device) if device is not None else t


# ---------------------------------------------------------------- volumes (TIFF stacks)

#: Sample types of TIFF stacks that ``--volume`` reads, and writes back unchanged.
VOLUME_DTYPES = ("uint8", "uint16", "float16", "float32", "float64")
# tifffile's axis letters that hold channels (samples of a pixel, or separate planes).
_CHANNEL_AXES = "SC"


@dataclass(frozen=True)
class VolumeMeta:
    """What a TIFF stack held, as read by :func:`read_volume`.

    Attributes:
        dtype: sample type in the file, one of :data:`VOLUME_DTYPES`.
        depth, height, width: the stack's size (slices, rows, columns).
        channels: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA (per pixel).
        axes: the axes of the file's image series as tifffile names them (e.g.
            ``"QYX"`` for a plain multi-page file, ``"ZYXS"`` for an RGB stack).
        path: the file read ('' for bytes).
        icc_profile, dpi: as in :class:`ImageMeta` (from the first page).
        stacked: whether the file had a stack axis (False for a one-page 2-D image,
            read as a stack of one slice and written back as one page).
        planar: the channels were stored in separate planes (PlanarConfiguration 2);
            a stack written with this meta stores them so too.
    """

    dtype: str
    depth: int
    height: int
    width: int
    channels: int
    axes: str = ""
    path: str = ""
    icc_profile: bytes | None = field(default=None, repr=False)
    dpi: tuple[float, float] | None = None
    stacked: bool = True
    planar: bool = False

    @property
    def has_alpha(self) -> bool:
        """Whether the last channel is alpha (gray + alpha or RGBA)."""
        return self.channels in (2, 4)

    @property
    def bit_depth(self) -> int:
        """Bits per integer sample (8 or 16); 0 for float data."""
        return {"uint8": 8, "uint16": 16}.get(self.dtype, 0)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(depth, height, width, channels) of the array :func:`read_volume` returns."""
        return (self.depth, self.height, self.width, self.channels)


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, VolumeMeta]:
    """Reads a TIFF stack (multi-page TIFF, or a 3-D TIFF page) as one volume.

    Returns:
        (volume of shape (depth, height, width, channels), :class:`VolumeMeta`).
        8- and 16-bit samples are scaled to [0, 1] float32 (divided by 255 /
        65535); float16 and float32 data become float32 as stored, float64 data
        stays float64 (no precision is lost). A one-page TIFF is a stack of one
        slice.

    Raises:
        ImageReadError / UnsupportedFormatError: one line naming the file: not a
            TIFF, several image series in the file (pages of different sizes or
            kinds), more than one stack axis (e.g. time and depth), an unsupported
            sample type or colour space, NaN / Inf samples.
    """
    return decode_volume(_read_bytes(path), str(path))


def decode_volume(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, VolumeMeta]:
    """Decodes the bytes of a TIFF stack; see :func:`read_volume`."""
    fmt = sniff_format(data)
    if fmt != "tiff":
        what = f"a {fmt.upper()} image" if fmt else ("an empty file" if not data else
                                                     "not an image tvcli reads")
        raise UnsupportedFormatError(f"{name}: --volume reads TIFF stacks; this is {what}")
    try:
        samples, axes, extras, stacked = _decode_tiff_stack(data)
    except ImageError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise _failure(exc, "tiff", name) from exc
    dtype = str(samples.dtype)
    if dtype not in VOLUME_DTYPES:
        raise UnsupportedFormatError(
            f"{name}: TIFF stack of {dtype} samples is not supported (supported: "
            f"{', '.join(VOLUME_DTYPES)})")
    if dtype in ("uint8", "uint16"):
        vol = samples.astype(np.float32)
        vol /= np.float32(_MAXVAL[dtype])
    else:
        vol = samples.astype(np.float64 if dtype == "float64" else np.float32)
        if not np.isfinite(vol).all():
            raise ImageReadError(f"{name}: contains NaN or infinite values")
    depth, height, width, channels = vol.shape
    return vol, VolumeMeta(dtype, depth, height, width, channels, axes, name,
                           _icc_for(extras.icc_profile, channels - int(channels in (2, 4))),
                           extras.dpi, stacked, extras.planar and channels > 1)


def _decode_tiff_stack(data: bytes) -> tuple[np.ndarray, str, _Extras, bool]:
    """(samples (Z, H, W, C) in the file's dtype, tifffile's axes, metadata, whether
    the file had a stack axis)."""
    import tifffile

    extras = _Extras()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        series = [s for s in tif.series if s.size]
        if not series:
            raise ImageReadError("cannot read TIFF stack (corrupt or truncated?): no image "
                                 "pages")
        if len(series) != 1:
            shapes = ", ".join(str(tuple(s.shape)) for s in series)
            raise UnsupportedFormatError(
                f"the TIFF holds {len(series)} image series ({shapes}: pages of different "
                "sizes or kinds); --volume needs one stack of equal pages")
        s = series[0]
        axes, shape = str(s.axes), tuple(int(n) for n in s.shape)
        page = s.keyframe
        if "C" in axes and shape[axes.index("C")] > 1:
            raise UnsupportedFormatError(
                f"TIFF stack with a channel axis (axes {axes}, shape {shape}: ImageJ / OME "
                "channels) is not supported; --volume reads gray or RGB(A) stacks (one "
                "channel per file, or RGB pages)")
        photometric = tifffile.PHOTOMETRIC(page.photometric)
        if photometric not in (tifffile.PHOTOMETRIC.MINISBLACK,
                               tifffile.PHOTOMETRIC.MINISWHITE, tifffile.PHOTOMETRIC.RGB):
            raise UnsupportedFormatError(
                f"TIFF stack colour space {photometric.name} is not supported (use gray or "
                "RGB)")
        if "Y" not in axes or "X" not in axes:
            raise UnsupportedFormatError(f"TIFF series with axes {axes!r} has no image plane")
        chan = [a for a in axes if a in _CHANNEL_AXES and shape[axes.index(a)] > 1]
        stack = [a for a in axes if a not in "YX" + _CHANNEL_AXES and shape[axes.index(a)] > 1]
        if len(chan) > 1 or len(stack) > 1:
            raise UnsupportedFormatError(
                f"TIFF stack with axes {axes} and shape {shape} has "
                + ("more than one stack axis" if len(stack) > 1 else "two channel axes")
                + "; --volume smooths one stack of 2-D slices (write one volume per file)")
        _check_pixels(int(shape[axes.index("X")]),
                      int(shape[axes.index("Y")]) * (shape[axes.index(stack[0])] if stack else 1))
        samples = s.asarray()
        # Drop the axes of size 1, then order as (stack, Y, X, channels).
        keep = [i for i, a in enumerate(axes) if shape[i] > 1 or a in "YX"]
        samples = samples.reshape([shape[i] for i in keep])
        kept = "".join(axes[i] for i in keep)
        order = [kept.index(a) for a in stack] + [kept.index("Y"), kept.index("X")] \
            + [kept.index(a) for a in chan]
        samples = np.transpose(samples, order)
        if not stack:
            samples = samples[None]
        if not chan:
            samples = samples[..., None]
        if samples.shape[3] > 4:
            raise UnsupportedFormatError(
                f"TIFF stack with {samples.shape[3]} channels is not supported (at most 4: "
                "gray, gray + alpha, RGB, RGBA)")
        if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            samples = np.array(samples)
            if not np.issubdtype(samples.dtype, np.unsignedinteger):
                raise UnsupportedFormatError(
                    f"MINISWHITE TIFF stack with {samples.dtype} samples is not supported")
            samples[..., 0] = np.iinfo(samples.dtype).max - samples[..., 0]
        extras.planar = page.planarconfig == 2
        tags = page.tags
        if 34675 in tags:
            extras.icc_profile = bytes(tags[34675].value)
        orientation = int(tags[274].value) if 274 in tags else 1
        if orientation != 1:  # the 2-D rule, slice by slice: (Z, H, W, C) -> (H, W, Z, C)
            samples = np.moveaxis(_orient(np.moveaxis(samples, 0, 2), orientation), 2, 0)
        unit = int(tags[296].value) if 296 in tags else 2
        if 282 in tags and 283 in tags and unit in _TIFF_RESOLUTION_UNIT:
            dpi = [_rational(tags[t].value) * _TIFF_RESOLUTION_UNIT[unit] for t in (282, 283)]
            if all(v > 0 for v in dpi):
                extras.dpi = (dpi[0], dpi[1])
    return np.ascontiguousarray(samples), axes, extras, bool(stack)


def encode_volume(vol: np.ndarray, dtype: str, meta: VolumeMeta | None = None) -> bytes:
    """A multi-page TIFF of float ``vol`` (depth, height, width, channels): one page
    per slice, samples of ``dtype`` (one of :data:`VOLUME_DTYPES`; integers are
    clipped to [0, 1], scaled and rounded, floats stored as they are), gray /
    RGB (+ alpha as an extra sample), the ICC profile and DPI of ``meta``.
    tifffile's shape record in the first page makes a reader see the same stack
    shape (a one-page input, ``meta.stacked`` False, is written as one page)."""
    import tifffile

    if dtype not in VOLUME_DTYPES:
        raise UnsupportedFormatError(f"TIFF stacks store {', '.join(VOLUME_DTYPES)} samples, "
                                     f"not {dtype}")
    channels = vol.shape[3]
    if dtype in _MAXVAL:
        samples = np.clip(vol, 0.0, 1.0) * _MAXVAL[dtype]
        samples = np.rint(samples).astype(dtype)
    else:
        samples = np.ascontiguousarray(vol, dtype=dtype)
    if channels == 1:
        samples = samples[..., 0]
    if meta is not None and not meta.stacked and samples.shape[0] == 1:
        samples = samples[0]  # a one-page input: one page out, the same shape
    photometric = "rgb" if channels >= 3 else "minisblack"
    extrasamples = ("unassalpha",) if channels in (2, 4) else None
    color = channels - int(channels in (2, 4))
    icc = _icc_for(meta.icc_profile, color) if meta is not None else None
    dpi = meta.dpi if meta is not None else None
    extra = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
    if meta is not None and meta.planar and channels > 1:
        # as the input stored them: one plane per channel, (..., C, H, W)
        samples = np.moveaxis(samples, -1, -3)
        extra["planarconfig"] = "separate"
    buf = io.BytesIO()
    tifffile.imwrite(buf, samples, photometric=photometric, extrasamples=extrasamples,
                     iccprofile=icc, **extra)
    return buf.getvalue()


def write_volume(path: str | os.PathLike, vol: np.ndarray, meta: VolumeMeta | None = None,
                 *, dtype: str | None = None) -> VolumeMeta:
    """Writes float ``vol`` (depth, height, width, channels) atomically as a multi-page
    TIFF (:func:`encode_volume`); samples of ``dtype``, default the input's
    (``meta.dtype``), else float32. The path must end in .tif / .tiff.

    Returns:
        The :class:`VolumeMeta` of what was written.
    """
    if format_from_path(path) != "tiff":
        raise UnsupportedFormatError(f"{path}: a volume is written as a TIFF stack; name the "
                                     "output .tif or .tiff")
    stored = dtype or (meta.dtype if meta else "float32")
    atomic_write_bytes(path, encode_volume(vol, stored, meta))
    depth, height, width, channels = vol.shape
    return VolumeMeta(stored, depth, height, width, channels, path=str(path),
                      stacked=meta.stacked if meta is not None else True,
                      planar=bool(meta is not None and meta.planar and channels > 1))
