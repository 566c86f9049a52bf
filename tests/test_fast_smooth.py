"""The command line's torch-free smoothing (issue 28): tvcli._core, the torch op's
n-D TV solver built without torch (csrc/py/core_module.cpp), and the CLI path on
it (tvcli/cli/fast_filter.py). Both must give the torch path's bits: the module
against ``torch.ops.tvcli.prox_tv_nd``, the CLI's output files and records with
and without ``TVCLI_NO_FAST_CLI=1``; the cases it cannot prove the same (weight 0
or inf, a prox that may be the mean, non-finite data) take the torch path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

import tvcli
from tvcli import io, tv_nd_core
from tvcli.cli import app, fast_filter, tvfilter
from tvcli.tv_nd_core import core_module, prox_tv_nd

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "bsds500" / "images" / "test"
CORE = core_module()
needs_core = pytest.mark.skipif(CORE is None, reason="tvcli._core is not built")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_core_is_built_where_the_engine_is():
    """A Linux build of tvcli._C builds tvcli._core too (setup.py only warns when it
    fails, so that the CLI falls back; CI must notice)."""
    if not sys.platform.startswith("linux") or not tvcli.HAS_EXT:
        pytest.skip("no compiled engine here")
    assert CORE is not None, "tvcli._C is built but tvcli._core is not (see the build log)"


# ------------------------------------------------------------------ the module


def _photo(h: int, w: int) -> np.ndarray:
    """A BSDS500 test photo's crop, float32 (3, h, w) in [0, 1] (skips without data)."""
    from PIL import Image

    files = sorted(PHOTOS.glob("*.jpg"))
    if not files:
        pytest.skip("../shared/data/bsds500 is absent")
    img = np.asarray(Image.open(files[0]).convert("RGB"), dtype=np.float32)[:h, :w] / 255
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _problem(nd: int, shape: tuple[int, ...], dtype: str, wmap: bool, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(dtype)
    b = shape[0]
    w = (0.1 * rng.random((b, 1, *shape[2:]))).astype(dtype) if wmap else \
        np.full((b, 1) + (1,) * nd, 0.08, dtype)
    return x, w


def _op(x, w, nd, norm, tol, max_iter, f32_state, threads):
    torch.set_num_threads(threads)
    y, info = torch.ops.tvcli.prox_tv_nd(torch.from_numpy(x), torch.from_numpy(w), nd, norm,
                                         tol, max_iter, 5, f32_state)
    return y.numpy(), info.numpy()


CASES = [(1, (3, 2, 500)), (2, (1, 3, 41, 37)), (2, (3, 1, 30, 23)), (3, (1, 2, 7, 9, 11)),
         (4, (2, 1, 4, 3, 5, 6))]


@needs_core
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("nd,shape", CASES)
@pytest.mark.parametrize("norm", ["iso", "aniso"])
@pytest.mark.parametrize("dtype,f32_state", [("float32", True), ("float32", False),
                                             ("float64", False)])
def test_module_equals_the_torch_op_bit_for_bit(threads, nd, shape, norm, dtype, f32_state):
    for wmap in (False, True):
        x, w = _problem(nd, shape, dtype, wmap, seed=nd)
        y, info = _op(x, w, nd, norm, 1e-4, 300, f32_state, threads)
        y2, info2 = prox_tv_nd(x, w, nd, norm, 1e-4, 300, f32_state=f32_state, threads=threads)
        assert np.array_equal(y, y2) and np.array_equal(info, info2), (wmap, info, info2)


@needs_core
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("f32_state,tol", [(True, 5e-4), (False, 1e-4)])
def test_module_equals_the_torch_op_on_a_photo(threads, f32_state, tol):
    """A real photo, colour TV (one problem: every sweep split over lines, so the
    reductions' chunking matters) and three separate channels (one per thread)."""
    x = _photo(200, 300)
    for xk in (x[None], x[:, None]):
        w = np.full((xk.shape[0], 1, 1, 1), 0.05, np.float32)
        y, info = _op(xk, w, 2, "iso", tol, 20000, f32_state, threads)
        y2, info2 = prox_tv_nd(xk, w, 2, "iso", tol, 20000, f32_state=f32_state,
                               threads=threads)
        assert info[0, 0] > 20  # a real solve
        assert np.array_equal(y, y2) and np.array_equal(info, info2)


@needs_core
def test_the_equality_check_can_fail():
    """The same comparison with lam one float32 ulp apart tells them apart."""
    x, w = _problem(2, (1, 3, 41, 37), "float32", False, seed=2)
    y, _ = _op(x, w, 2, "iso", 1e-4, 300, False, 1)
    w2 = np.nextafter(w, np.float32(1))
    y2, _ = prox_tv_nd(x, w2, 2, "iso", 1e-4, 300, f32_state=False, threads=1)
    assert not np.array_equal(y, y2)


@needs_core
@pytest.mark.parametrize("change,message", [
    (dict(nd=5), "supports 1 to 4 spatial dimensions, got 5"),
    (dict(nd=1), "x must have shape (B, C, *S) with 1 spatial dimensions, got rank 4"),
    (dict(norm="l2"), "norm must be 'iso' or 'aniso', got 'l2'"),
    (dict(tol=-1.0), "tol must be >= 0"),
    (dict(tol=float("nan")), "tol must be >= 0"),
    (dict(max_iter=0), "max_iter must be >= 1"),
    (dict(check_every=0), "check_every must be >= 1"),
    (dict(threads=0), "threads must be >= 1"),
    (dict(x=np.zeros((1, 1, 4, 4), np.int32)), "x must be float32 or float64"),
    (dict(w=np.zeros((1, 1, 1, 1), np.float64)), "w must have x's dtype"),
    (dict(w=np.zeros((1, 1, 2, 1), np.float32)), "w's spatial sizes must be x's or all 1"),
    (dict(w=np.zeros((1, 2, 1, 1), np.float32)), "w must have shape (B, 1, *S)"),
    (dict(x=np.zeros((1, 1, 0, 4), np.float32)), "x has an empty dimension 2"),
    (dict(y=np.zeros((1, 1, 4, 5), np.float32)), "y must have x's shape (1, 1, 4, 4)"),
    (dict(info=np.zeros((1, 2))), "info must be float64 of shape (1, 3)"),
])
def test_module_bad_arguments_are_one_line_errors(change, message):
    args = dict(x=np.zeros((1, 1, 4, 4), np.float32), w=np.zeros((1, 1, 1, 1), np.float32),
                y=np.zeros((1, 1, 4, 4), np.float32), info=np.zeros((1, 3)), nd=2,
                norm="iso", tol=1e-3, max_iter=10, check_every=5, f32_state=False,
                restart=True, threads=1)
    args.update(change)
    with pytest.raises((ValueError, TypeError)) as exc:
        CORE.prox_tv_nd(**args)
    text = str(exc.value)
    assert message in text and "\n" not in text and text.startswith("tvcli: ")


@needs_core
def test_module_refuses_readonly_and_overlapping_outputs():
    x = np.zeros((1, 1, 4, 4), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    ro = np.zeros_like(x)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="y must be a C-contiguous, writable array"):
        CORE.prox_tv_nd(x, w, ro, np.zeros((1, 3)), 2, "iso", 1e-3, 10, 5, False, True, 1)
    with pytest.raises(ValueError, match="must not overlap"):
        CORE.prox_tv_nd(x, w, x, np.zeros((1, 3)), 2, "iso", 1e-3, 10, 5, False, True, 1)


def test_default_threads_is_torchs():
    """tvcli.threads.default_threads (no torch) equals torch.get_num_threads() in a
    fresh process, under the environment variables that change torch's."""
    probe = ("import torch; from tvcli.threads import default_threads; "
             "print(default_threads(), torch.get_num_threads())")
    for extra in ({}, {"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "64"},
                  {"MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DYNAMIC")}
        env.update(extra, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env=env, timeout=120).stdout.split()
        assert len(out) == 2 and out[0] == out[1], (extra, out)


# ------------------------------------------------------------------ the command line


@pytest.fixture
def calls(monkeypatch):
    """Counts the torch-free solver's calls from the CLI."""
    seen = []
    real = fast_filter.prox_tv_nd

    def counting(*args, **kwargs):
        seen.append((kwargs.get("threads"), kwargs.get("f32_state")))
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_filter, "prox_tv_nd", counting)
    return seen


def _image(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """Blocks plus noise in [0, 1], float32 (h, w, channels)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, channels))
    img[h // 4: 3 * h // 4, w // 3:] = 0.6
    img[: h // 2, : w // 2] += 0.2
    img = np.clip(img + 0.12 * rng.standard_normal(img.shape) + 0.1, 0, 1)
    if channels in (2, 4):
        img[..., -1] = np.linspace(0.2, 1, w)[None, :]
    return img.astype(np.float32)


def _cli(monkeypatch, fast: bool, *args: str):
    """Runs ``tvcli ARGS --json`` in this process with or without the torch-free path;
    returns the JSON record without its timings. ``--device cpu`` unless ARGS name a
    device: on a CUDA build ``--device auto`` keeps the torch path (it asks torch for
    a GPU), and these tests compare the two CPU paths."""
    if fast:
        monkeypatch.delenv("TVCLI_NO_FAST_CLI", raising=False)
    else:
        monkeypatch.setenv("TVCLI_NO_FAST_CLI", "1")
    device = [] if "--device" in args else ["--device", "cpu"]
    res = runner.invoke(app, [*map(str, args), *device, "--json", "--overwrite"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    for key in ("seconds", "timings", "output"):
        rec.pop(key)
    return rec


def _both(monkeypatch, calls, src: Path, *args: str, fast_expected: bool = True,
          ext: str = ".png"):
    """The CLI's output file and record, torch-free and torch path: equal bytes."""
    outs = []
    for fast in (True, False):
        out = src.with_name(f"{src.stem}.{'fast' if fast else 'torch'}{ext}")
        n = len(calls)
        rec = _cli(monkeypatch, fast, "smooth" if "--sharpen" not in args else "sharpen", src,
                   "-o", out, *[a for a in args if a != "--sharpen"])
        assert (len(calls) > n) == (fast and fast_expected), (fast, fast_expected)
        outs.append((out.read_bytes(), rec))
    (a, rec_a), (b, rec_b) = outs
    assert a == b, "the torch-free output differs from the torch path's"
    assert rec_a == rec_b
    return rec_a


@needs_core
@pytest.mark.parametrize("channels,depth", [(3, "8"), (1, "8"), (4, "8"), (2, "8"),
                                            (3, "16"), (1, "16")])
@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("lam", ["0.03", "0.07"])
def test_cli_output_equals_the_torch_path(tmp_path, monkeypatch, calls, channels, depth,
                                          threads, lam):
    src = tmp_path / "in.png"
    io.write_image(src, _image(37, 45, channels), dtype="uint8" if depth == "8" else "uint16")
    rec = _both(monkeypatch, calls, src, "--lam", lam, "--threads", threads)
    assert rec["iterations"] >= 5 and rec["stop"] == "tol" and rec["tv"] == "iso"
    assert rec["tol"] == (5e-4 if depth == "8" else 7e-6)
    # a float32 state first (it turns float64 at a bound of 2e-3 lam: the 16-bit tol)
    assert calls[-1] == (int(threads), True)
    if channels in (2, 4):  # alpha copied through
        out = io.read_image(tmp_path / "in.fast.png")[0]
        assert np.array_equal(out[..., -1], io.read_image(src)[0][..., -1])


@needs_core
@pytest.mark.parametrize("extra", [["--sharpen"], ["--color", "separate"],
                                   ["--color", "separate", "--threads", "1"],
                                   ["--max-iter", "7"], ["--tol", "1e-3"],
                                   ["--device", "cpu", "--threads", "3"]])
def test_cli_options_equal_the_torch_path(tmp_path, monkeypatch, calls, extra):
    src = tmp_path / "in.png"
    io.write_image(src, _image(40, 33, 3, seed=1), dtype="uint8")
    rec = _both(monkeypatch, calls, src, "--lam", "0.05", *extra)
    if "--max-iter" in extra:
        assert rec["stop"] == "max_iter" and rec["iterations"] == 7


@needs_core
def test_cli_float_output_equals_and_the_check_can_fail(tmp_path, monkeypatch, calls):
    """Float TIFF output shows every bit; with lam one float32 ulp off in the
    torch-free path only, the outputs differ (the comparison is not vacuous)."""
    src = tmp_path / "in.png"
    io.write_image(src, _image(31, 42, 3, seed=2), dtype="uint8")
    _both(monkeypatch, calls, src, "--lam", "0.05", "--bit-depth", "float", ext=".tif")
    real = fast_filter._weight

    def off_by_one_ulp(settings, dtype):
        w = real(settings, dtype)
        return np.nextafter(w, w.dtype.type(1))

    monkeypatch.setattr(fast_filter, "_weight", off_by_one_ulp)
    with pytest.raises(AssertionError, match="differs from the torch path"):
        _both(monkeypatch, calls, src, "--lam", "0.05", "--bit-depth", "float", ext=".tif")


@needs_core
def test_cli_stalled_f32_state_is_solved_again_as_on_the_torch_path(tmp_path, monkeypatch,
                                                                     calls):
    """A float32 state that stalls above tol (forced: the float32 state allowed at any
    tol, --tol 1e-6) is solved again in float64 by both paths: equal float outputs,
    converged; the torch-free path made the two calls."""
    monkeypatch.setattr(tv_nd_core, "F32_STATE_MIN_TOL", 0.0)
    src = tmp_path / "in.png"
    io.write_image(src, _image(24, 20, 3, seed=4), dtype="uint8")
    n = len(calls)
    rec = _both(monkeypatch, calls, src, "--lam", "0.1", "--tol", "1e-6", "--max-iter", "3000",
                "--bit-depth", "float", ext=".tif")
    assert rec["stop"] == "tol" and rec["error_bound"] <= 1e-6
    assert [c[1] for c in calls[n:]] == [True, False]


@needs_core
def test_cli_one_channel_at_a_time_equals_the_torch_path(tmp_path, monkeypatch, calls):
    """Large images with separate channels are solved one channel per call."""
    monkeypatch.setattr(tvfilter, "_BATCH_SAMPLES", 100)
    monkeypatch.setattr(fast_filter, "_BATCH_SAMPLES", 100)
    src = tmp_path / "in.png"
    io.write_image(src, _image(30, 30, 4, seed=3), dtype="uint8")
    n = len(calls)
    _both(monkeypatch, calls, src, "--lam", "0.05", "--color", "separate", "--threads", "2")
    assert len(calls) - n == 3


@needs_core
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16"])
def test_cli_volume_equals_the_torch_path(tmp_path, monkeypatch, calls, dtype):
    rng = np.random.default_rng(4)
    vol = np.clip(0.3 + 0.2 * rng.standard_normal((5, 12, 14, 3)), 0, 1)
    vol = (vol * 65535).astype(np.uint16) if dtype == "uint16" else vol.astype(dtype)
    src = tmp_path / "v.tif"
    tifffile.imwrite(src, vol, photometric="rgb")
    rec = _both(monkeypatch, calls, src, "--lam", "0.05", "--volume", ext=".tif")
    assert rec["volume"] is True and rec["iterations"] > 5


@needs_core
def test_cli_photo_equals_the_torch_path(tmp_path, monkeypatch, calls):
    img = _photo(321, 481).transpose(1, 2, 0)
    src = tmp_path / "photo.png"
    io.write_image(src, np.ascontiguousarray(img), dtype="uint8")
    rec = _both(monkeypatch, calls, src, "--lam", "0.05", "--threads", "2")
    assert rec["iterations"] > 20


@needs_core
@pytest.mark.parametrize("lam", ["0", "1000", "inf", "1e-50"])
def test_cli_special_weights_take_the_torch_path(tmp_path, monkeypatch, calls, lam):
    """lam 0 (identity), lam 1e-50 (0 in float32), a lam whose prox is the mean and
    lam inf: the torch path's own shortcuts, so the same result and no solver call."""
    src = tmp_path / "in.png"
    io.write_image(src, _image(20, 24, 3, seed=5), dtype="uint8")
    _both(monkeypatch, calls, src, "--lam", lam, fast_expected=False)


@needs_core
def test_a_prox_near_the_mean_takes_the_torch_path(tmp_path, monkeypatch, calls):
    """Flat data with a little noise: _mean_candidates passes, tvcli.prox_tv may skip
    the solver; the torch-free path leaves it to the torch path."""
    img = 0.5 + 0.001 * np.random.default_rng(6).standard_normal((16, 18, 3))
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, img.astype(np.float32), photometric="rgb")
    _both(monkeypatch, calls, src, "--lam", "0.05", fast_expected=False, ext=".tif")


@needs_core
def test_non_finite_image_takes_the_torch_path(calls):
    """The CLI refuses NaN files; the filter step still leaves them to torch."""
    img = _image(12, 14, 3, seed=7)
    img[3, 4, 1] = np.nan
    settings = tvfilter.FilterSettings(lam=0.05, tol=5e-4, max_iter=2000, tv="iso",
                                       color="joint", cpu_threads=1)
    got, facts = fast_filter.apply_to_image(img.copy(), settings)
    want, want_facts = tvfilter.filter_image(img.copy(), settings)
    assert not calls
    assert np.array_equal(got, want, equal_nan=True) and facts == want_facts


@needs_core
def test_off_switch_and_other_models_import_torch(tmp_path, monkeypatch):
    """TVCLI_NO_FAST_CLI=1, --tv aniso and --device cuda keep the torch path."""
    monkeypatch.delenv("TVCLI_NO_FAST_CLI", raising=False)
    assert fast_filter.usable("cpu", "2d", None, "iso", None, "direct")
    assert not fast_filter.usable("cpu", "2d", None, "aniso", None, "direct")
    assert not fast_filter.usable("cuda", "2d", None, "iso", None, "direct")
    assert not fast_filter.usable("cpu", "2d", None, "iso", "map.png", "direct")
    assert not fast_filter.usable("cpu", "rows", None, "iso", None, "direct")
    monkeypatch.setenv("TVCLI_NO_FAST_CLI", "1")
    assert not fast_filter.usable("cpu", "2d", None, "iso", None, "direct")


@needs_core
def test_fallback_in_a_fresh_process(tmp_path):
    """A real run that loads tvcli._core (and its OpenMP runtime, passive waits)
    first and then falls back to torch, which shares that runtime: the same file
    as the torch path's."""
    src = tmp_path / "in.png"
    io.write_image(src, _image(20, 24, 3, seed=8), dtype="uint8")
    outs = []
    for off in ("0", "1"):
        env = {k: v for k, v in os.environ.items()
               if k not in ("TVCLI_NO_FAST_CLI", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(PYTHONPATH=str(ROOT), TVCLI_NO_FAST_CLI=off)
        out = tmp_path / f"out{off}.png"
        r = subprocess.run([sys.executable, "-m", "tvcli", "smooth", str(src), "-o", str(out),
                            "--lam", "1000", "-q"], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@needs_core
def test_module_thread_count_is_clamped():
    """A huge count is clamped (OpenMP crashes on ~20000 threads), with a warning."""
    from tvcli.threads import max_threads

    x, w = _problem(2, (1, 1, 9, 8), "float32", False, seed=9)
    with pytest.warns(RuntimeWarning, match=f"using {max_threads()}"):
        y, _ = prox_tv_nd(x, w, 2, "iso", 1e-4, 300, threads=100000)
    assert np.array_equal(y, prox_tv_nd(x, w, 2, "iso", 1e-4, 300, threads=1)[0])
    with pytest.raises(ValueError, match="integer >= 1"):
        prox_tv_nd(x, w, 2, "iso", 1e-4, 300, threads=0)
