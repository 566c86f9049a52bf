"""Issue 11, part 2: the command line must not lose data or misbehave on odd input.

Output collisions (result / comparison / extra files / inputs), invalid tiling,
resuming with the output folder inside the input tree, huge and infinite lam,
binary images to a terminal, --version, piped `tvcli models`, sigma outside a
blind model's range, symlink loops, stale temporary files, --max-iter notes and
live status for single images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from terminal import run_with_terminal_stderr
from typer.testing import CliRunner

import tvcli
from tvcli import io
from tvcli.cli import app, batch
from tvcli.cli._app import CLIError
from tvcli.cli.tvfilter import FilterSettings, filter_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
HAS_2D = hasattr(tvcli, "prox_tv2d")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def tvcli_proc(*args, cwd=None, stdout=subprocess.PIPE, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tvcli", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, env=env, cwd=cwd, timeout=120)


def error_line(res) -> str:
    """The one-line message of a CliRunner result that stopped with a CLIError
    (exit status 2 through the console script); '' for any other outcome."""
    if isinstance(res.exception, CLIError) and res.exception.code == 2:
        return str(res.exception)
    return ""


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with two small photographs."""
    src = tmp_path / "photos"
    src.mkdir()
    astro, _ = io.read_image(EXAMPLES / "astronaut.png")
    io.write_image(src / "a.png", astro[:48, 64:120], dtype="uint8")
    io.write_image(src / "b.png", astro[100:140, 200:260], dtype="uint8")
    return src


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- output collisions

def test_compare_out_equal_to_output_is_refused_before_any_work(photos, tmp_path):
    out = tmp_path / "d.png"
    res = invoke("smooth", photos / "a.png", "-o", out, "--compare-out", out, "--mode", "rows")
    assert "would be both" in error_line(res)
    assert "\n" not in error_line(res) and not out.exists()


def test_compare_out_equal_to_an_input_is_refused(photos, tmp_path):
    before = (photos / "a.png").read_bytes()
    res = invoke("smooth", photos / "a.png", "-o", tmp_path / "o.png", "--compare-out",
                 photos / "a.png", "--mode", "rows", "--overwrite")
    assert "is the input" in error_line(res)
    assert (photos / "a.png").read_bytes() == before and not (tmp_path / "o.png").exists()
    # the same file through a hard link
    os.link(photos / "a.png", tmp_path / "hard.png")
    res = invoke("smooth", photos / "a.png", "-o", tmp_path / "o.png", "--compare-out",
                 tmp_path / "hard.png", "--mode", "rows", "--overwrite")
    assert "is the input" in error_line(res)


def test_folder_result_and_comparison_names_collide(photos, tmp_path):
    (photos / "a.compare.png").write_bytes((photos / "b.png").read_bytes())
    out = tmp_path / "out"
    # a.compare.png is named like a tvcli output: only --include-outputs reads it
    # (issue 27), and then its result collides with a.png's comparison picture
    res = invoke("smooth", photos, "-o", out, "--compare", "--mode", "rows",
                 "--include-outputs")
    msg = error_line(res)
    assert "a.compare.png" in msg and "comparison picture of" in msg and "result of" in msg
    assert not out.exists() or tree(out) == []  # nothing written


def test_extra_outputs_take_part_in_the_check(photos, tmp_path):
    jobs = batch.plan_jobs([str(photos)], str(tmp_path / "out"), "smooth")
    batch.check_output_plan(jobs, [tmp_path / "summary.json"])  # no collision
    with pytest.raises(batch.OutputCollisionError, match="result of"):
        batch.check_output_plan(jobs, [tmp_path / "out" / "a.png"])
    with pytest.raises(batch.OutputCollisionError, match="is the input"):
        batch.plan_jobs([str(photos)], str(tmp_path / "out"), "smooth",
                        extra_outputs=[photos / "b.png"])
    with pytest.raises(batch.OutputCollisionError, match="would be both"):
        batch.check_output_plan(jobs, ["x.json", Path("x.json").absolute()])


# ---------------------------------------------------------------- tiling, resume

def test_run_rejects_a_tile_smaller_than_twice_the_overlap(photos, tmp_path):
    res = invoke("run", "dncnn", photos / "a.png", "-o", tmp_path / "o.png", "--tile", "32",
                 "--overlap", "48")
    assert "--tile 32 is too small for --overlap 48" in error_line(res)
    assert not (tmp_path / "o.png").exists()


