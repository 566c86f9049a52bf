"""Denoiser models, tiled inference, weights registry and training smoke tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tvcli.models import DnCNN, WeightsError, build_model, list_weights, load_pretrained
from tvcli.models.ffdnet import FFDNet, FFDNetTV
from tvcli.models.inference import denoise, tile_starts


def _random_dncnn(width=8) -> DnCNN:
    m = DnCNN(depth=17, width=width).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    return m


def test_dncnn_starts_as_identity_and_keeps_shape():
    m = DnCNN(depth=5, width=8)
    x = torch.rand(2, 3, 17, 23)
    assert torch.equal(m(x), x)


@pytest.mark.parametrize("size,tile,overlap", [(300, 64, 36), (277, 100, 40), (64, 64, 10)])
def test_tile_starts_cover(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, size) == size
    for a, b in itertools.pairwise(starts):
        assert b - a <= tile - overlap


def test_tiled_equals_untiled_for_a_local_network():
    m = _random_dncnn()
    img = torch.rand(3, 150, 131)
    full = denoise(m, img, tile=None)
    tiled = denoise(m, img, tile=64, overlap=36)  # >= 2 x receptive radius 17
    assert float((tiled - full).abs().max()) < 1e-5
    narrow = denoise(m, img, tile=64, overlap=4)  # too little overlap: seams differ
    assert float((narrow - full).abs().max()) > 1e-4


def test_registry_rejects_unknown_and_corrupt(tmp_path):
    with pytest.raises(WeightsError, match="unknown model"):
        build_model("nope")
    with pytest.raises(WeightsError, match="no shipped weights"):
        load_pretrained("dncnn", 25, weights_dir=tmp_path)
    from safetensors.torch import save_file

    m = DnCNN(depth=3, width=4)
    save_file(dict(m.state_dict()), str(tmp_path / "w.safetensors"))
    entry = {"model": "dncnn", "file": "w.safetensors", "sigma": 25, "sha256": "0" * 64,
             "config": {"depth": 3, "width": 4}}
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    with pytest.raises(WeightsError, match="corrupt"):
        load_pretrained("dncnn", 25, weights_dir=tmp_path)
    import hashlib

    entry["sha256"] = hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    loaded, e = load_pretrained("dncnn", 30, weights_dir=tmp_path)
    assert e["sigma"] == 25 and not loaded.training


def test_shipped_weights_load_and_denoise():
    weights = [w for w in list_weights() if w.get("task", "denoise") == "denoise"]
    if not weights:
        pytest.skip("no weights shipped yet")
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 48, 48, generator=gen).cumsum(1) / 48  # smooth ramps
    for w in weights:
        if w.get("task") == "edges":  # edge detectors: tests/test_edges_models.py
            continue
        sigma = w["sigma"] if w["sigma"] is not None else w["val_sigma"]
        model, entry = load_pretrained(w["model"], sigma)
        assert entry["file"] == w["file"] or w["sigma"] is None
        noisy = clean + sigma / 255 * torch.randn(clean.shape, generator=gen)
        out = denoise(model, noisy, tile=None, sigma=sigma / 255).clamp(0, 1)
        err_in = float((noisy - clean).pow(2).mean())
        err_out = float((out - clean).pow(2).mean())
        assert err_out < err_in, f"{w['file']} does not denoise"


def _random_ffdnet(tv: bool = False) -> torch.nn.Module:
    m = (FFDNetTV if tv else FFDNet)(depth=5, width=8).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    return m


@pytest.mark.parametrize("shape", [(2, 3, 16, 20), (1, 3, 9, 11), (1, 1, 7, 4), (1, 3, 1, 6)])
def test_ffdnet_identity_at_init_any_size_and_needs_sigma(shape):
    x = torch.rand(shape)
    m = FFDNet(channels=shape[1], depth=4, width=8)
    assert torch.equal(m(x, 0.1), x)
    with pytest.raises(ValueError, match="noise level"):
        m(x)
    r = _random_ffdnet()
    if shape[1] == 3 and shape[2] > 1:
        y = r(x, 0.1)
        assert y.shape == x.shape and torch.isfinite(y).all()
        # the noise map is an input: another sigma, another output; per-sample sigma works
        assert not torch.equal(y, r(x, 0.3))
        per = r(x, torch.full((shape[0],), 0.1))
        torch.testing.assert_close(per, y)


def test_ffdnet_tiles_keep_pixel_groups():
    m = _random_ffdnet()
    img = torch.rand(3, 97, 83)  # odd sizes: the last tiles start at odd offsets otherwise
    full = denoise(m, img, tile=None, sigma=0.1)
    tiled = denoise(m, img, tile=40, overlap=30, sigma=0.1)  # radius 2 * 4 + 1
    assert float((tiled - full).abs().max()) < 1e-5
    assert all(s % 2 == 0 for s in tile_starts(97, 40, 30, 2))


def test_ffdnet_tv_is_eq14_around_ffdnet():
    m = _random_ffdnet(tv=True)
    x = torch.rand(1, 3, 12, 14)
    xt = m.tv_in(x)
    torch.testing.assert_close(m(x, 0.2), m.tv_out(xt - m.net.residual(xt, 0.2)))
    assert m.config["iters"] == 4 and m.takes_sigma


def test_blind_weights_are_found_for_any_sigma_in_range(tmp_path):
    from tvcli.models.registry import find_weights

    entries = [{"model": "ffdnet-tv", "file": "b.safetensors", "sigma": None,
                "sigma_range": [0, 55]},
               {"model": "dncnn", "file": "d25.safetensors", "sigma": 25},
               {"model": "dncnn", "file": "d50.safetensors", "sigma": 50}]
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": entries}))
    for s in (0, 15, 55, None):
        assert find_weights("ffdnet-tv", s, tmp_path)["file"] == "b.safetensors"
    assert find_weights("dncnn", 40, tmp_path)["file"] == "d50.safetensors"
    assert find_weights("dncnn", None, tmp_path)["file"] == "d25.safetensors"


def _tiny_dataset(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            arr = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / split / f"img{i}.png")
    files = sorted(p for p in root.rglob("*.png"))
    from tvcli.data.recipe import manifest_digest

    man = {"images": [{"file": str(p.relative_to(root)), "sha256": "x"} for p in files]}
    man["digest"] = manifest_digest(man)
    (root / "manifest.json").write_text(json.dumps(man))
    return root


def test_training_smoke_resume_and_export(tmp_path):
    from tvcli.learning.train import TrainConfig, export_weights, train

    data = _tiny_dataset(tmp_path / "data")
    cfg = TrainConfig(model="dncnn", data=str(data), out=str(tmp_path / "run"), steps=4,
                      batch=2, patch=16, val_every=2, ckpt_every=2, val_crop=32,
                      model_config={"depth": 3, "width": 4})
    meta = train(cfg, progress=False, log=lambda m: None)
    assert meta["step"] == 4 and len(meta["history"]) == 2
    # an interrupted run resumes where it stopped and ends where a straight run ends
    cfg2 = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "run2")})
    assert train(cfg2, progress=False, log=lambda m: None, stop_at=3)["step"] == 3
    meta2 = train(cfg2, progress=False, log=lambda m: None)
    assert meta2["step"] == 4
    assert meta2["history"][-1]["loss"] == meta["history"][-1]["loss"]
    entry = export_weights(tmp_path / "run", tmp_path / "weights")
    model, e = load_pretrained("dncnn", 25, weights_dir=tmp_path / "weights")
    assert e["steps"] == 4 and e["sha256"] == entry["sha256"]


def test_blind_range_training_smoke_and_export(tmp_path):
    from tvcli.learning.train import TrainConfig, export_weights, train

    data = _tiny_dataset(tmp_path / "data")
    cfg = TrainConfig(model="ffdnet-tv", data=str(data), out=str(tmp_path / "run"), steps=2,
                      batch=2, patch=16, val_every=2, ckpt_every=2, val_crop=32,
                      sigma_range=[0.0, 55.0], model_config={"depth": 3, "width": 4})
    meta = train(cfg, progress=False, log=lambda m: None)
    assert meta["step"] == 2 and np.isfinite(meta["history"][-1]["val_psnr"])
    entry = export_weights(tmp_path / "run", tmp_path / "weights")
    assert entry["file"] == "ffdnet-tv-blind.safetensors" and entry["sigma"] is None
    assert entry["sigma_range"] == [0.0, 55.0] and entry["val_sigma"] == 25.0
    model, e = load_pretrained("ffdnet-tv", 40, weights_dir=tmp_path / "weights")
    assert e["sha256"] == entry["sha256"] and model.takes_sigma
    with pytest.raises(ValueError, match="no noise-level input"):
        train(TrainConfig(**{**cfg.__dict__, "model": "dncnn", "out": str(tmp_path / "r2"),
                             "model_config": {"depth": 3, "width": 4}}),
              progress=False, log=lambda m: None)


def _ship(tmp_path: Path) -> Path:
    """A weights folder with an untrained (identity) DnCNN, as `tvcli train --export` writes."""
    from tvcli.learning.train import TrainConfig, export_weights, train

    data = _tiny_dataset(tmp_path / "data")
    cfg = TrainConfig(model="dncnn", data=str(data), out=str(tmp_path / "run"), steps=1,
                      batch=1, patch=8, val_every=1, ckpt_every=1, val_crop=16, lr=0.0,
                      lr_min=0.0, model_config={"depth": 3, "width": 4})
    train(cfg, progress=False, log=lambda m: None)
    export_weights(tmp_path / "run", tmp_path / "weights")
    return tmp_path / "weights"


def test_cli_run_batch_errors_and_json(tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from tvcli.cli import app

    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(_ship(tmp_path)))
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(src / "a.png")
    Image.fromarray((rng.random((20, 24)) * 255).astype(np.uint8)).save(src / "gray.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    res = CliRunner().invoke(app, ["run", "dncnn", str(src), "-o", str(tmp_path / "out"),
                                   "--json", "--add-noise", "10", "--force", "--tile", "16",
                                   "--overlap", "8"])
    assert res.exit_code == 1  # the broken file fails, the others are written
    recs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    status = {Path(r["input"]).name: r["status"] for r in recs}
    assert status == {"a.png": "ok", "gray.png": "ok", "broken.png": "error"}
    out = np.asarray(Image.open(tmp_path / "out" / "gray.png"))
    assert out.shape == (20, 24)  # gray stays gray
    # lr = 0 kept the network the identity: the output is the seeded noisy input
    noisy_a = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(float)
    clean_a = np.asarray(Image.open(src / "a.png")).astype(float)
    assert 5 < np.abs(noisy_a - clean_a).mean() < 15
    res2 = CliRunner().invoke(app, ["run", "dncnn", str(src / "a.png"), "-o",
                                    str(tmp_path / "again.png"), "--add-noise", "10",
                                    "--force"])
    assert res2.exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), noisy_a)
    bad = CliRunner().invoke(app, ["run", "nope", str(src / "a.png")])
    assert "unknown model 'nope'" in str(bad.exception)  # main() prints it, exit 2


def test_cli_run_and_train_blind_models(tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from tvcli.cli import app
    from tvcli.learning.train import TrainConfig, export_weights, train

    data = _tiny_dataset(tmp_path / "data")
    cfg = TrainConfig(model="ffdnet-tv", data=str(data), out=str(tmp_path / "run"), steps=1,
                      batch=1, patch=8, val_every=1, ckpt_every=1, val_crop=16,
                      sigma_range=[0.0, 55.0], model_config={"depth": 3, "width": 4})
    train(cfg, progress=False, log=lambda m: None)
    export_weights(tmp_path / "run", tmp_path / "weights")
    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(tmp_path / "weights"))
    rng = np.random.default_rng(2)
    Image.fromarray((rng.random((21, 19, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    res = CliRunner().invoke(app, ["run", "ffdnet-tv", str(tmp_path / "a.png"), "-o",
                                   str(tmp_path / "out.png"), "--sigma", "30", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[-1])
    assert rec["sigma"] == 30 and rec["sigma_range"] == [0.0, 55.0]
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (21, 19, 3)
    listing = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert "0-55 (blind)" in listing.stdout
    for args, msg in ((["dncnn", "--sigma-range", "0,55"], "no noise-level input"),
                      (["ffdnet", "--sigma-range", "9"], "LO,HI")):
        bad = CliRunner().invoke(app, ["train", *args, "--data", str(data)])
        assert msg in str(bad.exception), bad.output
