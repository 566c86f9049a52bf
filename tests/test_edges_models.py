"""DexiNed / DexiNed-TV, the edge training task and `tvcli run` for edge models.

Synthetic data only (a tiny BSDS-layout folder written here); no BSDS files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tvcli.cli import app
from tvcli.models import build_model

iio = pytest.importorskip("imageio.v3")


@pytest.mark.parametrize("name", ["dexined", "dexined-tv"])
def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    m = build_model(name, width=8)
    x = torch.rand(2, 3, 37, 50)
    out = m(x)
    assert len(out) == 7 and all(o.shape == (2, 1, 37, 50) for o in out)
    sum(o.square().mean() for o in out).backward()  # TV keeps the mean: use squares
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    if name == "dexined-tv":
        assert len(m.tv_sharp) == 4 and m.tv_sharp[0].lam_param.grad.abs() > 0
        assert m.tv_smooth.mode == "smooth" and m.tv_sharp[0].mode == "sharp"
    with pytest.raises(ValueError, match="expects"):
        m(torch.rand(1, 1, 16, 16))


def test_tv_arm_differs_only_by_tv_layers():
    """Same seed -> same conv weights; the TV layers change the output, and with
    lam = 0 (sharp and smooth: the identity) DexiNed-TV is DexiNed."""
    torch.manual_seed(0)
    a = build_model("dexined", width=8).eval()
    torch.manual_seed(0)
    b = build_model("dexined-tv", width=8).eval()
    b.load_state_dict(a.state_dict(), strict=False)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        ya, yb = a(x), b(x)
        assert not torch.allclose(ya[-1], yb[-1])
        for layer in [*b.tv_sharp, b.tv_smooth]:
            layer.lam_param.fill_(-60.0)  # softplus -> ~1e-26
        yb0 = b(x)
    for u, v in zip(ya, yb0, strict=True):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-5)


def test_balanced_bce_weights():
    from tvcli.learning.tasks.edges import balanced_bce

    logits = torch.zeros(1, 1, 2, 2)
    labels = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])
    # 1 positive, 2 negatives, 1 ignored: w+ = 2/3, w- = 1.1 * 1/3; BCE(0) = log 2
    want = (2 / 3 + 2 * 1.1 / 3) * np.log(2)
    assert float(balanced_bce(logits, labels)) == pytest.approx(want, rel=1e-6)


def test_consensus_label():
    from tvcli.data.bsds import consensus_label

    a = np.array([[1, 1, 0]], bool)
    b = np.array([[1, 0, 0]], bool)
    c = np.array([[0, 0, 0]], bool)
    np.testing.assert_array_equal(consensus_label([a, b, c]), [[1, -1, 0]])


def _fake_bsds(root: Path, n: int = 3) -> None:
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        (root / "groundTruth" / split).mkdir(parents=True)
        for i in range(n):
            img = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
            img[:, 28:] //= 3  # an edge at column 28
            iio.imwrite(root / "images" / split / f"{i}.jpg", img)
            gt = np.zeros((40, 56), np.uint8)
            gt[:, 28] = 1
            cell = np.empty((1, 2), dtype=object)
            for k in range(2):
                st = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
                st[0, 0]["Segmentation"] = np.ones((40, 56), np.uint16)
                st[0, 0]["Boundaries"] = gt
                cell[0, k] = st
            sio.savemat(root / "groundTruth" / split / f"{i}.mat", {"groundTruth": cell})


def test_edge_task_trains_and_resumes(tmp_path):
    import tvcli.learning.tasks.edges  # noqa: F401
    from tvcli.learning.train import TrainConfig, train

    _fake_bsds(tmp_path / "bsds")
    cfg = TrainConfig(model="dexined-tv", data=str(tmp_path / "bsds"), out=str(tmp_path / "run"),
                      steps=3, batch=2, patch=32, val_every=1, ckpt_every=1, val_crop=32,
                      task="edges", model_config={"width": 8},
                      task_config={"val_hold": 1, "scales": [1.0, 1.25]})
    meta = train(cfg, progress=False, stop_at=2)
    assert meta["step"] == 2
    meta = train(cfg, progress=False)
    assert meta["step"] == 3 and np.isfinite(meta["history"][-1]["val_loss"])


def _export_random(weights: Path, name: str) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = build_model(name, width=8)
    weights.mkdir(exist_ok=True)
    f = weights / f"{name}-test.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(f))
    man = weights / "manifest.json"
    entries = json.loads(man.read_text())["weights"] if man.exists() else []
    entries.append({"model": name, "file": f.name, "config": {"width": 8},
                    "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    man.write_text(json.dumps({"weights": entries}))


def test_cli_run_edges(tmp_path, monkeypatch):
    _export_random(tmp_path / "w", "dexined-tv")
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(tmp_path / "w"))
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(1)
    iio.imwrite(tmp_path / "in" / "a.jpg", (rng.random((30, 41, 3)) * 255).astype(np.uint8))
    iio.imwrite(tmp_path / "in" / "g.png", (rng.random((20, 24)) * 255).astype(np.uint8))
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    res = CliRunner().invoke(app, ["run", "dexined-tv", str(tmp_path / "in"), "-o",
                                   str(tmp_path / "out"), "--bits", "16", "--thin", "-q"])
    assert res.exit_code == 1 and "bad.png" in res.stderr and "Traceback" not in res.output
    a = iio.imread(tmp_path / "out" / "a.png")  # JPEG in, PNG out
    g = iio.imread(tmp_path / "out" / "g.png")
    assert a.shape == (30, 41) and a.dtype == np.uint16 and g.shape == (20, 24)
    # --thin: NMS output, the border rows faded to 0
    assert a[0].max() == 0 and a[:, 0].max() == 0
    res8 = CliRunner().invoke(app, ["run", "dexined-tv", str(tmp_path / "in" / "a.jpg"), "-o",
                                    str(tmp_path / "a8.png"), "-q"])
    assert res8.exit_code == 0, res8.output
    a8 = iio.imread(tmp_path / "a8.png")
    assert a8.dtype == np.uint8 and a8.shape == (30, 41)
    bad = CliRunner().invoke(app, ["run", "dncnn", str(tmp_path / "in"), "--thin"])
    assert bad.exit_code != 0 and "edge models" in str(bad.exception)


def test_models_lists_edge_weights(tmp_path, monkeypatch):
    """An exported edge entry (no sigma, no PSNR) in the manifest: `tvcli models`
    lists it and `tvcli run` finds it next to denoiser entries."""
    _export_random(tmp_path / "w", "dexined")
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    man["weights"][0].update(task="edges", sigma=None, steps=3, wall_s=60.0)
    (tmp_path / "w" / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(tmp_path / "w"))
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert "dexined-test.safetensors" in res.output


def test_shipped_edge_weights_find_a_straight_edge():
    """The shipped edge detectors load (sha256 checked) and put the edge of a
    two-tone image where it is."""
    from tvcli.models import list_weights, load_pretrained

    names = sorted({w["model"] for w in list_weights() if w.get("task") == "edges"})
    if not names:
        pytest.skip("no edge weights shipped")
    x = torch.full((1, 3, 64, 96), 0.2)
    x[..., 48:] = 0.8
    for name in names:
        model, _ = load_pretrained(name)
        e = model.edge_map(x)[0, 0]
        col = e[16:48].mean(0)
        assert 46 <= int(col.argmax()) <= 49, (name, int(col.argmax()))
