"""Edge-preserving smoothing: the ResNet / ResNet-TV models, the substitute
benchmark's generator (OpenCV contrib, optional), its multi-ground-truth
evaluation, the training task and ``tvcli run eps-tv``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tvcli.models import EpsResNet, EpsResNetTV, build_model
from tvcli.models.inference import denoise
from tvcli.nn import TVLayer
from tvcli.prox2d import prox_tv2d

ROOT = Path(__file__).resolve().parents[1]
BSDS = ROOT.parent / "shared" / "data" / "bsds500"


def _has_ximgproc() -> bool:
    try:
        import cv2  # type: ignore
    except ImportError:
        return False
    return hasattr(cv2, "ximgproc")


needs_cv2 = pytest.mark.skipif(not _has_ximgproc(),
                               reason="needs opencv-contrib (pip install 'tvcli[eps-data]')")


# ------------------------------------------------------------------ models


def test_resnet_structure_and_identity_at_init():
    m = EpsResNet(blocks=16, width=8)
    assert len(m.blocks) == 16
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 16 + 3  # head, 16 blocks of two, three at the tail
    x = torch.rand(2, 3, 13, 17)
    assert torch.equal(m(x), x)  # skip from the input; the last conv starts at zero


def test_resnet_tv_layers_and_output_prox():
    m = EpsResNetTV(blocks=16, width=8, lam_out=0.03)
    tvs = [(i, b.tv) for i, b in enumerate(m.blocks) if b.tv is not None]
    assert [i for i, _ in tvs] == [3, 7, 11, 15]
    assert [t.direction for _, t in tvs] == ["row", "col", "row", "col"]
    assert all(t.mode == "sharp" and not t.shared_lam for _, t in tvs)
    assert isinstance(m.tv_out, TVLayer) and m.tv_out.shared_lam and m.tv_out.mode == "smooth"
    assert m.tv_out.lam.shape == (1,)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        want = prox_tv2d(x, torch.tensor(0.03).reshape(1, 1, 1), iters=4)
        assert torch.allclose(m(x), want, atol=1e-6)  # identity network, then TV2D-smooth
    # gradients reach every lam
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.normal_(mod.weight, std=0.05)
    m(torch.rand(1, 3, 16, 16)).square().mean().backward()
    for _, t in tvs:
        assert t.lam_param.grad is not None and torch.isfinite(t.lam_param.grad).all()
    assert float(m.tv_out.lam_param.grad.abs()) > 0


def test_registry_builds_eps_models():
    assert isinstance(build_model("eps", width=4, blocks=2), EpsResNet)
    m = build_model("eps-tv", width=4)
    assert isinstance(m, EpsResNetTV) and m.config["blocks"] == 16


def test_eps_resnet_tiles_exactly():
    m = EpsResNet(blocks=4, width=4).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.normal_(mod.weight, std=0.2)
    img = torch.rand(3, 90, 70)
    full = denoise(m, img, tile=None)
    radius = 2 * 4 + 4
    assert float((denoise(m, img, tile=48, overlap=2 * radius) - full).abs().max()) < 1e-5
    assert float((denoise(m, img, tile=48, overlap=2) - full).abs().max()) > 1e-4


# ------------------------------------------------------------------ data


def _fake_bsds(root: Path, n: dict[str, int]) -> Path:
    """A BSDS500-shaped folder of synthetic JPEGs (never real BSDS data)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, k in n.items():
        (root / "images" / split).mkdir(parents=True)
        for i in range(k):
            yy, xx = np.mgrid[0:24, 0:32]
            base = np.where(xx + yy > 25, 200, 40)[..., None] + rng.normal(0, 12, (24, 32, 3))
            Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(
                root / "images" / split / f"{i:03d}.jpg", quality=95)
    return root


@needs_cv2
def test_filters_are_deterministic_uint8_and_leave_input_alone():
    from tvcli.data.eps import FILTERS, apply_filter

    rng = np.random.default_rng(1)
    img = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    keep = img.copy()
    names = [f.name for f in FILTERS]
    assert len(names) >= 4 and {"l0", "fgs", "rgf", "wmf"} <= set(names)
    assert any(not f.tv_like for f in FILTERS)
    for f in FILTERS:
        a = apply_filter(f, img)
        b = apply_filter(f, img)
        assert a.dtype == np.uint8 and a.shape == img.shape
        assert np.array_equal(a, b), f.name  # wmf: seeded before each call
        assert np.array_equal(img, keep), f.name
        assert not np.array_equal(a, img), f.name  # it does smooth


