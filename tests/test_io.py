"""tvcli.io and the 16-bit PNG codec on real files: round trips, bit depths,
channel layouts, EXIF orientation, corrupt and truncated files, atomic writes."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imageio")
from PIL import Image  # noqa: E402  (imageio's Pillow plugin needs Pillow anyway)

from tvcli import _png16, io  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
RNG = np.random.default_rng(0)


def _samples(dtype: str, channels: int, shape=(13, 17)) -> np.ndarray:
    if dtype == "float32":
        return RNG.random((*shape, channels)).astype(np.float32)
    top = 255 if dtype == "uint8" else 65535
    return RNG.integers(0, top + 1, (*shape, channels)).astype(dtype)


LOSSLESS = [
    ("png", d, c) for d in ("uint8", "uint16") for c in (1, 2, 3, 4)
] + [("tiff", d, c) for d in ("uint8", "uint16", "float32") for c in (1, 2, 3, 4)] + [
    ("bmp", "uint8", 1), ("bmp", "uint8", 3), ("webp", "uint8", 3), ("webp", "uint8", 4),
]


@pytest.mark.parametrize(("fmt", "dtype", "channels"), LOSSLESS)
def test_lossless_round_trip_keeps_samples_and_depth(tmp_path, fmt, dtype, channels):
    samples = _samples(dtype, channels)
    img, _ = io.to_float(samples)
    path = tmp_path / f"x.{fmt}"
    written = io.write_image(path, img, dtype=dtype)
    back, meta = io.read_image(path)
    assert (written.dtype, meta.dtype, meta.channels) == (dtype, dtype, channels)
    assert (meta.width, meta.height, meta.format) == (17, 13, fmt)
    np.testing.assert_array_equal(io.to_samples(back, dtype), samples.reshape(13, 17, -1))


def test_jpeg_round_trip_is_close_and_8bit(tmp_path):
    img = np.asarray(Image.open(EXAMPLES / "coffee.png"), dtype=np.float32) / 255
    io.write_image(tmp_path / "c.jpg", img)
    back, meta = io.read_image(tmp_path / "c.jpg")
    assert meta.dtype == "uint8" and meta.channels == 3
    assert np.abs(back - img).mean() < 0.01


def test_reads_scale_to_unit_interval(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "a.png")
    gray16 = np.array([[0, 65535]], np.uint16)
    Image.fromarray(gray16).save(tmp_path / "b.png")  # Pillow writes gray 16-bit PNG
    a, ma = io.read_image(tmp_path / "a.png")
    b, mb = io.read_image(tmp_path / "b.png")
    assert (ma.dtype, mb.dtype) == ("uint8", "uint16")
    np.testing.assert_array_equal(a[..., 0], [[0.0, 1.0]])
    np.testing.assert_array_equal(b[..., 0], [[0.0, 1.0]])


def test_quantisation_rounds_and_clips():
    img = np.array([[[0.999], [0.5 / 255 + 1e-4], [0.5 / 255 - 1e-4], [1.7], [-0.2]]],
                   np.float32)
    np.testing.assert_array_equal(io.to_samples(img, "uint8")[0, :, 0], [255, 1, 0, 255, 0])


def test_16bit_rgb_png_is_not_truncated_to_8_bit(tmp_path):
    samples = np.array([[[1, 2, 65534], [257, 40000, 65535]]], np.uint16)
    path = tmp_path / "deep.png"
    io.write_image(path, io.to_float(samples)[0], dtype="uint16")
    back, meta = io.read_image(path)
    assert meta.dtype == "uint16"
    np.testing.assert_array_equal(io.to_samples(back, "uint16"), samples)


def _filtered_png16(img: np.ndarray) -> bytes:
    """A 16-bit RGB PNG whose rows cycle through all five filters (reference
    filter implementation, independent of the decoder under test)."""
    h, w, c = img.shape
    bpp = 2 * c
    raw = img.astype(">u2").view(np.uint8).reshape(h, -1).astype(np.int64)
    out = bytearray()
    prev = np.zeros(raw.shape[1], np.int64)
    for y in range(h):
        f = y % 5
        row = raw[y]
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if f == 0:
            pred = np.zeros_like(row)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = prev
        elif f == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(f)
        out += ((row - pred) % 256).astype(np.uint8).tobytes()
        prev = row

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (_png16.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(out))
            + chunk(b"IEND", b""))


def test_png16_decoder_handles_every_row_filter():
    img = RNG.integers(0, 65536, (11, 7, 3)).astype(np.uint16)
    np.testing.assert_array_equal(_png16.decode_png16(_filtered_png16(img)), img)


@pytest.mark.parametrize("name", ["8bit.png", "16bit.png", "photo.jpg", "img.tif", "img.webp"])
def test_truncated_files_are_read_errors(tmp_path, name):
    img = np.asarray(Image.open(EXAMPLES / "coffee.png"), dtype=np.float32) / 255
    path = tmp_path / name
    io.write_image(path, img, dtype="uint16" if name == "16bit.png" else "uint8")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.ImageReadError, match=name):
        io.read_image(path)


def test_corrupt_png_is_a_read_error(tmp_path):
    data = bytearray((EXAMPLES / "camera.png").read_bytes())
    data[200:260] = bytes(60)  # zeros inside the image data: CRC and zlib both break
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(io.ImageReadError, match="bad.png"):
        io.read_image(tmp_path / "bad.png")


def test_unsupported_and_empty_and_missing(tmp_path):
    (tmp_path / "notes.png").write_text("this is text, not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(io.UnsupportedFormatError, match="notes.png"):
        io.read_image(tmp_path / "notes.png")
    with pytest.raises(io.ImageReadError, match="empty"):
        io.read_image(tmp_path / "empty.png")
    with pytest.raises(io.ImageReadError, match="no such file"):
        io.read_image(tmp_path / "missing.png")
    with pytest.raises(io.UnsupportedFormatError, match=".gif"):
        io.write_image(tmp_path / "out.gif", np.zeros((2, 2, 1), np.float32))


def test_format_limits_are_enforced_or_adapted(tmp_path):
    rgba = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(io.UnsupportedFormatError, match="alpha"):
        io.write_image(tmp_path / "a.jpg", rgba)
    with pytest.raises(io.UnsupportedFormatError, match="uint16"):
        io.write_image(tmp_path / "a.jpg", rgba[..., :3], dtype="uint16")
    meta16 = io.ImageMeta("png", "uint16", 4, 4, 3)
    assert io.write_image(tmp_path / "b.jpg", rgba[..., :3], meta16).dtype == "uint8"
    metaf = io.ImageMeta("tiff", "float32", 4, 4, 3)
    assert io.write_image(tmp_path / "c.png", rgba[..., :3], metaf).dtype == "uint16"


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = 255  # a marker at the top-left of the stored (unrotated) image
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "o.png", exif=exif)
    img, meta = io.read_image(tmp_path / "o.png")
    assert (meta.height, meta.width) == (3, 2)
    assert img[0, -1, 0] == 1.0  # the marker ends up top-right


def test_palette_gray_alpha_and_cmyk_are_read(tmp_path):
    Image.new("P", (5, 4)).save(tmp_path / "p.png")
    Image.new("LA", (5, 4), (10, 20)).save(tmp_path / "la.png")
    Image.new("CMYK", (5, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert io.read_image(tmp_path / "p.png")[1].channels == 3
    la, meta = io.read_image(tmp_path / "la.png")
    assert meta.has_alpha and meta.channels == 2 and la[0, 0, 1] == pytest.approx(20 / 255)
    cmyk, meta = io.read_image(tmp_path / "c.jpg")
    assert meta.channels == 3 and cmyk.min() > 0.95  # no ink = white


def test_atomic_write_leaves_nothing_on_interrupt(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.write_image(target, np.zeros((8, 8, 3), np.float32))
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_write_into_a_file_as_folder_is_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(io.ImageWriteError, match="not a folder|cannot write") as err:
        io.write_image(tmp_path / "file" / "out.png", np.zeros((2, 2, 1), np.float32))
    assert "\n" not in str(err.value)


def test_written_files_get_normal_permissions(tmp_path):
    io.write_image(tmp_path / "p.png", np.zeros((2, 2, 1), np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~umask
