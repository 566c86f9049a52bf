"""Data-parallel ``tvcli train`` under ``torchrun`` with gloo on the CPU
(tvcli/learning/train/distributed.py): 2 ranks x batch B equal 1 rank x batch 2B, rank 0
alone exports, a checkpoint resumes on another world size, a bad sample on one
rank does not deadlock. Tiny model (depth 3, width 8), 16-pixel patches, a
few steps, synthetic images made here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tvcli
from tvcli.learning.train import distributed as D

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) \
    or shutil.which("torchrun")
needs_torchrun = pytest.mark.skipif(
    TORCHRUN is None or not torch.distributed.is_available()
    or not hasattr(tvcli, "prox_tv2d"), reason="needs torchrun, gloo and prox_tv2d")
TINY = ["--patch", "16", "--depth", "3", "--width", "8", "--val-every", "100",
        "--ckpt-every", "100", "-q", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A data folder as `tvcli data fetch` makes it: train/ and val/ PNGs + manifest."""
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:40]
    for split, n in (("train", 3), ("val", 1)):
        (root / split).mkdir()
        for i in range(n):
            img = np.stack([0.5 + 0.4 * np.sin(x / (3 + i + c) + y / (5 + c))
                            + 0.1 * rng.standard_normal(x.shape) for c in range(3)], -1)
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
                root / split / f"im{i}.png")
    (root / "manifest.json").write_text(json.dumps({"digest": "synthetic"}))
    return root


def torchrun(nproc: int, *args, cwd: Path, script: Path | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc -m tvcli train ...``"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "TVCLI_DIST_TIMEOUT": "60"}
    target = [str(script)] if script else ["-m", "tvcli"]
    return subprocess.run([TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", *target,
                           "train", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def model_tensors(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(run / "ckpt.safetensors")).items()
            if k.startswith("model.")}


def assert_close_models(a: Path, b: Path, tol: float = 1e-5) -> None:
    ta, tb = model_tensors(a), model_tensors(b)
    assert ta.keys() == tb.keys()  # unwrapped names, no "module." prefix
    assert not any(".module." in k or k.startswith("model.module.") for k in ta)
    for k in ta:
        torch.testing.assert_close(ta[k].double(), tb[k].double(), atol=tol, rtol=tol,
                                   msg=lambda m, k=k: f"{k}: {m}")


# ---------------------------------------------------------------------------
# in-process pieces


def test_sample_seeds_and_indexed_batch():
    seeds = {D.sample_seed(s, g) for s in range(3) for g in range(1000)}
    assert len(seeds) == 3000 and all(0 <= v < 2 ** 63 for v in seeds)

    def draw(gen):
        return torch.rand(1, 2, generator=gen), None

    whole = D.indexed_batch(draw, 7, 10, 6)
    halves = [D.indexed_batch(draw, 7, 10 + 3 * r, 3) for r in range(2)]
    assert whole[1] is None and whole[0].shape == (6, 2)
    torch.testing.assert_close(torch.cat([h[0] for h in halves]), whole[0], atol=0, rtol=0)


def test_not_launched_is_inert(monkeypatch):
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    env, dev = D.init("cpu")
    assert not env.active and env.is_main and dev == "cpu"
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    assert D.wrap_model(D.prepare_model(model, env, dev), env, dev) is model
    assert D.all_ok(False, env, dev) is False and D.is_main_process()


def test_sync_batchnorm_converts_keeping_state():
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    m[1].running_mean += 3
    before = {k: v.clone() for k, v in m.state_dict().items()}
    D.convert_sync_batchnorm(m, cuda=False)
    assert isinstance(m[1], D.SyncBatchNorm2d)
    assert m.state_dict().keys() == before.keys()
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, before[k])
    # Without a process group it is a plain BatchNorm2d.
    x = torch.randn(4, 1, 6, 6)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ref.load_state_dict(before)
    torch.testing.assert_close(m(x), ref(x))


# ---------------------------------------------------------------------------
# torchrun


@needs_torchrun
def test_two_ranks_equal_one_rank_with_double_batch_and_resume_any_world(data, tmp_path):
    # dncnn-tv: a TV layer with a learned lam on each side of a DnCNN with BatchNorm.
    common = ["dncnn-tv", "--data", data, *TINY]
    r2 = torchrun(2, *common, "--out", "two", "--steps", "3", "--batch", "2",
                  "--export", "w", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr[-3000:]
    r1 = torchrun(1, *common, "--out", "one", "--steps", "3", "--batch", "4", cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr[-3000:]
    # Same data order, same averaged gradient: equal up to float rounding
    # (the synchronised batch norm sums in another order than BatchNorm2d).
    assert_close_models(tmp_path / "two", tmp_path / "one")
    ta = model_tensors(tmp_path / "two")
    lam_keys = [k for k in ta if k.endswith("lam_param")]
    assert len(lam_keys) == 2
    from tvcli.models.registry import build_model

    fresh = build_model("dncnn-tv", depth=3, width=8).state_dict()
    for k in lam_keys:  # lam is trained (and averaged over ranks) like any weight
        assert not torch.allclose(ta[k], fresh[k[len("model."):]], atol=1e-4)
    # Rank 0 alone reports and exports: one JSON line, one file, one manifest entry.
    assert r2.stdout.count('"step": 3') == 1 and r2.stdout.count("wrote ") == 1
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == \
        ["dncnn-tv-s25.safetensors", "manifest.json"]
    assert len(json.loads((tmp_path / "w" / "manifest.json").read_text())["weights"]) == 1
    meta = json.loads((tmp_path / "two" / "ckpt.json").read_text())
    assert meta["samples"] == 12 and meta["skipped_steps"] == 0
    # Resume each run on the other world size: the same stream continues.
    r = torchrun(1, *common, "--out", "two", "--steps", "5", "--batch", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = torchrun(2, *common, "--out", "one", "--steps", "5", "--batch", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_close_models(tmp_path / "two", tmp_path / "one")
    assert json.loads((tmp_path / "one" / "ckpt.json").read_text())["samples"] == 20


@needs_torchrun
def test_bad_sample_on_one_rank_does_not_deadlock(data, tmp_path):
    """Rank 1 fails to draw its batch at the second step: every rank skips that
    step together and training goes on (no rank waits in an all-reduce)."""
    script = tmp_path / "faulty.py"
    script.write_text(
        "import os, sys\n"
        "from tvcli.learning.train import loop as T\n"
        "real = T._indexed_sample\n"
        "calls = []\n"
        "def faulty(task, train_set, cfg, device, start):\n"
        "    calls.append(start)\n"
        "    if os.environ['RANK'] == '1' and len(calls) == 2:\n"
        "        raise OSError('unreadable sample (injected)')\n"
        "    return real(task, train_set, cfg, device, start)\n"
        "T._indexed_sample = faulty\n"
        "from tvcli.cli import main\n"
        "main(sys.argv[1:])\n")
    r = torchrun(2, "dncnn", "--data", data, *TINY, "--out", "run", "--steps", "3",
                 "--batch", "2", cwd=tmp_path, script=script, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "injected" in r.stdout + r.stderr and "skips step 2" in r.stdout + r.stderr
    meta = json.loads((tmp_path / "run" / "ckpt.json").read_text())
    assert meta["step"] == 3 and meta["skipped_steps"] == 1
    assert meta["samples"] == 4 * 4  # 3 steps + 1 skipped, 2 ranks x 2 samples each
