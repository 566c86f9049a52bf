"""Classification task on the shared training loop: CIFAR reader, augmentation,
training, exact resume, export (synthetic CIFAR-layout data; no shared data needed)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import tvcli.classify_task  # noqa: F401 -- registers the task
from tvcli.classify_task import augment
from tvcli.data.cifar import load_cifar10
from tvcli.models.allconv import CIFAR10_CLASSES
from tvcli.train import TrainConfig, export_weights, train


def make_cifar(root: Path, per_class: int = 2) -> Path:
    """A CIFAR-10-layout folder of random 32x32 JPEGs: root/cifar10/{train,test}/<cls>/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in CIFAR10_CLASSES:
            d = root / "cifar10" / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                img = np.uint8(rng.random((32, 32, 3)) * 255)
                Image.fromarray(img).save(d / f"{i:04d}.jpg", quality=95)
    return root


def test_reader_folder_and_tar_agree(tmp_path: Path) -> None:
    root = make_cifar(tmp_path / "c", per_class=3)
    tgz = tmp_path / "c.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(root / "cifar10", arcname="cifar10")
    a_img, a_lab = load_cifar10(root, "train")
    b_img, b_lab = load_cifar10(tgz, "train")
    assert a_img.shape == (30, 3, 32, 32) and a_img.dtype == torch.uint8
    assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert a_lab.tolist() == [c for c in range(10) for _ in range(3)]
    img, lab = load_cifar10(tgz, "test", per_class=1)
    assert lab.tolist() == list(range(10))
    with pytest.raises(FileNotFoundError):
        load_cifar10(tmp_path / "nope", "train")


def test_augment_is_crop_and_flip() -> None:
    x = torch.rand(6, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    y = augment(x, gen, pad=4)
    assert y.shape == x.shape
    # every output is a shifted (zero-filled) and maybe mirrored copy of its input
    for i in range(6):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        found = any(torch.equal(y[i], c) or torch.equal(y[i], c.flip(-1))
                    for dy in range(9) for dx in range(9)
                    for c in [padded[:, dy:dy + 32, dx:dx + 32]])
        assert found
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), 4), y)


def test_train_resume_export(tmp_path: Path) -> None:
    data = make_cifar(tmp_path / "data", per_class=2)
    cfg = dict(model="allconv-tv-sharp", data=str(data), steps=4, batch=4, lr=1e-3,
               val_every=2, ckpt_every=1, task="classify",
               model_config={"width": 4, "tv_iters": 1})
    full = train(TrainConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), **cfg), progress=False, stop_at=2)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), progress=False,
                    log=lambda *a: None)
    assert full["step"] == resumed["step"] == 4
    assert [h["val_top1"] for h in full["history"]] == [h["val_top1"] for h in
                                                         resumed["history"]]
    assert 0.0 <= full["history"][-1]["val_top1"] <= 100.0
    from tvcli._safetensors import load_file

    sa = load_file(str(tmp_path / "a" / "ckpt.safetensors"))
    sb = load_file(str(tmp_path / "b" / "ckpt.safetensors"))
    for k in sa:
        if k.startswith("model."):
            assert torch.equal(sa[k], sb[k]), k
    entry = export_weights(tmp_path / "a", tmp_path / "w")
    assert entry["file"] == "allconv-tv-sharp-cifar10.safetensors"
    assert entry["classes"] == list(CIFAR10_CLASSES) and entry["input_size"] == 32
    assert entry["task"] == "classify" and entry["val_top1"] is not None
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert man["weights"][0]["config"]["tv_mode"] == "sharp"
    from tvcli.models import load_pretrained

    model, _ = load_pretrained("allconv-tv-sharp", weights_dir=tmp_path / "w")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)
