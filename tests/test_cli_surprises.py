"""Issue 27: the command line without silent surprises.

Thread counts beyond the machine, animated PNG / WebP, tvcli's own outputs in
a folder run, a denoiser run at a noise level it was not trained for, and a
write cut by a closed pipe: each is refused or handled with one clear line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tvcli import io
from tvcli.cli import app
from tvcli.cli._app import CLIError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def tvcli_proc(*args, stdout=subprocess.PIPE, env=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tvcli", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, env=env, timeout=timeout)


def error_line(res) -> str:
    """The CLIError message of a CliRunner result ('' if it did not stop with one)."""
    if isinstance(res.exception, CLIError):
        return str(res.exception)
    return ""


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A small 8-bit RGB photograph."""
    astro, _ = io.read_image(EXAMPLES / "astronaut.png")
    path = tmp_path / "photo.png"
    io.write_image(path, astro[:40, 60:100], dtype="uint8")
    return path


# ---------------------------------------------------------------- 4: trained sigma

def test_sigma_outside_a_fixed_sigma_model_is_refused_naming_the_covering_model(
        photo, tmp_path):
    out = tmp_path / "o.png"
    res = invoke("run", "dncnn-tv", photo, "-o", out, "--sigma", "50", "--tile", "0")
    msg = error_line(res)
    assert "outside what dncnn-tv was trained for (sigma 25" in msg, res.output
    assert "use ffdnet-tv (sigma 0-55)" in msg and "--force" in msg
    assert "\n" not in msg and not out.exists()
    res = invoke("run", "dncnn", photo, "-o", out, "--add-noise", "10", "--tile", "0")
    assert "use ffdnet (sigma 0-55)" in error_line(res)  # a plain model gets a plain one


def test_force_runs_it_with_a_warning(photo, tmp_path):
    out = tmp_path / "o.png"
    res = tvcli_proc("run", "dncnn-tv", photo, "-o", out, "--sigma", "50", "--tile", "0",
                     "--force")
    assert res.returncode == 0, res.stderr
    err = res.stderr.decode()
    assert "warning: --sigma 50 is outside what dncnn-tv was trained for" in err
    assert out.exists()


def test_sigma_no_shipped_model_covers(photo, tmp_path):
    res = invoke("run", "ffdnet", photo, "-o", tmp_path / "o.png", "--sigma", "80")
    msg = error_line(res)
    assert "outside what ffdnet was trained for (sigma 0-55" in msg
    assert "no shipped model is trained for it" in msg


def test_sigma_inside_the_trained_range_runs_quietly(photo, tmp_path):
    for model, sigma in (("dncnn-tv", "25"), ("ffdnet-tv", "30")):
        res = tvcli_proc("run", model, photo, "-o", tmp_path / f"{model}.png", "--sigma",
                         sigma, "--tile", "0", "-q")
        assert res.returncode == 0 and b"warning" not in res.stderr, res.stderr


# ---------------------------------------------------------------- 3: own outputs

def test_folder_run_skips_tvclis_own_outputs_and_says_so(photo, tmp_path, capsys):
    folder = photo.parent
    res = tvcli_proc("smooth", photo, "--mode", "rows", "--compare")  # the README's first line
    assert res.returncode == 0, res.stderr
    assert {p.name for p in folder.iterdir()} == {"photo.png", "photo.smooth.png",
                                                   "photo.smooth.compare.png"}
    (folder / "photo.dncnn-tv.png").write_bytes(photo.read_bytes())  # a `tvcli run` output
    out = tmp_path.parent / f"{tmp_path.name}-out"
    res = tvcli_proc("smooth", folder, "-o", out, "--mode", "rows")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]  # the photo only
    err = res.stderr.decode()
    assert "skipped 3 files in folder inputs named like tvcli outputs" in err, err
    assert "--include-outputs" in err and len(err.strip().splitlines()) == 1
    res = tvcli_proc("smooth", folder, "-o", out, "--mode", "rows", "--include-outputs",
                     "--skip-existing")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "photo.dncnn-tv.png", "photo.png", "photo.smooth.compare.png", "photo.smooth.png"]
    assert b"skipped" not in res.stderr


def test_own_outputs_named_on_the_command_line_are_processed(photo, tmp_path):
    named = photo.with_name("photo.sharpen.png")
    named.write_bytes(photo.read_bytes())
    res = invoke("smooth", named, "-o", tmp_path / "o.png", "--mode", "rows")
    assert res.exit_code == 0, res.output and (tmp_path / "o.png").exists()


def test_folder_of_only_outputs_says_why_nothing_was_found(photo, tmp_path):
    only = tmp_path / "only"
    only.mkdir()
    (only / "a.smooth.png").write_bytes(photo.read_bytes())
    res = tvcli_proc("run", "eps", only, "-o", tmp_path / "o")
    assert res.returncode == 1
    assert "only 1 named like tvcli outputs; use --include-outputs" in res.stderr.decode()