def test_run_caps_the_default_overlap_to_half_the_tile(photos, tmp_path, monkeypatch):
    # --tile 32 with the model's default overlap (48) used to step by 1 px (338 s
    # instead of ~5 s); the default overlap now never exceeds half the tile.
    from tvcli.models import inference

    starts = []
    real = inference.tile_starts
    monkeypatch.setattr(inference, "tile_starts",
                        lambda size, tile, overlap, multiple=1: starts.append(
                            (tile, overlap)) or real(size, tile, overlap, multiple))
    res = invoke("run", "dncnn", photos / "a.png", "-o", tmp_path / "o.png", "--tile", "32")
    assert res.exit_code == 0, res.output
    assert starts and all(ov <= tile // 2 for tile, ov in starts)


def test_resume_with_output_folder_inside_the_input_tree(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative spellings: the case that used to slip through
    (photos / "sub").mkdir()
    io.write_image(photos / "sub" / "c.png", io.read_image(photos / "a.png")[0])
    first = invoke("smooth", "photos", "-o", "photos/out", "-r", "--mode", "rows", "--json")
    assert first.exit_code == 0
    assert len(first.stdout.splitlines()) == 3
    again = invoke("smooth", "photos", "-o", "photos/out", "-r", "--mode", "rows", "--json",
                   "--skip-existing")
    records = [json.loads(line) for line in again.stdout.splitlines()]
    assert again.exit_code == 0 and [r["status"] for r in records] == ["skipped"] * 3
    assert tree(photos / "out") == ["a.png", "b.png", "sub", "sub/c.png"]


def test_resume_removes_stale_part_files(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.png.k2j3h4.part"
    stale.write_bytes(b"half an image")
    other = out / ".unrelated.png.x.part"
    other.write_bytes(b"not ours")
    res = invoke("smooth", photos, "-o", out, "--mode", "rows", "--skip-existing")
    assert res.exit_code == 0 and not stale.exists() and other.exists()


# ---------------------------------------------------------------- lam

def test_lam_above_float32_range_works_like_inf(photos, tmp_path):
    res = invoke("smooth", photos / "a.png", "-o", tmp_path / "big.png", "--lam", "1e39",
                 "--mode", "rows", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lam"] == 1e39
    assert invoke("smooth", photos / "a.png", "-o", tmp_path / "inf.png", "--lam", "inf",
                  "--mode", "rows").exit_code == 0
    big = io.read_image(tmp_path / "big.png")[0]
    np.testing.assert_array_equal(big, io.read_image(tmp_path / "inf.png")[0])
    assert np.ptp(big, axis=1).max() == 0  # every row flat: the lam -> inf limit


def _reject_constant(name):
    raise ValueError(f"not JSON: {name}")


@pytest.mark.skipif(not HAS_2D, reason="needs prox_tv2d")
def test_lam_inf_json_is_strict_json(photos, tmp_path):
    res = invoke("smooth", photos / "a.png", "-o", tmp_path / "o.png", "--lam", "inf", "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout, parse_constant=_reject_constant)
    assert record["lam"] is None and record["status"] == "ok"


# ---------------------------------------------------------------- terminals, small items

def test_binary_image_is_not_written_to_a_terminal(photos):
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    try:
        res = tvcli_proc("smooth", photos / "a.png", "-o", "-", "--mode", "rows", stdout=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert res.returncode == 2
    assert res.stderr.decode().startswith("tvcli: error: refusing to write a binary image")


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"tvcli {tvcli.__version__}"


def test_models_piped_lists_full_names():
    from tvcli.models import MODELS

    res = invoke("models")
    assert res.exit_code == 0 and "…" not in res.stdout
    rows = [line.split("\t") for line in res.stdout.splitlines() if "\t" in line]
    assert rows[0][0] == "model" and {r[0] for r in rows[1:]} == set(MODELS)


def test_sigma_outside_a_blind_models_range_is_refused_or_warned_with_force(photos, tmp_path):
    # issue 27: refused without --force (tests/test_cli_surprises.py), warned with it
    res = tvcli_proc("run", "ffdnet", photos / "b.png", "-o", tmp_path / "o.png", "--sigma", "80")
    assert res.returncode == 2 and not (tmp_path / "o.png").exists()
    res = tvcli_proc("run", "ffdnet", photos / "b.png", "-o", tmp_path / "o.png", "--sigma", "80",
                     "--force")
    assert res.returncode == 0, res.stderr
    assert "warning: --sigma 80 is outside what ffdnet was trained for (sigma 0-55" in \
        res.stderr.decode()
    res = tvcli_proc("run", "ffdnet", photos / "b.png", "-o", tmp_path / "p.png", "--sigma", "30")
    assert res.returncode == 0 and b"warning" not in res.stderr


def test_symlink_loop_is_named(tmp_path):
    os.symlink("loop.png", tmp_path / "loop.png")
    os.symlink("nowhere.png", tmp_path / "dangling.png")
    res = tvcli_proc("smooth", "loop.png", "dangling.png", "--mode", "rows", cwd=tmp_path)
    err = res.stderr.decode()
    assert res.returncode == 1
    assert "loop.png: symbolic link loop" in err and "dangling.png: broken symbolic link" in err


@pytest.mark.skipif(not HAS_2D, reason="needs prox_tv2d")
def test_text_mode_says_when_max_iter_stopped_the_solve(photos, tmp_path):
    res = invoke("smooth", photos / "a.png", "-o", tmp_path / "o.png", "--max-iter", "1",
                 "--tol", "1e-9")
    assert res.exit_code == 0 and "stopped by --max-iter before --tol" in res.stdout
    res = invoke("smooth", photos / "a.png", "-o", tmp_path / "p.png", "--tol", "1e-2")
    assert res.exit_code == 0 and "stopped by" not in res.stdout


def test_image_above_the_pixel_limit_is_one_line_and_the_batch_goes_on(photos, tmp_path):
    # a.png is 56x48 = 2688 pixels, b.png 60x40 = 2400
    res = tvcli_proc("smooth", photos, "-o", tmp_path / "out", "--mode", "rows",
                     env={"TVCLI_MAX_PIXELS": "2500"})
    err = res.stderr.decode().splitlines()
    assert res.returncode == 1 and (tmp_path / "out" / "b.png").is_file()
    assert "a.png" in err[0] and "decompression-bomb limit" in err[0]
    assert "corrupt" not in err[0] and "unknown error" not in err[0]


# ---------------------------------------------------------------- live status

def test_filter_image_reports_its_progress():
    img = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    seen: list[str] = []
    filter_image(img, FilterSettings(mode="rows", lam=0.1), status=seen.append)
    assert seen == ["rows, 3 channels"]
    if HAS_2D:
        import tvcli.cli.tvfilter as tvfilter

        seen.clear()
        old = tvfilter._BATCH_SAMPLES
        tvfilter._BATCH_SAMPLES = 10  # force the channel-at-a-time path of large images
        try:
            filter_image(img, FilterSettings(mode="2d", lam=0.1), status=seen.append)
        finally:
            tvfilter._BATCH_SAMPLES = old
        assert seen[0] == "2-D TV, channel 1/3" and seen[2].startswith("2-D TV, channel 3/3 (")


@pytest.mark.skipif(not HAS_2D, reason="needs prox_tv2d")
def test_single_image_shows_a_live_status_on_a_terminal(photos, tmp_path):
    code, out, err = run_with_terminal_stderr(
        ["smooth", str(photos / "a.png"), "-o", str(tmp_path / "o.png")], columns=120)
    assert code == 0 and "a.png: 2-D TV" in err, err
    assert len(out.decode().splitlines()) == 1


def test_smoothing_keeps_the_icc_profile_and_dpi(tmp_path):
    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = (np.asarray(Image.open(EXAMPLES / "coffee.png"))[:40, :60, :3])
    Image.fromarray(pixels).save(tmp_path / "in.jpg", icc_profile=icc, dpi=(240, 240))
    for out in ("o.jpg", "o.png", "o.tif"):
        res = invoke("smooth", tmp_path / "in.jpg", "-o", tmp_path / out, "--mode", "rows")
        assert res.exit_code == 0, res.output
        meta = io.read_image(tmp_path / out)[1]
        assert meta.icc_profile == icc and meta.dpi == pytest.approx((240, 240), abs=0.01)
