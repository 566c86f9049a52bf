"""Edge detection: the task of dexined / dexined-tv (``task="edges"``).

Data: a BSDS500 folder (``images/{train,val}/*.jpg``, ``groundTruth/{train,val}/
*.mat``), never shipped with tvcli, or a data pack of the same photos and their
labels (``.pack``, made by ``python -m tvcli.learning.train.gpu make-data`` for a GPU
run). Training uses train + val (the standard
protocol; the 200 test images are for evaluation only), minus ``val_hold``
val images (default 10) kept aside to monitor the loss.

Labels (RCF, Liu et al. 2017): a pixel marked by at least half of the
annotators is an edge, one marked by nobody is background, one marked by
fewer than half is ambiguous and ignored by the loss
(:func:`tvcli.data.bsds.consensus_label`).

Augmentation (HED / RCF): a random scale in ``scales`` (default 0.75, 1, 1.25;
bilinear for the photo, nearest for the label), a random crop of ``patch``
pixels and one of the 8 flips / 90-degree rotations.

Loss (HED's class-balanced cross-entropy, with RCF's lambda = 1.1): for each of
the model's logit maps (side outputs and fused), positives weighted by the
fraction of negatives and negatives by 1.1 x the fraction of positives, both
fractions counted per image over its non-ignored pixels; the maps' losses are
summed. Validation: the same loss of the fused map on the held-out images
(centre crops), lower is better. Quick test scoring (:meth:`EdgeTask.evaluate`):
that loss and a pixel-level F-measure on the held-out images, whole; ODS / OIS /
AP come from the BSDS benchmark (:mod:`tvcli.edge_eval`, ``tvcli eval -m ods,ois,ap``).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tvcli.learning.tasks.base import (
    RunConfig,
    Task,
    TaskDataError,
    TaskDefaults,
    crop_center,
    files_digest,
)

__all__ = ["EdgeTask", "balanced_bce", "load_bsds_edges", "load_edges_pack"]


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor, neg_weight: float = 1.1
                 ) -> torch.Tensor:
    """Class-balanced binary cross-entropy (HED / RCF), summed over pixels and
    averaged over the batch.

    Args:
        logits: (N, 1, H, W) float logits.
        labels: (N, 1, H, W) float in {-1 (ignored), 0, 1}.
        neg_weight: RCF's lambda, extra weight of the negatives.
    Returns:
        0-d tensor.
    """
    labels = labels.to(logits.dtype)
    pos = (labels == 1).to(logits.dtype)
    neg = (labels == 0).to(logits.dtype)
    n_pos = pos.sum(dim=(1, 2, 3), keepdim=True)
    n_neg = neg.sum(dim=(1, 2, 3), keepdim=True)
    total = (n_pos + n_neg).clamp_min(1)
    weight = pos * (n_neg / total) + neg * (neg_weight * n_pos / total)
    loss = F.binary_cross_entropy_with_logits(logits.float(), pos.float(),
                                              weight=weight.float(), reduction="sum")
    return loss / logits.shape[0]


@dataclass
class EdgeSet:
    """Photos (3, H, W) uint8 and labels (1, H, W) int8 in {-1, 0, 1}."""

    images: list[torch.Tensor]
    labels: list[torch.Tensor]


def load_bsds_edges(root: Path, splits: tuple[str, ...] = ("train", "val")
                    ) -> tuple[list[str], EdgeSet]:
    """Stems and photos/labels of the given BSDS500 splits."""
    from PIL import Image

    from tvcli.data.bsds import bsds_split, consensus_label, read_bsds_boundaries

    names, imgs, labs = [], [], []
    for split in splits:
        for img_path, mat_path in bsds_split(root, split):
            img = np.asarray(Image.open(img_path).convert("RGB"))
            lab = consensus_label(read_bsds_boundaries(mat_path))
            if lab.shape != img.shape[:2]:
                raise ValueError(f"{mat_path}: ground truth {lab.shape} does not fit the "
                                 f"photo {img.shape[:2]}")
            names.append(f"{split}/{img_path.stem}")
            imgs.append(torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous())
            labs.append(torch.from_numpy(lab.astype(np.int8))[None])
    if not imgs:
        raise FileNotFoundError(f"{root}: no BSDS500 images in {splits}")
    return names, EdgeSet(imgs, labs)


def load_edges_pack(path: Path) -> tuple[list[str], EdgeSet]:
    """Stems and photos/labels of a data pack (``tvcli.learning.train.gpu make-data``): labels
    ``label/<split>/<stem>`` stored as uint8 label + 1 (0 ignored, 1 background,
    2 edge), photos ``photo/<split>/<stem>``."""
    from tvcli.data.pack import read_pack

    arrays = read_pack(path)[1]
    names, imgs, labs = [], [], []
    for key in sorted(k for k in arrays if k.startswith("label/")):
        name = key[len("label/"):]
        lab = arrays[key].to(torch.int8) - 1
        img = arrays[f"photo/{name}"]
        if lab.shape[-2:] != img.shape[-2:]:
            raise ValueError(f"{path}: label {name} {list(lab.shape)} does not fit its photo")
        names.append(name)
        imgs.append(img)
        labs.append(lab.reshape(1, *lab.shape[-2:]))
    if not imgs:
        raise FileNotFoundError(f"{path}: no edge labels (label/<split>/<stem>) in the pack")
    return names, EdgeSet(imgs, labs)


def _augment(img: torch.Tensor, lab: torch.Tensor, patch: int, scales: list[float],
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random scale, crop and dihedral transform: (3, p, p) float, (1, p, p)."""
    s = scales[int(torch.randint(0, len(scales), (1,), generator=gen))]
    x = img.float()[None] / 255.0
    y = lab.float()[None]
    if s != 1.0:
        h, w = x.shape[-2:]
        size = (max(patch, round(h * s)), max(patch, round(w * s)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        y = F.interpolate(y, size=size, mode="nearest")
    h, w = x.shape[-2:]
    ph, pw = min(patch, h), min(patch, w)
    top = int(torch.randint(0, h - ph + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - pw + 1, (1,), generator=gen))
    x = x[0, :, top:top + ph, left:left + pw]
    y = y[0, :, top:top + ph, left:left + pw]
    k = int(torch.randint(0, 8, (1,), generator=gen))
    x, y = torch.rot90(x, k % 4, dims=(1, 2)), torch.rot90(y, k % 4, dims=(1, 2))
    if k >= 4:
        x, y = x.flip(2), y.flip(2)
    return x, y


class EdgeTask(Task):
    """BSDS500 edge detection (see the module docstring). ``task_config`` keys:
    ``scales`` (list, default [0.75, 1, 1.25]), ``val_hold`` (10),
    ``neg_weight`` (1.1). ``cfg.patch`` is the crop side, ``cfg.val_crop`` the
    validation centre crop."""

    name = "edges"
    metric = "val_loss"
    higher_is_better = False
    # docs/edges.md: the width-16 DexiNed of the shipped weights, 160-pixel crops
    defaults = TaskDefaults(batch=4, patch=160, val_every=100, ckpt_every=50, val_crop=320,
                            model_config={"width": 16})
    options = {"val_hold": int, "scales": list}
    data_help = "BSDS500 (images/, groundTruth/)"

    @classmethod
    def check_data(cls, data: Path) -> None:
        data = Path(data)
        if not ((data / "images" / "train").is_dir()
                and (data / "groundTruth" / "train").is_dir()):
            from tvcli.learning.tasks import models_of

            raise TaskDataError(f"{data} is not a BSDS500 folder (images/train and "
                                f"groundTruth/train expected) for {models_of('edges')}")

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        tc = cfg.task_config or {}
        self.scales = [float(s) for s in tc.get("scales", [0.75, 1.0, 1.25])]
        self.val_hold = int(tc.get("val_hold", 10))
        self.neg_weight = float(tc.get("neg_weight", 1.1))

    def check_model(self, model: nn.Module) -> None:
        if not hasattr(model, "n_side"):
            raise ValueError(f"model {self.cfg.model!r} is not an edge detector (DexiNed)")

    def data_digest(self, data: Path) -> str | None:
        """``bsds500:`` + :func:`tvcli.learning.tasks.base.files_digest` of the train and val photos
        and ground truths (the test split is not part of it); a data pack's own
        digest for a ``.pack`` (it may hold a subset)."""
        if data.suffix == ".pack":
            return super().data_digest(data)
        files = [p for sub in ("images", "groundTruth") for split in ("train", "val")
                 for p in (Path(data) / sub / split).glob("*") if p.is_file()]
        return "bsds500:" + files_digest(Path(data), files)

    def load(self, data: Path) -> tuple[EdgeSet, EdgeSet]:
        names, full = _load(data)
        hold = _held_out(names, self.val_hold)
        keep = [i for i in range(len(names)) if i not in set(hold)]
        train = EdgeSet([full.images[i] for i in keep], [full.labels[i] for i in keep])
        val = EdgeSet([full.images[i] for i in hold], [full.labels[i] for i in hold])
        return train, val

    def sample(self, train_set: EdgeSet, gen: torch.Generator, dgen: torch.Generator | None,
               device: torch.device):
        xs, ys = [], []
        for _ in range(self.cfg.batch):
            i = int(torch.randint(0, len(train_set.images), (1,), generator=gen))
            x, y = _augment(train_set.images[i], train_set.labels[i], self.cfg.patch,
                            self.scales, gen)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs).to(device), torch.stack(ys).to(device), None

    def forward(self, model: nn.Module, inputs: torch.Tensor, cond: Any):
        return model(inputs)

    def loss(self, pred, targets: torch.Tensor, cond: Any) -> torch.Tensor:
        return sum(balanced_bce(p, targets, self.neg_weight) for p in pred)

    @torch.no_grad()
    def validate(self, model: nn.Module, val_set: EdgeSet, device: torch.device) -> float:
        if not val_set.images:
            return float("nan")
        was = model.training
        model.eval()
        c = self.cfg.val_crop
        scores = _fused_scores(model, [(crop_center(img, c), crop_center(lab, c)) for img, lab
                                       in zip(val_set.images, val_set.labels, strict=True)],
                               device, self.neg_weight)
        model.train(was)
        return scores["loss"]

    def export_tag(self) -> str:
        return "bsds"

    def manifest_fields(self) -> dict:
        return {"task": "edges", "sigma": None,
                "train_data": "BSDS500 train+val (RCF consensus labels)",
                "val_hold": self.val_hold}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model, data, device="cpu", *, amp=None, step=1, deadline=math.inf,
                 val_hold: int = 10, **options) -> dict:
        """On the ``val_hold`` held-out val photos (as trained), whole: the fused
        map's class-balanced loss (the training loss, lower is better) and the
        F-measure of ``p >= 0.5`` against the consensus edges at pixel level (no
        thinning or matching tolerance: a quick read; ODS / OIS / AP come from the
        BSDS benchmark, ``tvcli eval``). ``{"val_hold": {"loss", "f_pixel_0.5", "n"}}``."""
        names, full = _load(Path(data))
        held = _held_out(names, int(val_hold))[::step]
        model.eval()
        items = [(full.images[i], full.labels[i]) for i in held]
        return {"val_hold": _fused_scores(model, items, device, 1.1, amp, deadline)}


