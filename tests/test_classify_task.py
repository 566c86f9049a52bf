"""Classification task on the shared training loop: CIFAR reader, augmentation,
training, exact resume, export (synthetic CIFAR-layout data; no shared data needed)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import tvcli.learning.tasks.classify  # noqa: F401 -- registers the task
from tvcli.data.cifar import load_cifar10
from tvcli.learning.tasks.classify import augment
from tvcli.learning.train import TrainConfig, export_weights, train
from tvcli.models.allconv import CIFAR10_CLASSES


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
    entry = export_weights(str(tmp_path / "a"), str(tmp_path / "w"))  # str paths too
    assert entry["file"] == "allconv-tv-sharp-cifar10.safetensors"
    assert entry["classes"] == list(CIFAR10_CLASSES) and entry["input_size"] == 32
    assert entry["task"] == "classify" and entry["val_top1"] is not None
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert man["weights"][0]["config"]["tv_mode"] == "sharp"
    from tvcli.models import load_pretrained

    model, _ = load_pretrained("allconv-tv-sharp", weights_dir=tmp_path / "w")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_top1_accuracy_scores_without_autograd() -> None:
    """Scoring runs with autograd off (a graph would keep the TV layers' backward
    buffers for every batch), in eval mode, and restores the caller's mode."""
    from tvcli.learning.tasks.classify import top1_accuracy

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.grad_seen: list[bool] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.grad_seen.append(torch.is_grad_enabled())
            # class = 1 for every image, via a parameter so a graph would be built
            return torch.nn.functional.one_hot(torch.ones(len(x), dtype=torch.long),
                                               10).float() * self.w

    model = Probe().train()
    images = torch.zeros(5, 3, 32, 32, dtype=torch.uint8)
    acc = top1_accuracy(model, images, torch.tensor([1, 1, 0, 1, 2]), batch=2)
    assert acc == pytest.approx(60.0)
    assert model.grad_seen == [False, False, False] and model.training


def test_cls_benchmark_merges_results_of_parallel_arms(tmp_path: Path) -> None:
    """Arms run as separate processes share OUT/results.json: each merges its own
    row into what is on disk when it writes, so none drops another's."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("cls_cifar10c",
                                                  root / "benchmarks" / "cls_cifar10c.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "out" / "results.json"
    mod.merge_result(path, "allconv", {"top1": {"clean": 1.0}})
    # another process wrote its row in the meantime
    on_disk = json.loads(path.read_text())
    on_disk["allconv-tv-sharp"] = {"top1": {"clean": 2.0}}
    path.write_text(json.dumps(on_disk))
    mod.merge_result(path, "allconv-tv-smooth", {"top1": {"clean": 3.0}})
    got = json.loads(path.read_text())
    assert {k: v["top1"]["clean"] for k, v in got.items()} == {
        "allconv": 1.0, "allconv-tv-sharp": 2.0, "allconv-tv-smooth": 3.0}
    assert not path.with_suffix(".tmp").exists()


def test_cls_table_rows_differences_and_checks() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("cls_table",
                                                  root / "benchmarks" / "cls_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    keys = [k for k, _ in mod.COLUMNS]

    def top1(base: float, **over: float) -> dict:
        t = {k: base for k in keys}
        t.update(over)
        t["all"] = sum(t[k] for k in keys) / len(keys)
        return {"top1": {**t, "clean": 80.0 + over.get("d_clean", 0.0),
                         "clean_all": 81.0 + over.get("d_clean", 0.0)}}

    res = {"allconv": top1(50.0),
           "allconv-tv-smooth": top1(50.0, gaussian_noise=55.0, shot_noise=49.0,
                                     d_clean=-0.7),
           "allconv-tv-sharp": top1(50.0, defocus_blur=51.0, glass_blur=52.0,
                                    motion_blur=53.0, zoom_blur=54.0)}
    text = mod.table(res)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    assert rows["TV-Smooth - AllConv"].split(" | ")[1] == "+5.0"   # Gauss.
    assert rows["TV-Smooth - AllConv"].split(" | ")[2] == "-1.0"   # Shot
    assert rows["TV-Sharp"].split(" | ")[4] == "51.0"             # Defocus
    assert "TV-Smooth above AllConv on noise types: 1 of 3 (gaussian_noise)" in text
    assert "TV-Sharp above AllConv on blur types: 4 of 4" in text
    assert "TV-Smooth clean top-1 minus AllConv (clean_all): -0.70 points (outside" in text
    assert "TV-Sharp clean top-1 minus AllConv (clean_all): +0.00 points (within" in text
