"""`tvcli eval`: folder pairing, mismatches, multi-ground-truth sets, JSON / CSV output."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tvcli.cli import app
from tvcli.cli._app import CLIError

iio = pytest.importorskip("imageio.v3")
ROOT = Path(__file__).resolve().parents[1]


def _noisy(rng: np.random.Generator, shape=(24, 30, 3)) -> tuple[np.ndarray, np.ndarray]:
    gt = (rng.random(shape) * 255).astype(np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-12, 13, shape), 0, 255).astype(np.uint8)
    return pred, gt


def _psnr8(pred: np.ndarray, gt: np.ndarray) -> float:
    mse = np.mean(((pred.astype(float) - gt.astype(float)) / 255) ** 2)
    return 10 * math.log10(1 / mse)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, dict]:
    """pred/ and gt/ with: two good pairs (one in a subfolder), a size mismatch,
    a prediction without ground truth, a ground truth without prediction, and a
    multi-ground-truth set with votes."""
    rng = np.random.default_rng(0)
    p, g = tmp_path / "pred", tmp_path / "gt"
    (p / "sub").mkdir(parents=True)
    (g / "sub").mkdir(parents=True)
    want = {}
    for name in ("a", "sub/b"):
        x, y = _noisy(rng)
        iio.imwrite(p / f"{name}.png", x)
        iio.imwrite(g / f"{name}.png", y)
        want[name] = _psnr8(x, y)
    iio.imwrite(p / "big.png", _noisy(rng, (20, 30, 3))[0])
    iio.imwrite(g / "big.png", _noisy(rng, (21, 30, 3))[1])
    iio.imwrite(p / "lonely.png", _noisy(rng)[0])
    iio.imwrite(g / "orphan.png", _noisy(rng)[1])
    x, y0 = _noisy(rng)
    y1 = 255 - y0
    iio.imwrite(p / "multi.png", x)
    (g / "multi").mkdir()
    iio.imwrite(g / "multi" / "gt0.png", y0)
    iio.imwrite(g / "multi" / "gt1.png", y1)
    (g / "multi" / "weights.json").write_text(json.dumps({"gt0.png": 3, "gt1.png": 1}))
    want["multi"] = 0.75 * _psnr8(x, y0) + 0.25 * _psnr8(x, y1)
    d0 = ((x.astype(float) - y0) ** 2).mean()
    d1 = ((x.astype(float) - y1) ** 2).mean()
    want["multi_wrmse"] = math.sqrt(0.75 * d0 + 0.25 * d1)  # 8-bit levels
    return p, g, want


def test_eval_folders_json(folders):
    p, g, want = folders
    res = CliRunner().invoke(app, ["eval", str(p), str(g), "-m", "psnr,ssim,wrmse,wmae",
                                   "--json"])
    assert res.exit_code == 1  # some entries failed, the rest evaluated
    out = json.loads(res.stdout)
    names = [r["name"] for r in out["images"]]
    assert names == ["a", "multi", "sub/b"]
    got = {r["name"]: r for r in out["images"]}
    for n in ("a", "sub/b", "multi"):
        assert got[n]["psnr"] == pytest.approx(want[n], abs=1e-3)
    assert got["multi"]["wrmse"] == pytest.approx(want["multi_wrmse"], rel=1e-4)
    assert out["summary"]["psnr"] == pytest.approx(np.mean([want[n] for n in names]), abs=1e-3)
    errs = {e["name"]: e["error"] for e in out["errors"]}
    assert set(errs) == {"big", "lonely", "orphan"}
    assert "size mismatch" in errs["big"]
    assert "no ground truth" in errs["lonely"]
    assert "has no prediction" in errs["orphan"]
    # One line per problem on stderr, never a traceback.
    assert "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("tvcli: error:")]) == 3


def test_eval_wrmse_pools_pixels_over_images_of_different_sizes(tmp_path):
    """Data-set WRMSE / WMAE as Zhu et al.'s script: sums over all pixels of all
    images (each ground truth weighted) / all pixels, not a mean over images."""
    rng = np.random.default_rng(3)
    p, g = tmp_path / "pred", tmp_path / "gt"
    p.mkdir()
    sq = ab = 0.0
    npix = 0
    for name, shape, votes in (("small", (6, 8, 3), (1, 1)), ("large", (40, 50, 3), (3, 1))):
        x = (rng.random(shape) * 255).astype(np.uint8)
        ys = [np.clip(x.astype(int) + rng.integers(-s, s + 1, shape), 0, 255).astype(np.uint8)
              for s in ((60, 5) if name == "small" else (2, 9))]
        iio.imwrite(p / f"{name}.png", x)
        (g / name).mkdir(parents=True)
        table = {}
        for k, (y, v) in enumerate(zip(ys, votes, strict=True)):
            iio.imwrite(g / name / f"f{k}.png", y)
            table[f"f{k}.png"] = v
            d = x.astype(float) - y
            sq += v / sum(votes) * np.sum(d * d)
            ab += v / sum(votes) * np.sum(np.abs(d))
        (g / name / "weights.json").write_text(json.dumps(table))
        npix += x.size
    res = CliRunner().invoke(app, ["eval", str(p), str(g), "-m", "wrmse,wmae", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["summary"]["wrmse"] == pytest.approx(math.sqrt(sq / npix), rel=1e-5)
    assert out["summary"]["wmae"] == pytest.approx(ab / npix, rel=1e-5)


def test_eval_csv_and_clean_exit(tmp_path):
    rng = np.random.default_rng(1)
    x, y = _noisy(rng)
    iio.imwrite(tmp_path / "p.png", x)
    iio.imwrite(tmp_path / "g.png", y)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "p.png"), str(tmp_path / "g.png"),
                                   "--csv", "-m", "psnr"])
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0] == ["name", "psnr"]
    assert rows[1][0] == "p.png" and float(rows[1][1]) == pytest.approx(_psnr8(x, y), abs=1e-3)
    assert rows[2][0] == "mean"


def test_eval_rich_table(folders):
    p, g, _ = folders
    res = CliRunner().invoke(app, ["eval", str(p), str(g)])
    assert res.exit_code == 1
    assert "sub/b" in res.stdout and "mean" in res.stdout and "ssim" in res.stdout


@pytest.mark.parametrize("args, msg", [
    (["-m", "psnr,bogus"], "unknown metric 'bogus'"),
    (["--json", "--csv"], "exclusive"),
    (["--data-range", "0"], "--data-range"),
])
def test_eval_usage_errors(folders, args, msg):
    p, g, _ = folders
    res = CliRunner().invoke(app, ["eval", str(p), str(g), *args])
    # main() turns a CLIError into one line and its code; here we see the exception.
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert msg in str(res.exception)


def test_eval_subprocess_json_and_errors(folders, tmp_path):
    """The real console entry point: JSON on stdout parses, errors are single lines."""
    p, g, _ = folders
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", "from tvcli.cli import main; main()"]
    r = subprocess.run([*cmd, "eval", str(p), str(g), "--json"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["n_images"] == 3 and len(out["errors"]) == 3
    r = subprocess.run([*cmd, "eval", str(tmp_path / "nope"), str(g)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
    assert "Traceback" not in r.stderr
    # A folder PRED against a file GT is a usage error.
    r = subprocess.run([*cmd, "eval", str(p), str(g / "sub" / "b.png")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 2 and "give two folders" in r.stderr


def test_eval_bad_weights_json(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "p").mkdir()
    (tmp_path / "g" / "x").mkdir(parents=True)
    x, y = _noisy(rng)
    iio.imwrite(tmp_path / "p" / "x.png", x)
    iio.imwrite(tmp_path / "g" / "x" / "a.png", y)
    (tmp_path / "g" / "x" / "weights.json").write_text('{"a.png": 1, "missing.png": 2}')
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "p"), str(tmp_path / "g"), "--json"])
    assert res.exit_code == 1
    assert "missing.png" in res.stderr


def test_eval_edges(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "p").mkdir()
    (tmp_path / "g" / "e1").mkdir(parents=True)
    gt = np.zeros((40, 50), np.uint8)
    gt[20, 5:45] = 255
    gt[5:35, 25] = 255
    soft = np.clip(gt / 255 * rng.uniform(0.5, 1, gt.shape) + 0.2 * rng.random(gt.shape), 0, 1)
    iio.imwrite(tmp_path / "p" / "e1.png", (soft * 255).astype(np.uint8))
    iio.imwrite(tmp_path / "g" / "e1" / "h0.png", gt)
    iio.imwrite(tmp_path / "g" / "e1" / "h1.png", gt)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "p"), str(tmp_path / "g"), "-m",
                                   "edges", "--thresholds", "9", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    s = out["summary"]
    assert 0.8 < s["ods"] <= 1 and 0.8 < s["ois"] <= 1 and 0 < s["ap"] <= 1
    assert out["images"][0]["ois"] == pytest.approx(s["ois"])  # one image: OIS = its best F


def _bsds_mat(path: Path, boundaries: list[np.ndarray]) -> None:
    """A BSDS-layout ground truth: a 1 x K cell 'groundTruth' of structs."""
    sio = pytest.importorskip("scipy.io")
    cell = np.empty((1, len(boundaries)), dtype=object)
    for k, b in enumerate(boundaries):
        st = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
        st[0, 0]["Segmentation"] = np.ones(b.shape, np.uint16)
        st[0, 0]["Boundaries"] = b.astype(np.uint8)
        cell[0, k] = st
    sio.savemat(path, {"groundTruth": cell})


def test_eval_edges_bsds_mat_nms_and_jobs(tmp_path):
    """.mat ground truths (K annotators each), --nms for dense maps, --jobs 2 gives
    the same numbers as one process; a bad .mat is one error line."""
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    for i, col in enumerate((20, 30, 40)):
        gt = np.zeros((48, 64), bool)
        gt[:, col] = True
        half = gt.copy()
        half[24:] = False
        _bsds_mat(tmp_path / "g" / f"im{i}.mat", [gt, half])
        dense = np.exp(-0.5 * ((xx - col) / 2.0) ** 2)  # a blurred ridge, 5 px wide
        iio.imwrite(tmp_path / "p" / f"im{i}.png", (dense * 255).astype(np.uint8))
    base = ["eval", str(tmp_path / "p"), str(tmp_path / "g"), "-m", "ods,ois,ap", "--json"]
    raw = CliRunner().invoke(app, base)
    thin = CliRunner().invoke(app, [*base, "--nms"])
    par = CliRunner().invoke(app, [*base, "--nms", "--jobs", "2"])
    for r in (raw, thin, par):
        assert r.exit_code == 0, r.output
    s_raw, s_nms = json.loads(raw.stdout)["summary"], json.loads(thin.stdout)["summary"]
    # 72 ground-truth pixels per image, the NMS'd ridge matches all but the
    # border rows that NMS fades to 0
    assert s_nms["ods"] > 0.95 and s_raw["ods"] > 0.5
    assert json.loads(par.stdout)["summary"] == s_nms
    (tmp_path / "g" / "im0.mat").write_bytes(b"not a mat file")
    bad = CliRunner().invoke(app, base)
    assert bad.exit_code == 1 and "im0" in bad.stderr and "Traceback" not in bad.output
    assert len([ln for ln in bad.stderr.splitlines() if ln.strip()]) == 1


def test_eval_identical_images_strict_json(tmp_path):
    """Infinite PSNR is null in --json (strict JSON, parseable by jq), inf in CSV."""
    rng = np.random.default_rng(4)
    x, _ = _noisy(rng)
    iio.imwrite(tmp_path / "p.png", x)
    iio.imwrite(tmp_path / "g.png", x)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "p.png"), str(tmp_path / "g.png"),
                                   "--json"])
    assert res.exit_code == 0
    assert "Infinity" not in res.stdout and "NaN" not in res.stdout
    out = json.loads(res.stdout)
    assert out["images"][0]["psnr"] is None and out["images"][0]["ssim"] == pytest.approx(1)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "p.png"), str(tmp_path / "g.png"),
                                   "--csv", "-m", "psnr"])
    assert res.stdout.splitlines()[1] == "p.png,inf"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA present")
def test_eval_unavailable_device(folders):
    p, g, _ = folders
    res = CliRunner().invoke(app, ["eval", str(p), str(g), "--device", "cuda"])
    assert isinstance(res.exception, CLIError) and res.exception.code == 2
    assert "--device cuda: not available" in str(res.exception)
