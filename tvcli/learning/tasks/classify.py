"""CIFAR-10 classification: the task of allconv / allconv-tv-smooth / allconv-tv-sharp.

``TrainConfig(task="classify", model="allconv-tv-smooth", data=CIFAR, ...)`` with
``data`` the CIFAR-10 JPEG ``.tar.gz`` or its unpacked folder (:mod:`tvcli.data.cifar`).
Importing this module registers the task.

Training batches: ``cfg.batch`` images drawn uniformly (with replacement) from the
training split, each randomly cropped after 4-pixel zero padding and flipped
left-right with probability 1/2 (the usual CIFAR augmentation); the loss is
cross-entropy of the logits. Validation: top-1 accuracy in percent on the test
split (as the paper reports test accuracy), in eval mode, without augmentation.
Test scoring (:meth:`ClassifyTask.evaluate`): clean top-1 and, with a CIFAR-10-C
pack (or ``corruptions``), top-1 per corruption and severity and their mean.

``task_config`` keys (all optional): ``train_per_class`` / ``val_per_class``
(first N images of each class: smoke runs), ``pad`` (crop padding, 4),
``val_batch`` (256).

The loop itself (optimizer Adam, cosine schedule, checkpoints, resume, export) is
the shared one; the exported manifest entry records the class names, the input
size, the data subset sizes and the learned lam of each TV layer.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tvcli.learning.tasks.base import (
    RunConfig,
    Task,
    TaskDataError,
    TaskDefaults,
    files_digest,
    read_manifest,
)

__all__ = ["ClassifyTask", "augment", "top1_accuracy"]


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after ``pad``-pixel zero padding and a random horizontal flip.

    Args:
        images: (N, C, H, W) float.
        gen: CPU generator (the only randomness).
    Returns:
        (N, C, H, W) float.
    """
    n, _, h, w = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    ys = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    xs = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist()
    out = torch.empty_like(images)
    for i in range(n):
        crop = padded[i, :, ys[i]:ys[i] + h, xs[i]:xs[i] + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


@torch.no_grad()
def top1_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  device: str | torch.device = "cpu", batch: int = 256) -> float:
    """Top-1 accuracy in percent. ``images`` uint8 (N, 3, H, W) or float in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        pred = model(x).argmax(1).cpu()
        correct += int((pred == labels[i:i + batch]).sum())
    model.train(was_training)
    return 100.0 * correct / max(1, len(images))


class ClassifyTask(Task):
    """See the module docstring. ``cond`` is a seed for the model's dropout: drawn
    from the loop's generator in :meth:`sample` and set as torch's global seed just
    before the forward pass, so that dropout -- which draws from the global RNG --
    is reproduced exactly when a run resumes."""

    name = "classify"
    metric = "val_top1"
    higher_is_better = True
    # CIFAR-10: 32x32 images, no crop option
    defaults = TaskDefaults(batch=32, patch=None, val_every=250, ckpt_every=50, val_crop=32)
    options = {"train_per_class": int, "val_per_class": int}
    data_help = "the CIFAR-10 JPEG .tar.gz or its folder"

    @classmethod
    def check_data(cls, data: Path) -> None:
        data = Path(data)
        man = read_manifest(data)
        folder = data / "cifar10" if (data / "cifar10").is_dir() else data
        if not ((data.is_file() and data.name.endswith((".tar.gz", ".tgz", ".tar")))
                or (data.is_dir() and not man and (folder / "train").is_dir()
                    and (folder / "test").is_dir())):
            from tvcli.learning.tasks import models_of

            raise TaskDataError(f"{data} is not CIFAR-10 (the JPEG .tar.gz, or a folder "
                                f"with train/ and test/ class folders) for "
                                f"{models_of('classify')}")

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        tc = cfg.task_config or {}
        self.train_per_class = tc.get("train_per_class")
        self.val_per_class = tc.get("val_per_class")
        self.pad = int(tc.get("pad", 4))
        self.val_batch = int(tc.get("val_batch", 256))
        self.lam_history: list[dict] = []

    def check_model(self, model: nn.Module) -> None:
        if not hasattr(model, "config") or "num_classes" not in model.config:
            raise ValueError(f"model {self.cfg.model!r} is not a classifier")

    def load(self, data: Path) -> tuple[Any, Any]:
        from tvcli.data.cifar import load_cifar10

        train = load_cifar10(data, "train", self.train_per_class)
        val = load_cifar10(data, "test", self.val_per_class)
        return train, val

    def data_digest(self, data: Path) -> str | None:
        """sha256 of the archive (first 16 hex digits), or for a folder
        :func:`tvcli.learning.tasks.base.files_digest` of its image files (names and sizes)."""
        if data.is_dir():
            from tvcli.data.cifar import _EXTS

            return files_digest(data, [p for p in data.rglob("*")
                                       if p.suffix.lower() in _EXTS and p.is_file()])
        if data.is_file():
            import hashlib

            h = hashlib.sha256()
            with open(data, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()[:16]
        return None

    def sample(self, train_set: Any, gen: torch.Generator, dgen: torch.Generator | None,
               device: torch.device):
        images, labels = train_set
        idx = torch.randint(0, len(images), (self.cfg.batch,), generator=gen)
        x = augment(images[idx].float() / 255.0, gen, self.pad)
        dropout_seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
        return x.to(device), labels[idx].to(device), dropout_seed

    def forward(self, model: nn.Module, inputs: torch.Tensor, cond: Any) -> torch.Tensor:
        if cond is not None:
            torch.manual_seed(cond)  # dropout masks as a function of the run's generator
        return model(inputs)

    def loss(self, pred: torch.Tensor, targets: torch.Tensor, cond: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(pred.float(), targets)

    def validate(self, model: nn.Module, val_set: Any, device: torch.device) -> float:
        images, labels = val_set
        return top1_accuracy(model, images, labels, device, self.val_batch)

    def export_tag(self) -> str:
        return "cifar10"

    def manifest_fields(self) -> dict:
        from tvcli.models.allconv import CIFAR10_CLASSES

        return {"classes": list(CIFAR10_CLASSES), "input_size": 32,
                "train_per_class": self.train_per_class, "val_per_class": self.val_per_class,
                "val_split": "test", "augment": f"pad {self.pad} + random crop + h-flip"}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model, data, device="cpu", *, amp=None, step=1, deadline=math.inf,
                 corruptions: Path | None = None, **options) -> dict:
        """Clean top-1 accuracy (percent) on the test split of ``data`` (the CIFAR-10
        JPEG archive or folder, as a GPU run carries it); with a CIFAR-10-C pack
        (``corruptions``, default ``cifar10c.pack`` beside ``data`` when it exists;
        ``python -m tvcli.learning.train.gpu make-data --cifar10c-per-class N``), top-1 per
        corruption and severity (``c/<name>/<severity>``) and their mean
        (``cifar10c``). ``{part: {"top1", "n"}}``."""
        from tvcli.data.pack import load_data

        amp = amp or contextlib.nullcontext
        arrays = load_data(Path(data))[1]
        images, labels = arrays["test_images"][::step], arrays["test_labels"][::step]
        with amp():
            top1 = top1_accuracy(model, images, labels, device, batch=1000)
        res = {"test": {"top1": top1, "n": len(labels)}}
        cpack = Path(corruptions) if corruptions else Path(data).with_name("cifar10c.pack")
        if cpack.exists():
            c = load_data(cpack)[1]
            c_labels = c["labels"].long().flatten()
            accs = []
            for key in sorted(k for k in c if k.startswith("c/")):
                with amp():
                    acc = top1_accuracy(model, c[key], c_labels, device, batch=1000)
                res[key] = {"top1": acc, "n": len(c_labels)}
                accs.append(acc)
            res["cifar10c"] = {"top1": sum(accs) / max(1, len(accs)), "n": len(accs)}
        return res