# ---------------------------------------------------------------- 1: thread counts

HUGE = "100000"  # torch accepts it; OpenMP then segfaulted (exit 139, no message)


@pytest.mark.parametrize("args", [
    ["smooth", "{photo}", "-o", "{out}", "--threads", HUGE],
    ["sharpen", "{photo}", "-o", "{out}", "-j", HUGE, "--mode", "rows"],
    ["run", "dncnn-tv", "{photo}", "-o", "{out}", "--tile", "0", "-j", HUGE],
    ["run", "allconv", "{photo}", "--threads", HUGE],
])
def test_huge_thread_count_is_clamped_with_one_line(photo, tmp_path, args):
    from tvcli.threads import max_threads

    out = tmp_path / "o.png"
    res = tvcli_proc(*[a.format(photo=photo, out=out) for a in args])
    assert res.returncode == 0, (res.returncode, res.stderr[-500:])
    warning = [line for line in res.stderr.decode().splitlines() if "warning" in line]
    assert len(warning) == 1, res.stderr
    assert f"--threads {HUGE} threads is more than this machine's sensible maximum of " \
           f"{max_threads()}" in warning[0]


@pytest.fixture
def torch_threads_restored():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_train_clamps_before_training(monkeypatch, capsys, torch_threads_restored):
    import importlib

    import torch

    import tvcli.learning.train
    from tvcli.threads import max_threads

    seen = {}

    def fake_train(cfg, progress=True):  # stands in for a training run
        seen["threads"] = torch.get_num_threads()
        raise ValueError("stopped by the test")

    # `tvcli train` imports make_config from tvcli.train_setup or (the package
    # layout) tvcli.learning.train at call time: stub it wherever it lives
    for name in ("tvcli.train_setup", "tvcli.learning.train"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "make_config"):
            monkeypatch.setattr(module, "make_config", lambda *a, **k: object())
    monkeypatch.setattr(tvcli.learning.train, "train", fake_train)
    res = invoke("train", "dncnn", "--data", "x", "--threads", HUGE)
    assert "stopped by the test" in error_line(res)
    assert seen["threads"] == max_threads()
    assert "sensible maximum" in res.output


def test_bench_clamps_before_timing(monkeypatch, torch_threads_restored):
    from tvcli.bench import suite
    from tvcli.threads import max_threads

    seen = {}

    def fake_run(**kwargs):
        import torch

        seen["threads"] = torch.get_num_threads()
        return {}

    monkeypatch.setattr(suite, "run", fake_run)
    monkeypatch.setattr(suite, "print_report", lambda result: None)
    res = invoke("bench", "--threads", HUGE, "--no-peers")
    assert res.exit_code == 0, res.output
    assert seen["threads"] == max_threads() and "sensible maximum" in res.output