def _load(data: Path) -> tuple[list[str], EdgeSet]:
    return load_edges_pack(data) if data.suffix == ".pack" else load_bsds_edges(data)


def _held_out(names: list[str], hold: int) -> list[int]:
    """Indices of the last ``hold`` val images (kept out of training)."""
    return [i for i, n in enumerate(names) if n.startswith("val/")][-hold:] if hold > 0 else []


def _fused_scores(model: nn.Module, items: list[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device | str, neg_weight: float, amp=None,
                  deadline: float = math.inf) -> dict:
    """Mean class-balanced loss of the fused map and the pixel F-measure of
    ``logit >= 0`` over (photo (3, H, W) uint8, label (1, H, W) int8) items;
    items past ``deadline`` are skipped (``n`` says how many were scored)."""
    amp = amp or contextlib.nullcontext
    loss, tp, fp, fn, n = 0.0, 0, 0, 0, 0
    for img, lab in items:
        if n and time.perf_counter() > deadline:
            break
        x = img.float()[None].to(device) / 255.0
        y = lab.float()[None].to(device)
        with amp():
            logit = model(x)[-1].float()
        loss += float(balanced_bce(logit, y, neg_weight))
        pred, pos, known = logit >= 0, y == 1, y >= 0
        tp += int((pred & pos).sum())
        fp += int((pred & known & ~pos).sum())
        fn += int((~pred & pos).sum())
        n += 1
    if not n:
        return {"loss": float("nan"), "f_pixel_0.5": float("nan"), "n": 0}
    return {"loss": loss / n, "f_pixel_0.5": 2 * tp / max(1, 2 * tp + fp + fn), "n": n}
