"""`tvcli smooth --volume` (TIFF stacks, 3-D TV) and `--lam-map FILE` (per-pixel
weights): results equal tvcli.prox_tv on the same data, files keep their sample type
and shape, bad inputs are one clear line and the batch goes on. Every file is a
small synthetic array made here (no data files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

import tvcli
from tvcli import io
from tvcli.cli import app
from tvcli.cli._app import CLIError

runner = CliRunner()
TOL = ["--tol", "1e-5", "--max-iter", "20000"]


def _stack(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """A piecewise-constant block plus noise, in [0, 1] scaled to ``dtype``."""
    rng = np.random.default_rng(seed)
    clean = np.zeros(shape)
    z, h, w = shape[:3]
    clean[z // 3:, h // 4: 3 * h // 4, w // 3:] = 0.7
    vol = np.clip(clean + 0.15 * rng.standard_normal(shape) + 0.15, 0, 1)
    if dtype == "uint8":
        return np.rint(vol * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.rint(vol * 65535).astype(np.uint16)
    return vol.astype(dtype)


def _imwrite(path, data: np.ndarray, **kwargs) -> None:
    """tifffile.imwrite, gray unless told: tifffile stores a (3 or 4, H, W) array as
    one planar RGB(A) page by default, not as 3 or 4 gray pages."""
    kwargs.setdefault("photometric", "minisblack")
    tifffile.imwrite(path, data, **kwargs)


def _float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.uint8:
        return samples.astype(np.float64) / 255
    if samples.dtype == np.uint16:
        return samples.astype(np.float64) / 65535
    return samples.astype(np.float64)


def _smooth(*args: str):
    return runner.invoke(app, ["smooth", *args])


def _ref(vol: np.ndarray, lam, norm: str = "aniso", joint: bool = False) -> np.ndarray:
    """prox_tv over (Z, H, W) of a (Z, H, W[, C]) float array, tight."""
    x = torch.from_numpy(vol if vol.ndim == 4 else vol[..., None]).permute(3, 0, 1, 2)
    lam_t = lam if np.isscalar(lam) else torch.from_numpy(np.asarray(lam, np.float64))
    y = tvcli.prox_tv(x.double(), lam_t, dims=(-3, -2, -1), norm=norm,
                      channel_dim=0 if joint else None, tol=1e-7, max_iter=50000)
    y = y.permute(1, 2, 3, 0).numpy()
    return y if vol.ndim == 4 else y[..., 0]


# ------------------------------------------------------------------ multi-page TIFF


def test_multipage_tiff_without_volume_is_one_clear_error_and_batch_goes_on(tmp_path):
    stack = tmp_path / "stack.tif"
    _imwrite(stack, _stack((3, 10, 12), "uint8"))
    ok = tmp_path / "ok.png"
    io.write_image(ok, np.full((8, 8, 1), 0.5, np.float32), dtype="uint8")
    res = _smooth(str(stack), str(ok), "-o", str(tmp_path / "out"))
    assert res.exit_code == 1
    err = [ln for ln in res.stderr.splitlines() if "stack.tif" in ln and "error" in ln]
    assert len(err) == 1 and "multi-page TIFF (3 pages)" in err[0] and "--volume" in err[0]
    assert "Traceback" not in res.output
    assert (tmp_path / "out" / "ok.png").is_file()
    assert not (tmp_path / "out" / "stack.tif").exists()


# ------------------------------------------------------------------ --volume


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float16", "float32", "float64"])
def test_volume_gray_matches_prox_tv_and_keeps_dtype_and_shape(tmp_path, dtype):
    samples = _stack((4, 9, 11), dtype)
    src = tmp_path / "v.tif"
    _imwrite(src, samples)
    before = src.read_bytes()
    out = tmp_path / "v.smooth.tif"
    res = _smooth(str(src), "--volume", "--lam", "0.1", "--json", *TOL)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["status"] == "ok" and rec["depth"] == 4 and rec["size"] == [11, 9]
    assert rec["volume"] is True and rec["dtype"] == dtype
    assert src.read_bytes() == before  # the input is never written
    got = tifffile.imread(out)
    assert got.dtype == samples.dtype and got.shape == samples.shape
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == 4  # a multi-page TIFF again
    want = _ref(_float(samples), 0.1, "iso")  # the default: iso (gray: joint = iso)
    step = {"uint8": 1 / 255, "uint16": 1 / 65535, "float16": 2 ** -10}.get(dtype, 0.0)
    assert np.abs(_float(got) - want).max() <= step / 2 + 1e-4
    # 3-D TV couples the slices: not the 2-D prox of each page.
    flat = tvcli.prox_tv(torch.from_numpy(_float(samples)), 0.1, norm="iso", tol=1e-6)
    assert np.abs(_float(got) - flat.numpy()).max() > 1e-2
    assert not list(tmp_path.glob(".*.part"))


def test_volume_rgb_joint_and_alpha_passthrough(tmp_path):
    rgba = _stack((3, 8, 10, 4), "uint16", seed=1)
    rgba[..., 3] = np.arange(80, dtype=np.uint16).reshape(8, 10) * 800  # alpha pattern
    src = tmp_path / "c.tiff"
    _imwrite(src, rgba, photometric="rgb", extrasamples=("unassalpha",))
    out = tmp_path / "o.tiff"
    res = _smooth(str(src), "-o", str(out), "--volume", "--tv", "iso", "--color", "joint",
                  "--lam", "0.08", *TOL)
    assert res.exit_code == 0, res.output
    got = tifffile.imread(out)
    assert got.shape == rgba.shape and got.dtype == np.uint16
    assert np.array_equal(got[..., 3], rgba[..., 3])
    want = _ref(_float(rgba[..., :3]), 0.08, "iso", joint=True)
    assert np.abs(_float(got[..., :3]) - want).max() <= 1e-4
    sep = _ref(_float(rgba[..., :3]), 0.08, "iso", joint=False)
    assert np.abs(want - sep).max() > 1e-3  # joint really couples the channels


@pytest.mark.parametrize("volume", [True, False])
def test_planar_rgb_tiff_is_written_back_planar(tmp_path, volume):
    """A TIFF whose channels are stored in separate planes comes back so (same
    array shape from tifffile.imread: (Z, C, H, W) / (C, H, W)), with the same
    result as the interleaved file; alpha rides along as its own plane."""
    shape = (3, 8, 10, 4) if volume else (8, 10, 4)
    rgba = _stack(shape if volume else (1, *shape), "uint16", seed=2)
    rgba = rgba if volume else rgba[0]
    planar = np.moveaxis(rgba, -1, -3)  # (Z, C, H, W) / (C, H, W)
    outs = {}
    for layout, data, kw in (("planar", planar, {"planarconfig": "separate"}),
                             ("contig", rgba, {})):
        src = tmp_path / f"{layout}.tif"
        _imwrite(src, data, photometric="rgb", extrasamples=("unassalpha",), **kw)
        out = tmp_path / f"{layout}_out.tif"
        res = _smooth(str(src), "-o", str(out), *(["--volume"] if volume else []),
                      "--lam", "0.08")
        assert res.exit_code == 0, res.output
        with tifffile.TiffFile(out) as tif:
            assert tif.pages[0].planarconfig == (2 if layout == "planar" else 1)
        outs[layout] = tifffile.imread(out)
    assert outs["planar"].shape == planar.shape and outs["contig"].shape == rgba.shape
    assert np.array_equal(np.moveaxis(outs["planar"], -3, -1), outs["contig"])
    assert not np.array_equal(outs["contig"], rgba)  # smoothed


def test_volume_3d_tiff_page_and_one_page_stack(tmp_path):
    vol = _stack((4, 16, 16), "float32", seed=2)
    src = tmp_path / "deep.tif"
    _imwrite(src, vol, tile=(16, 16), volumetric=True)  # one 3-D page
    with tifffile.TiffFile(src) as tif:
        assert len(tif.pages) == 1
    res = _smooth(str(src), "-o", str(tmp_path / "x.tif"))
    assert res.exit_code == 1 and "3-D TIFF" in res.stderr and "--volume" in res.stderr
    res = _smooth(str(src), "-o", str(tmp_path / "d.tif"), "--volume", "--lam", "0.1", *TOL)
    assert res.exit_code == 0, res.output
    got = tifffile.imread(tmp_path / "d.tif")
    assert got.shape == vol.shape and got.dtype == np.float32
    assert np.abs(got - _ref(vol.astype(np.float64), 0.1, "iso")).max() <= 1e-4
    one = tmp_path / "one.tif"  # a one-page file is a stack of one slice
    _imwrite(one, vol[0])
    res = _smooth(str(one), "-o", str(tmp_path / "one_o.tif"), "--volume", *TOL)
    assert res.exit_code == 0, res.output
    assert tifffile.imread(tmp_path / "one_o.tif").shape == (16, 16)


def test_volume_compare_is_a_stack_side_by_side(tmp_path):
    src = tmp_path / "v.tif"
    _imwrite(src, _stack((2, 6, 8), "uint8"))
    res = _smooth(str(src), "--volume", "--compare")
    assert res.exit_code == 0, res.output
    cmp_ = tifffile.imread(tmp_path / "v.smooth.compare.tif")
    assert cmp_.shape == (2, 6, 8 + 4 + 8)


@pytest.mark.parametrize("make, msg", [
    (lambda p: p.write_bytes(io.encode_image(np.zeros((4, 4, 1), np.float32), "png",
                                             "uint8")),  # a PNG named .tif
     "--volume reads TIFF stacks; this is a PNG image"),
    (lambda p: _imwrite(p, np.zeros((2, 3, 6, 6), np.uint8), imagej=True,
                                metadata={"axes": "TZYX"}), "more than one stack axis"),
    (lambda p: _imwrite(p, np.zeros((2, 3, 6, 6), np.uint8), imagej=True,
                        metadata={"axes": "ZCYX"}), "channel axis"),
    (lambda p: _imwrite(p, np.zeros((3, 6, 6), np.int16)),
     "int16 samples"),
    (lambda p: _imwrite(p, np.full((2, 5, 5), np.nan, np.float32)), "NaN"),
    (lambda p: p.write_bytes(b"II*\x00garbage"), "corrupt or truncated"),
])
def test_volume_bad_files_are_one_line_and_the_batch_goes_on(tmp_path, make, msg):
    bad = tmp_path / "bad.tif"
    make(bad)
    good = tmp_path / "good.tif"
    _imwrite(good, _stack((2, 6, 6), "uint8"))
    res = _smooth(str(bad), str(good), "-o", str(tmp_path / "out"), "--volume")
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("tvcli: error:")]
    assert len(lines) == 1 and msg in lines[0] and bad.name in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert "1 of 2 files failed" in res.stderr
    assert tifffile.imread(tmp_path / "out" / "good.tif").shape == (2, 6, 6)


def test_volume_output_must_be_tiff_and_folders_take_tiffs_only(tmp_path):
    src = tmp_path / "v.tif"
    _imwrite(src, _stack((2, 6, 6), "uint8"))
    res = _smooth(str(src), "-o", str(tmp_path / "v.png"), "--volume")
    assert res.exit_code == 1 and "--volume writes TIFF stacks" in res.stderr
    assert not (tmp_path / "v.png").exists()
    folder = tmp_path / "in"
    folder.mkdir()
    _imwrite(folder / "a.tif", _stack((2, 6, 6), "uint8"))
    io.write_image(folder / "b.png", np.zeros((6, 6, 1), np.float32))
    res = _smooth(str(folder), "-o", str(tmp_path / "out"), "--volume", "--json")
    assert res.exit_code == 0, res.output
    assert [json.loads(ln)["input"].rsplit("/", 1)[1] for ln in res.stdout.splitlines()] \
        == ["a.tif"]


@pytest.mark.parametrize("args, msg", [
    (["--volume", "--iters", "4"], "--volume is a converged 3-D operator"),
    (["--volume", "--mode", "rows"], "--volume is a converged 3-D operator"),
    (["--volume", "-o", "-"], "--volume writes TIFF stacks to files"),
])
def test_volume_option_errors(tmp_path, args, msg):
    src = tmp_path / "v.tif"
    _imwrite(src, _stack((2, 6, 6), "uint8"))
    res = _smooth(str(src), *args)
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert msg in str(res.exception)


# ------------------------------------------------------------------ --lam-map


def _map_png(path, weights: np.ndarray, channels: int = 1) -> None:
    img = np.repeat(weights[:, :, None], channels, axis=2).astype(np.float32)
    io.write_image(path, img, dtype="uint8")


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(3)
    img = (rng.random((14, 18, 3)) * 255).astype(np.uint8)
    path = tmp_path / "in.png"
    io.write_image(path, img.astype(np.float32) / 255, dtype="uint8")
    return path


def _weights(h: int = 14, w: int = 18) -> np.ndarray:
    m = np.zeros((h, w))
    m[:, w // 2:] = 1.0  # smoothing on the right half only
    m[: h // 2, : w // 2] = 128 / 255  # half weight top left
    return np.rint(m * 255) / 255


@pytest.mark.parametrize("tv, color", [("aniso", "separate"), ("iso", "separate"),
                                       ("iso", "joint")])
def test_lam_map_2d_matches_prox_tv_with_weights(photo, tmp_path, tv, color):
    wmap = tmp_path / "w.png"
    _map_png(wmap, _weights())
    out = tmp_path / "o.tif"
    res = _smooth(str(photo), "-o", str(out), "--lam", "0.2", "--lam-map", str(wmap),
                  "--tv", tv, "--color", color, "--bit-depth", "float", "--json", *TOL)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lam_map"] == str(wmap)
    got = io.read_image(out)[0]
    x = torch.from_numpy(io.read_image(photo)[0]).permute(2, 0, 1).double()
    lam = torch.from_numpy(_weights()) * 0.2
    want = tvcli.prox_tv(x, lam, norm=tv, channel_dim=0 if color == "joint" else None,
                         tol=1e-7, max_iter=50000).permute(1, 2, 0).numpy()
    assert np.abs(got - want).max() <= 1e-4
    # Zero weight bottom left: nothing there moves except through its neighbours'
    # differences, and a uniform lam would have moved it far more.
    uni = tvcli.prox_tv(x, 0.2, norm=tv, channel_dim=0 if color == "joint" else None,
                        tol=1e-6).permute(1, 2, 0).numpy()
    assert np.abs(got - uni).max() > 1e-2


def test_lam_map_zero_is_identity_and_white_is_lam(photo, tmp_path):
    wmap = tmp_path / "zero.png"
    _map_png(wmap, np.zeros((14, 18)))
    res = _smooth(str(photo), "-o", str(tmp_path / "z.png"), "--lam-map", str(wmap),
                  "--tv", "iso")
    assert res.exit_code == 0, res.output
    assert np.array_equal(io.read_image(tmp_path / "z.png")[0], io.read_image(photo)[0])
    white = tmp_path / "one.png"
    _map_png(white, np.ones((14, 18)), channels=3)  # grey saved as RGB: accepted
    for extra, name in ((["--lam-map", str(white)], "m.tif"), ([], "p.tif")):
        res = _smooth(str(photo), "-o", str(tmp_path / name), "--tv", "iso", "--bit-depth",
                      "float", *TOL, *extra)
        assert res.exit_code == 0, res.output
    assert np.abs(io.read_image(tmp_path / "m.tif")[0]
                  - io.read_image(tmp_path / "p.tif")[0]).max() <= 1e-4


def test_lam_map_size_mismatch_is_per_file(photo, tmp_path):
    wmap = tmp_path / "w.png"
    _map_png(wmap, _weights())
    other = tmp_path / "small.png"
    io.write_image(other, np.zeros((5, 7, 3), np.float32), dtype="uint8")
    res = _smooth(str(other), str(photo), "-o", str(tmp_path / "out"), "--lam-map", str(wmap))
    assert res.exit_code == 1
    line = next(ln for ln in res.stderr.splitlines() if "small.png" in ln)
    assert "--lam-map" in line and "is 18x14 but the image is 7x5" in line
    assert (tmp_path / "out" / "in.png").is_file()


@pytest.mark.parametrize("make, args, msg", [
    (lambda p: io.write_image(p, np.random.default_rng(0).random((14, 18, 3))
                              .astype(np.float32), dtype="uint8"), [], "is a colour image"),
    (lambda p: io.write_image(p, np.ones((14, 18, 2), np.float32), dtype="uint8"), [],
     "alpha channel"),
    (lambda p: None, [], "no such file"),
    (lambda p: _map_png(p, _weights()), ["--mode", "rows"], "--lam-map needs the converged"),
    (lambda p: _map_png(p, _weights()), ["--iters", "4"], "--lam-map needs the converged"),
    (lambda p: _map_png(p, _weights()), ["--lam", "inf"], "--lam inf cannot be combined"),
])
def test_lam_map_option_errors(photo, tmp_path, make, args, msg):
    wmap = tmp_path / "w.png"
    make(wmap)
    res = _smooth(str(photo), "-o", str(tmp_path / "o.png"), "--lam-map", str(wmap), *args)
    assert isinstance(res.exception, CLIError) and res.exception.code == 2, res.output
    assert msg in str(res.exception)
    assert not (tmp_path / "o.png").exists()


def test_lam_map_negative_float_map_and_map_as_output(photo, tmp_path):
    neg = tmp_path / "neg.tif"
    _imwrite(neg, np.full((14, 18), -0.5, np.float32))
    res = _smooth(str(photo), "-o", str(tmp_path / "o.png"), "--lam-map", str(neg))
    assert isinstance(res.exception, CLIError) and "negative" in str(res.exception)
    wmap = tmp_path / "w.png"
    _map_png(wmap, _weights())
    before = wmap.read_bytes()
    res = _smooth(str(photo), "-o", str(wmap), "--lam-map", str(wmap), "--overwrite")
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert "refusing to overwrite an input" in str(res.exception)
    assert wmap.read_bytes() == before


def test_lam_map_volume_one_page_and_stack(tmp_path):
    vol = _stack((3, 8, 10), "float32", seed=4)
    src = tmp_path / "v.tif"
    _imwrite(src, vol)
    page = _weights(8, 10)
    one = tmp_path / "m1.png"
    _map_png(one, page)
    res = _smooth(str(src), "-o", str(tmp_path / "a.tif"), "--volume", "--tv", "iso",
                  "--lam", "0.15", "--lam-map", str(one), *TOL)
    assert res.exit_code == 0, res.output
    want = _ref(vol.astype(np.float64), 0.15 * np.broadcast_to(page, vol.shape), "iso")
    assert np.abs(tifffile.imread(tmp_path / "a.tif") - want).max() <= 1e-4
    stack_map = np.stack([page, page[::-1], np.ones_like(page)]).astype(np.float32)
    mp = tmp_path / "m3.tif"
    _imwrite(mp, stack_map)
    res = _smooth(str(src), "-o", str(tmp_path / "b.tif"), "--volume", "--lam", "0.15",
                  "--lam-map", str(mp), *TOL)
    assert res.exit_code == 0, res.output
    want = _ref(vol.astype(np.float64), 0.15 * stack_map.astype(np.float64), "iso")
    assert np.abs(tifffile.imread(tmp_path / "b.tif") - want).max() <= 1e-4
    _imwrite(mp, stack_map[:2])
    res = _smooth(str(src), "-o", str(tmp_path / "c.tif"), "--volume", "--lam-map", str(mp))
    assert res.exit_code == 1 and "is 10x8x2 but the image is 10x8x3" in res.stderr