def test_python_api_clamps_with_a_warning():
    code = ("import warnings, torch, tvcli\n"
            "from tvcli.threads import max_threads\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    n = tvcli.set_num_threads(100000)\n"
            "assert n == max_threads() == torch.get_num_threads(), n\n"
            "assert len(w) == 1 and 'sensible maximum' in str(w[0].message)\n"
            "y = tvcli.prox_tv2d(torch.rand(3, 32, 32), 0.1)\n"
            "assert tvcli.set_num_threads(1) == 1\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0 and res.stdout.strip() == b"ok", res.stderr[-800:]


# ---------------------------------------------------------------- 6: closed pipe

def _cut_after(args: list[str], nbytes: int) -> tuple[int, bytes]:
    """Runs tvcli with stdout to a pipe whose reader closes it after ``nbytes``
    (as `... | head -c N` does); returns (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "tvcli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    head = proc.stdout.read(nbytes)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert len(head) == nbytes
    return proc.returncode, err


def test_image_to_a_closed_pipe_exits_non_zero_quietly(tmp_path):
    rng = np.random.default_rng(0)
    big = tmp_path / "noise.png"  # ~0.5 MB of PNG: more than a pipe's 64 KiB buffer
    io.write_image(big, rng.random((400, 400, 3)).astype(np.float32), dtype="uint8")
    code, err = _cut_after(["smooth", str(big), "-o", "-", "--mode", "rows"], 10)
    assert code == 141, (code, err)  # as `cat` killed by SIGPIPE
    assert err == b"", err


def test_result_lines_to_a_closed_pipe_exit_non_zero_quietly(photo, tmp_path):
    """(Already so before issue 27: Click turns EPIPE into a quiet exit 1; kept
    as a guard next to the image case.)"""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"p{i:02d}.png").write_bytes(photo.read_bytes())
    code, err = _cut_after(["smooth", str(folder), "-o", str(tmp_path / "out"), "--mode",
                            "rows", "--json"], 10)
    assert code in (1, 141), (code, err)
    assert b"Traceback" not in err and b"Broken pipe" not in err, err


# ---------------------------------------------------------------- 2: animations

def _frames(n: int, mode: str = "RGB") -> list:
    from PIL import Image

    rng = np.random.default_rng(n)
    return [Image.fromarray((rng.random((24, 32, len(mode))) * 255).astype(np.uint8), mode)
            for _ in range(n)]


@pytest.mark.parametrize("ext,kwargs", [
    (".png", {}),                          # APNG, default image = frame 1
    (".png", {"default_image": True}),     # APNG whose default image is not a frame
    (".webp", {"lossless": True}),
])
def test_animated_png_and_webp_are_refused_not_cut_to_frame_one(tmp_path, ext, kwargs):
    frames = _frames(3, "RGBA" if ext == ".webp" else "RGB")
    anim = tmp_path / f"anim{ext}"
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=100, loop=0,
                   **kwargs)
    with pytest.raises(io.UnsupportedFormatError, match=r"animated (PNG|WEBP) \(\d frames\)"):
        io.read_image(anim)
    # the command line: one line, the batch goes on past it
    still = tmp_path / "still.png"
    frames[0].convert("RGB").save(still)
    res = tvcli_proc("smooth", anim, still, "-o", tmp_path / "out", "--mode", "rows")
    assert res.returncode == 1
    errors = [line for line in res.stderr.decode().splitlines() if "error" in line]
    assert len(errors) == 1 and "only the first frame" in errors[0], res.stderr
    assert (tmp_path / "out" / "still.png").exists()
    assert not (tmp_path / "out" / anim.name).exists()


def test_single_frame_png_and_webp_still_read(tmp_path):
    for ext in (".png", ".webp"):
        frame = _frames(1)[0]
        path = tmp_path / f"one{ext}"
        frame.save(path, **({"lossless": True} if ext == ".webp" else {}))
        img, meta = io.read_image(path)
        assert img.shape == (24, 32, 3) and meta.format == ext[1:]


# ---------------------------------------------------------------- 5: memory

_MEMPROBE = """
import resource, numpy as np, torch
from tvcli.cli.tvfilter import FilterSettings, filter_image
h, w = 1500, 2000
img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
torch.set_num_threads(1)
settings = FilterSettings(lam=0.05, tol=1e-3, max_iter=2)  # the peak needs no convergence
filter_image(img[:64, :64].copy(), settings)  # warm-up: torch's pools, the engine
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
filter_image(img, settings, inplace=True)  # as `tvcli smooth` runs it
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_converged_smoothing_peak_memory_is_a_few_channels():
    """Above the image itself (filtered in place), converged smoothing of a large
    image needs the channel being solved (a contiguous copy) and the solver's state
    (three float32 channels), plus small float64 blocks: about 4 channels. It
    was 13 channels (float64 copies of the channel and state, issue 27)."""
    # A fixed mmap threshold: glibc's adaptive one keeps freed blocks below 32 MB
    # in the heap, which made this 12 MB-channel figure vary by 2 channels run to
    # run; real photos' channels are larger than that and are always mmapped.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": "1048576"}
    res = subprocess.run([sys.executable, "-c", _MEMPROBE], capture_output=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-800:]
    extra = int(res.stdout.split()[-1])
    channel = 1500 * 2000 * 4
    # measured 4.0 channels now, 13.0 before issue 27
    assert extra <= 5 * channel, f"{extra / channel:.1f} channels"


def test_float32_state_stays_within_the_certified_bound():
    """float32 [0, 1] images at tol >= 3e-4 (the CLI's 1e-3) are solved with
    float32 state (issue 27): the result must still be within its certified RMS
    bound of the exact prox, in as few iterations as with float64 state (which
    tighter tolerances still use)."""
    import torch

    import tvcli

    img, _ = io.read_image(EXAMPLES / "astronaut.png")
    x = torch.from_numpy(np.ascontiguousarray(img[:96, 100:196].transpose(2, 0, 1)))
    exact = tvcli.prox_tv2d(x.double(), 0.1, tol=1e-10, max_iter=20000)
    for tol in (1e-3, 3e-4, 1e-4, 1e-5):
        y, info = tvcli.prox_tv2d(x, 0.1, tol=tol, return_info=True)
        y64, info64 = tvcli.prox_tv2d(x.double(), 0.1, tol=tol, return_info=True)
        assert info.stop == "tol"
        assert (info.iterations - info64.iterations).abs().max() <= 2
        rms = (y.double() - exact).square().mean(dim=(1, 2)).sqrt()
        assert bool((rms <= info.error_bound + 1e-6).all()), (tol, rms, info.error_bound)
        assert bool((info.error_bound <= tol).all())