@needs_cv2
def test_build_eps_layout_manifest_and_resume(tmp_path):
    from typer.testing import CliRunner

    from tvcli.cli import app
    from tvcli.data.eps import FILTERS

    src = _fake_bsds(tmp_path / "bsds", {"train": 2, "val": 1, "test": 2})
    out = tmp_path / "eps"
    res = CliRunner().invoke(app, ["data", "eps", str(out), "--bsds500", str(src), "-q"])
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    assert "SUBSTITUTE" in man["benchmark"] and len(man["images"]) == 5
    assert set(man["filters"]) == {f.name for f in FILTERS}
    for split, k in (("train", 2), ("val", 1), ("test", 2)):
        assert len(list((out / split / "input").glob("*.png"))) == k
        for stem in (p.stem for p in (out / split / "input").glob("*.png")):
            assert sorted(p.stem for p in (out / split / "gt" / stem).glob("*.png")) == \
                sorted(f.name for f in FILTERS)
    # resume: a deleted ground truth is regenerated identically, the digest unchanged
    victim = out / "test" / "gt" / "001" / "wmf.png"
    before = victim.read_bytes()
    victim.unlink()
    res = CliRunner().invoke(app, ["data", "eps", str(out), "--bsds500", str(src), "-q"])
    assert res.exit_code == 0 and victim.read_bytes() == before
    assert json.loads((out / "manifest.json").read_text())["digest"] == man["digest"]
    # the layout is tvcli eval's multi-ground-truth layout
    res = CliRunner().invoke(app, ["eval", str(out / "test" / "input"), str(out / "test" / "gt"),
                                   "-m", "wrmse,wmae", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["n_images"] == 2 and len(got["images"][0]["gt"]) == len(FILTERS)
    assert 0 < got["summary"]["wmae"] <= got["summary"]["wrmse"]
    bad = CliRunner().invoke(app, ["data", "eps", str(out), "--bsds500", str(tmp_path)])
    assert bad.exit_code != 0 and "not a BSDS500 folder" in str(bad.exception) + bad.output


@needs_cv2
@pytest.mark.skipif(not (BSDS / "images" / "test").is_dir(), reason="needs ../shared/data")
def test_build_eps_on_one_bsds_photo(tmp_path):
    from tvcli.data.eps import build_eps

    man = build_eps(tmp_path / "eps", BSDS, {"train": 0, "val": 0, "test": 1}, log=lambda m: None)
    (rec,) = man["images"]
    assert rec["split"] == "test" and len(rec["gt_sha256"]) == len(man["filters"])


# ------------------------------------------------------------------ training, run


def _tiny_eps(root: Path) -> Path:
    """An EPS data folder of synthetic images with two synthetic ground truths
    (no OpenCV needed): the layout and manifest of ``tvcli data eps``."""
    from PIL import Image

    from tvcli.data.eps import manifest_digest

    rng = np.random.default_rng(0)
    recs = []
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for i in range(n):
            x = (rng.random((20, 22, 3)) * 255).astype(np.uint8)
            (root / split / "input").mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(root / split / "input" / f"{i}.png")
            (root / split / "gt" / str(i)).mkdir(parents=True)
            for f in ("l0", "fgs", "rgf", "wmf", "dt"):
                g = np.full_like(x, 128) if f == "l0" else x // 2
                Image.fromarray(g).save(root / split / "gt" / str(i) / f"{f}.png")
            recs.append({"split": split, "stem": str(i)})
    (root / "manifest.json").write_text(json.dumps({"images": recs,
                                                    "digest": manifest_digest(recs)}))
    return root


def test_eps_task_loss_is_uniform_mean_of_per_gt_mse():
    from tvcli.learning.train import TrainConfig, get_task

    task = get_task(TrainConfig(model="eps", data="-", out="-", task="eps"))
    pred = torch.rand(2, 3, 5, 6)
    gts = torch.rand(2, 4, 3, 5, 6)
    want = sum(float(((pred - gts[:, k]) ** 2).mean()) for k in range(4)) / 4
    assert float(task.loss(pred, gts.flatten(1, 2), None)) == pytest.approx(want, rel=1e-6)


def test_eps_training_resume_export_and_cli_run(tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from tvcli.cli import app
    from tvcli.learning.train import TrainConfig, export_weights, train

    data = _tiny_eps(tmp_path / "data")
    kw = dict(model="eps-tv", data=str(data), steps=4, batch=2, patch=12, val_every=2,
              ckpt_every=1, val_crop=16, task="eps", model_config={"width": 4, "blocks": 4})
    whole = train(TrainConfig(out=str(tmp_path / "a"), **kw), progress=False, log=lambda m: 0)
    train(TrainConfig(out=str(tmp_path / "b"), **kw), progress=False, log=lambda m: 0,
          stop_at=3)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **kw), progress=False,
                    log=lambda m: 0)
    assert resumed["history"][-1]["val_wrmse"] == pytest.approx(
        whole["history"][-1]["val_wrmse"], rel=1e-5)
    assert whole["data_digest"] is not None
    entry = export_weights(tmp_path / "a", tmp_path / "weights")
    assert entry["file"] == "eps-tv-eps.safetensors" and entry["task"] == "eps"
    assert entry["steps"] == 4 and entry["val_wrmse"] > 0
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(tmp_path / "weights"))
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((30, 26, 3)) * 255).astype(np.uint8)).save(src / "a.png")
    Image.fromarray((rng.random((30, 26)) * 255).astype(np.uint8)).save(src / "g.png")
    (src / "bad.png").write_bytes(b"not a png")
    res = CliRunner().invoke(app, ["run", "eps-tv", str(src), "-o", str(tmp_path / "out"),
                                   "--json", "--tile", "16"])
    assert res.exit_code == 1  # the bad file fails, the others are written
    recs = {Path(r["input"]).name: r for r in
            (json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{"))}
    assert {k: r["status"] for k, r in recs.items()} == {"a.png": "ok", "g.png": "ok",
                                                         "bad.png": "error"}
    assert recs["a.png"]["model"] == "eps-tv" and recs["a.png"]["trained_sigma"] is None
    assert np.asarray(Image.open(tmp_path / "out" / "g.png")).shape == (30, 26)
    listing = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "eps-tv-eps.safetensors" in listing.stdout
    bad = CliRunner().invoke(app, ["train", "eps", "--data", str(data), "--depth", "5"])
    assert "do not apply" in str(bad.exception) + bad.output
