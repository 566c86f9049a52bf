"""tvcli.io on real files: round trips, bit depths,
channel layouts, EXIF orientation, corrupt and truncated files, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tvcli import io

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


# ---------------------------------------------------------------- issue 11: faithful I/O

png = pytest.importorskip("png")  # pypng: an independent PNG writer for the fixtures
tifffile = pytest.importorskip("tifffile")


def _pypng(path: Path, samples: np.ndarray, **kwargs) -> None:
    """Writes ``samples`` (H, W) or (H, W, C) with pypng (independent of tvcli.io)."""
    h, w = samples.shape[:2]
    c = 1 if samples.ndim == 2 else samples.shape[2]
    writer = png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4),
                        bitdepth=8 * samples.dtype.itemsize, **kwargs)
    with open(path, "wb") as fh:
        writer.write_array(fh, samples.reshape(-1))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_interlaced_16bit_png_is_read_exactly(tmp_path, channels):
    samples = _samples("uint16", channels)
    _pypng(tmp_path / "i.png", samples, interlace=True)
    img, meta = io.read_image(tmp_path / "i.png")
    assert (meta.dtype, meta.channels) == ("uint16", channels)
    np.testing.assert_array_equal(io.to_samples(img, "uint16"), samples)


def test_png_trns_colour_keys_and_palette_alpha_become_alpha(tmp_path):
    gray = _samples("uint8", 1)[..., 0]
    gray[:3] = 7
    _pypng(tmp_path / "g.png", gray, transparent=7)
    gray16 = _samples("uint16", 1)[..., 0]
    gray16[:3] = 300
    _pypng(tmp_path / "g16.png", gray16, transparent=300)
    rgb = _samples("uint8", 3)
    rgb[:3] = (1, 2, 3)
    _pypng(tmp_path / "rgb.png", rgb, transparent=(1, 2, 3))
    palette = [(i, 255 - i, 3 * i % 256, 7 * i % 256) for i in range(256)]
    index = _samples("uint8", 1)[..., 0]
    with open(tmp_path / "p.png", "wb") as fh:
        png.Writer(17, 13, palette=palette, bitdepth=8).write_array(fh, index.reshape(-1))
    g, meta = io.read_image(tmp_path / "g.png")
    assert meta.channels == 2
    np.testing.assert_array_equal(io.to_samples(g, "uint8")[..., 1], np.where(gray == 7, 0, 255))
    g16, meta = io.read_image(tmp_path / "g16.png")
    assert (meta.channels, meta.dtype) == (2, "uint16")
    np.testing.assert_array_equal(io.to_samples(g16, "uint16")[..., 1],
                                  np.where(gray16 == 300, 0, 65535))
    c, meta = io.read_image(tmp_path / "rgb.png")
    key = np.all(rgb == (1, 2, 3), axis=-1)
    assert meta.channels == 4
    np.testing.assert_array_equal(io.to_samples(c, "uint8")[..., 3], np.where(key, 0, 255))
    p, meta = io.read_image(tmp_path / "p.png")
    assert meta.channels == 4
    np.testing.assert_array_equal(io.to_samples(p, "uint8"), np.array(palette, np.uint8)[index])


@pytest.mark.parametrize(("compression", "dtype"), [
    ("lzw", "uint8"), ("lzw", "uint16"), ("deflate", "uint8"), ("zstd", "uint16")])
def test_compressed_tiff_is_read(tmp_path, compression, dtype):
    samples = _samples(dtype, 3)
    tifffile.imwrite(tmp_path / "c.tif", samples, photometric="rgb", compression=compression,
                     predictor=dtype == "uint16")
    img, meta = io.read_image(tmp_path / "c.tif")
    assert meta.dtype == dtype
    np.testing.assert_array_equal(io.to_samples(img, dtype), samples)


def test_miniswhite_tiff_is_not_negated(tmp_path):
    stored = _samples("uint8", 1)[..., 0]
    tifffile.imwrite(tmp_path / "w.tif", stored, photometric="miniswhite")
    img, _ = io.read_image(tmp_path / "w.tif")
    np.testing.assert_array_equal(io.to_samples(img, "uint8")[..., 0], 255 - stored)


def test_palette_tiff_is_read_as_rgb(tmp_path):
    index = _samples("uint8", 1)[..., 0]
    cmap = (RNG.integers(0, 256, (3, 256)) * 257).astype(np.uint16)
    tifffile.imwrite(tmp_path / "p.tif", index, photometric="palette", colormap=cmap)
    img, meta = io.read_image(tmp_path / "p.tif")
    assert (meta.channels, meta.dtype) == (3, "uint8")
    np.testing.assert_array_equal(io.to_samples(img, "uint8"), (cmap // 257).T[index])


def test_cmyk_tiff_is_refused_as_unsupported_not_corrupt(tmp_path):
    tifffile.imwrite(tmp_path / "k.tif", _samples("uint8", 4), photometric="separated")
    with pytest.raises(io.UnsupportedFormatError, match="k.tif.*SEPARATED.*not supported"):
        io.read_image(tmp_path / "k.tif")


def _icc(space: str) -> bytes:
    cms = pytest.importorskip("PIL.ImageCms")
    return cms.ImageCmsProfile(cms.createProfile(space)).tobytes()


@pytest.mark.parametrize(("ext", "dtype"), [
    ("png", "uint8"), ("png", "uint16"), ("jpg", "uint8"), ("tif", "uint16"),
    ("webp", "uint8")])
def test_icc_profile_dpi_and_exif_survive_a_round_trip(tmp_path, ext, dtype):
    icc = _icc("sRGB")
    exif = Image.Exif()
    exif[0x010F] = "tvcli test camera"  # Make
    exif[0x0112] = 6  # orientation: applied on read, so it must not be written again
    src = tmp_path / "src.jpg"
    pixels = np.asarray(Image.open(EXAMPLES / "coffee.png"))[:40, :60]
    Image.fromarray(pixels).save(src, icc_profile=icc, dpi=(300, 300), exif=exif, quality=95)
    img, meta = io.read_image(src)
    assert meta.icc_profile == icc and meta.dpi == pytest.approx((300, 300))
    assert img.shape[:2] == (60, 40)  # orientation 6 applied
    out = tmp_path / f"out.{ext}"
    io.write_image(out, img, meta, dtype=dtype)
    _, back = io.read_image(out)
    assert back.icc_profile == icc
    if ext != "webp":  # WebP has no resolution field
        assert back.dpi == pytest.approx((300, 300), abs=0.01)
    if ext != "tif":  # EXIF is not written into TIFF (documented)
        with Image.open(out) as im:
            written = im.getexif()
        assert written.get(0x010F) == "tvcli test camera" and 0x0112 not in written


def test_gray_profile_is_not_attached_to_rgb_output(tmp_path):
    icc = _icc("sRGB")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png", icc_profile=icc)
    img, meta = io.read_image(tmp_path / "a.png")
    io.write_image(tmp_path / "g.png", img[..., :1], meta)  # gray output: RGB profile invalid
    assert io.read_image(tmp_path / "g.png")[1].icc_profile is None


def test_decompression_bomb_guard_is_a_clear_message(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "big.jpg")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own guard: > 200 px
    for name in ("big.jpg", "big.png"):
        with pytest.raises(io.UnsupportedFormatError, match="decompression-bomb") as err:
            io.read_image(tmp_path / name)
        assert name in str(err.value) and "unknown error" not in str(err.value)
    monkeypatch.setenv("TVCLI_MAX_PIXELS", "1000")
    assert io.read_image(tmp_path / "big.png")[1].width == 30


def test_missing_codec_is_unsupported_not_corrupt():
    exc = KeyError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")
    err = io._failure(exc, "tiff", "scan.tif")
    assert isinstance(err, io.UnsupportedFormatError) and "unsupported feature" in str(err)
    err = io._failure(OSError("image file is truncated"), "jpeg", "a.jpg")
    assert not isinstance(err, io.UnsupportedFormatError) and "corrupt or truncated" in str(err)


def test_exif_too_large_for_jpeg_is_dropped_not_an_error(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "x" * 70000  # more than one JPEG APP1 segment holds
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png", exif=exif)
    img, meta = io.read_image(tmp_path / "a.png")
    assert len(meta.exif) > 65535
    io.write_image(tmp_path / "a.jpg", img, meta)
    assert io.read_image(tmp_path / "a.jpg")[1].exif is None
