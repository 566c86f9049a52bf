"""A minimal 16-bit PNG codec (numpy + zlib).

Why this exists: Pillow, which imageio uses for PNG, silently reduces 16-bit RGB
and RGBA PNGs to 8 bits on read and cannot write them at all. tvcli promises to
keep 16-bit images 16-bit, so 16-bit PNGs (every colour type) go through here.

Reading supports non-interlaced PNGs of bit depth 16 with all five row filters;
chunk CRCs are checked and a missing IEND (a truncated file) is an error.
Writing uses the "Sub" filter on every row (vectorised) and zlib level 6.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["PNG_SIGNATURE", "PNGError", "is_png16", "decode_png16", "encode_png16"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels (0 gray, 2 RGB, 4 gray+alpha, 6 RGBA; 3 palette is 8-bit only)
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_COLOR_TYPE = {v: k for k, v in _CHANNELS.items()}


class PNGError(ValueError):
    """A PNG that cannot be decoded (corrupt, truncated or unsupported)."""


def _ihdr(data: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PNGError("not a PNG file (bad signature or header)")
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def is_png16(data: bytes) -> bool:
    """Whether ``data`` starts like a PNG with 16 bits per sample."""
    try:
        return _ihdr(data)[2] == 16
    except PNGError:
        return False


def _chunks(data: bytes):
    """Yields (type, payload), verifying lengths and CRCs; requires IEND."""
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise PNGError("truncated PNG (no IEND chunk)")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        end = pos + 8 + length
        if end + 4 > len(data):
            raise PNGError("truncated PNG (chunk runs past the end of the file)")
        payload = data[pos + 8:end]
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if zlib.crc32(ctype + payload) & 0xFFFFFFFF != crc:
            raise PNGError(f"corrupt PNG (CRC mismatch in {ctype.decode('latin-1')!r} chunk)")
        yield ctype, payload
        if ctype == b"IEND":
            return
        pos = end + 4


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-row PNG filters; returns (height, stride) uint8."""
    rows = raw.reshape(height, stride + 1)
    filters, out = rows[:, 0], rows[:, 1:].copy()
    if int(filters.max(initial=0)) > 4:
        raise PNGError("corrupt PNG (unknown row filter)")
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        f, row = filters[y], out[y]
        if f == 1:  # Sub: running sum per byte lane (uint8 arithmetic wraps mod 256)
            row[:] = np.cumsum(row.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif f == 2:  # Up
            row += prev
        elif f in (3, 4):  # Average / Paeth depend on the left neighbour: sequential
            r = row.astype(np.int32)
            up = prev.astype(np.int32)
            for i in range(0, stride, bpp):
                left = r[i - bpp:i] if i else np.zeros(bpp, np.int32)
                above = up[i:i + bpp]
                if f == 3:
                    pred = (left + above) // 2
                else:
                    ul = up[i - bpp:i] if i else np.zeros(bpp, np.int32)
                    pred = _paeth(left, above, ul)
                r[i:i + bpp] = (r[i:i + bpp] + pred) & 0xFF
            row[:] = r.astype(np.uint8)
        prev = row
    return out


def decode_png16(data: bytes) -> np.ndarray:
    """Decodes a 16-bit PNG to a uint16 array (H, W) or (H, W, C)."""
    width, height, depth, ctype, interlace = _ihdr(data)
    if depth != 16 or ctype not in _CHANNELS:
        raise PNGError(f"not a 16-bit PNG (bit depth {depth}, colour type {ctype})")
    if interlace:
        raise PNGError("interlaced 16-bit PNGs are not supported; re-save without interlacing")
    idat = b"".join(p for t, p in _chunks(data) if t == b"IDAT")
    try:
        raw = zlib.decompress(idat)
    except zlib.error as exc:
        raise PNGError(f"corrupt PNG image data ({exc})") from None
    channels = _CHANNELS[ctype]
    stride = width * channels * 2
    if len(raw) != height * (stride + 1):
        raise PNGError("corrupt or truncated PNG image data (wrong size)")
    pixels = _unfilter(np.frombuffer(raw, dtype=np.uint8), height, stride, channels * 2)
    img = pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)
    return img[:, :, 0] if channels == 1 else img


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def encode_png16(img: np.ndarray, level: int = 6) -> bytes:
    """Encodes a uint16 array (H, W) or (H, W, C), C in 1..4, as a 16-bit PNG."""
    if img.dtype != np.uint16:
        raise TypeError(f"encode_png16 needs uint16 data, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    height, width, channels = img.shape
    if channels not in _COLOR_TYPE:
        raise ValueError(f"cannot store {channels} channels in a PNG")
    be = np.ascontiguousarray(img, dtype=">u2").view(np.uint8).reshape(height, -1)
    bpp = channels * 2
    rows = np.empty((height, be.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = 1  # Sub filter: byte minus the same byte of the pixel to its left
    rows[:, 1:1 + bpp] = be[:, :bpp]
    np.subtract(be[:, bpp:], be[:, :-bpp], out=rows[:, 1 + bpp:])
    header = struct.pack(">IIBBBBB", width, height, 16, _COLOR_TYPE[channels], 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))
