"""Edge-preserving smoothing: the task of eps / eps-tv (``tvcli train eps-tv``).

Plugs into the generic loop of :mod:`tvcli.learning.train` (same checkpoints, resume and
export). Data: the folder written by ``tvcli data eps`` (the SUBSTITUTE for Zhu
et al.'s benchmark, see :mod:`tvcli.data.eps`): photos in ``train/input`` and K
ground truths per photo in ``train/gt/<stem>/<filter>.png``; or a data pack of
the same (``.pack``, :func:`load_eps_pack`, for a GPU run).

* A batch: random ``patch`` x ``patch`` crops of training photos (chosen with
  probability proportional to their pixel count), each under one of the 8
  dihedral flips/rotations, the same crop and flip applied to its K ground truths.
* Loss: the weighted MSE against all K ground truths, sum_k w_k MSE(pred, g_k)
  with uniform w_k = 1 / K -- the squared error that WRMSE measures (its
  minimiser is the weighted mean of the ground truths).
* Validation: WRMSE in 8-bit grey levels (lower is better), pooled as Zhu et
  al.'s script, on center crops (``val_crop``) of the first ``val_images``
  photos of ``val/`` (``task_config``, default 20).
* Test scoring (:meth:`EpsTask.evaluate`): WRMSE / WMAE of whole photos, pooled
  over all pixels as Zhu et al.'s script (:func:`tvcli.metrics.pooled_weighted_errors`,
  the same code as ``tvcli eval -m wrmse,wmae``).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tvcli.learning.tasks.base import (
    RunConfig,
    Task,
    TaskDataError,
    TaskDefaults,
    crop_center,
    read_manifest,
)

__all__ = ["EpsTask", "load_eps_pack", "predict"]


class _EpsSet:
    """Photos (3, H, W) and ground truths (K, 3, H, W) as uint8 tensors, with
    sampling weights proportional to pixel counts."""

    def __init__(self, items: list[tuple[str, Any, Any]], as_uint8: bool = False):
        self.stems = [s for s, _, _ in items]
        if as_uint8:  # tensors already uint8
            self.inputs = [x for _, x, _ in items]
            self.gts = [g for _, _, g in items]
        else:
            self.inputs = [torch.from_numpy((x * 255).round().astype("uint8"))
                           for _, x, _ in items]
            self.gts = [torch.from_numpy((g * 255).round().astype("uint8")) for _, _, g in items]
        self.weights = torch.tensor([float(x.shape[-1] * x.shape[-2]) for x in self.inputs])

    def items(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(stem, photo, ground truths) triples."""
        return list(zip(self.stems, self.inputs, self.gts, strict=True))


def load_eps_pack(path: Path, split: str, limit: int | None = None
                  ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``[(stem, input (3, H, W) uint8, gts (K, 3, H, W) uint8)]`` of one split of a
    data pack (``python -m tvcli.learning.train.gpu make-data``): ``<split>/input/<stem>`` and
    ``<split>/gt/<stem>/<filter>``, the filters in the order of ``meta["filters"]``."""
    from tvcli.data.pack import read_pack

    meta, arrays = read_pack(path)
    stems = sorted(k.rsplit("/", 1)[1] for k in arrays if k.startswith(f"{split}/input/"))
    if not stems:
        raise FileNotFoundError(f"{path}: no {split} photos in the pack")
    stems = stems[:limit] if limit else stems
    return [(s, arrays[f"{split}/input/{s}"],
             torch.stack([arrays[f"{split}/gt/{s}/{f}"] for f in meta["filters"]]))
            for s in stems]


class EpsTask(Task):
    """Edge-preserving smoothing against several ground truths (see the module
    docstring). ``task_config``: ``val_images`` (int, default 20)."""

    name = "eps"
    metric = "val_wrmse"
    higher_is_better = False
    defaults = TaskDefaults(batch=16, patch=40, val_every=250, ckpt_every=100, val_crop=192)
    options = {"val_images": int}
    data_help = "a `tvcli data eps` folder"

    @classmethod
    def check_data(cls, data: Path) -> None:
        data = Path(data)
        man = read_manifest(data)
        if not ("filters" in man and "benchmark" in man) or not (data / "train" / "input").is_dir():
            raise TaskDataError(f"{data} is not a `tvcli data eps` folder (manifest.json "
                                f"with filters, train/input/): run `tvcli data eps {data} "
                                "--bsds500 BSDS500` first")

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.val_images = int(cfg.task_config.get("val_images", 20))

    def load(self, data: Path) -> tuple[_EpsSet, _EpsSet]:
        if data.suffix == ".pack":  # a GPU run's data pack
            return (_EpsSet(load_eps_pack(data, "train"), as_uint8=True),
                    _EpsSet(load_eps_pack(data, "val", self.val_images), as_uint8=True))
        return (_EpsSet(_load_split(data, "train")),
                _EpsSet(_load_split(data, "val", limit=self.val_images)))

    def data_digest(self, data: Path) -> str | None:
        """Digest of the train and val records only, so that adding test photos to
        the folder later does not change the id of the training data."""
        import json

        from tvcli.data.eps import manifest_digest

        if data.suffix == ".pack":
            return super().data_digest(data)
        man = data / "manifest.json"
        if not man.exists():
            return None
        recs = [e for e in json.loads(man.read_text())["images"] if e["split"] != "test"]
        return manifest_digest(recs)

    def sample(self, train_set: _EpsSet, gen: torch.Generator, dgen: torch.Generator | None,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
        p = self.cfg.patch
        idx = torch.multinomial(train_set.weights, self.cfg.batch, replacement=True,
                                generator=gen)
        xs, gs = [], []
        for i in idx.tolist():
            x, g = train_set.inputs[i], train_set.gts[i]
            h, w = x.shape[-2:]
            ph, pw = min(p, h), min(p, w)
            y0 = int(torch.randint(0, h - ph + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, w - pw + 1, (1,), generator=gen))
            k = int(torch.randint(0, 8, (1,), generator=gen))
            both = torch.cat([x[None], g])[..., y0:y0 + ph, x0:x0 + pw]
            both = torch.rot90(both, k % 4, dims=(-2, -1))
            if k >= 4:
                both = both.flip(-1)
            xs.append(both[0])
            gs.append(both[1:].flatten(0, 1))  # (K * 3, p, p)
        inputs = torch.stack(xs).float().div_(255.0).to(device)
        targets = torch.stack(gs).float().div_(255.0).to(device)
        return inputs, targets, None

    def loss(self, pred: torch.Tensor, targets: torch.Tensor, cond: Any) -> torch.Tensor:
        """Uniformly weighted MSE over the K ground truths; pred (N, C, h, w),
        targets (N, K * C, h, w)."""
        n, c, h, w = pred.shape
        g = targets.float().view(n, -1, c, h, w)
        return (pred.float()[:, None] - g).square().mean()

    @torch.no_grad()
    def validate(self, model: nn.Module, val_set: _EpsSet, device: torch.device) -> float:
        was_training = model.training
        model.eval()
        crop = self.cfg.val_crop
        items = [(crop_center(x, crop), crop_center(g, crop))
                 for x, g in zip(val_set.inputs, val_set.gts, strict=True)]
        wrmse, _, _ = _pooled_errors(model, items, device)
        model.train(was_training)
        return float(wrmse) if math.isfinite(wrmse) else float("inf")

    def export_tag(self) -> str:
        return "eps"

    def manifest_fields(self) -> dict:
        return {"sigma": None, "task": "eps", "val_images": self.val_images,
                "val_crop": self.cfg.val_crop,
                "benchmark": "SUBSTITUTE for Zhu et al.'s BenchmarkEPS (tvcli data eps)"}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model, data, device="cpu", *, amp=None, step=1, deadline=math.inf,
                 **options) -> dict:
        """WRMSE / WMAE (8-bit grey levels, pooled as Zhu et al.'s script, uniform
        weights) on the whole photos of every split in ``data`` but train (val;
        test when present): a data pack or a ``tvcli data eps`` folder.
        ``{split: {"wrmse", "wmae", "n"}}``."""
        data = Path(data)
        res = {}
        model.eval()
        for split in ("val", "test"):
            if data.suffix == ".pack":
                from tvcli.data.pack import load_data

                if not any(k.startswith(f"{split}/input/") for k in load_data(data)[1]):
                    continue
                items = [(x, g) for _s, x, g in load_eps_pack(data, split)]
            else:
                if not (data / split / "input").is_dir():
                    continue
                items = [(x, g) for _s, x, g in _EpsSet(_load_split(data, split)).items()]
            res[split] = dict(zip(("wrmse", "wmae", "n"),
                                  _pooled_errors(model, items[::step], device, amp, deadline),
                                  strict=True))
        return res


def _load_split(data: Path, split: str, limit: int | None = None) -> list:
    from tvcli.data.eps import load_eps_split

    return load_eps_split(data, split, limit=limit)


@torch.no_grad()
def predict(model: nn.Module, photos: list[torch.Tensor], device: torch.device | str = "cpu",
            amp=None, deadline: float = math.inf) -> list[torch.Tensor]:
    """The model's outputs on photos (3, H, W) uint8, each (3, H, W) float32 on the
    CPU clipped to [0, 1]; photos past ``deadline`` skipped (at least one is run).
    The scoring's forward pass (:func:`_pooled_errors`, ``benchmarks/eps_eval.py``)."""
    amp = amp or contextlib.nullcontext
    out = []
    for x in photos:
        if out and time.perf_counter() > deadline:
            break
        with amp():
            y = model(x[None].float().div(255.0).to(device))
        out.append(y[0].float().cpu().clamp(0, 1))
    return out


def _pooled_errors(model: nn.Module, items: list[tuple[torch.Tensor, torch.Tensor]],
                   device: torch.device | str, amp=None, deadline: float = math.inf
                   ) -> tuple[float, float, int]:
    """(WRMSE, WMAE, n) of ``model`` on (photo (3, H, W) uint8, ground truths
    (K, 3, H, W) uint8) items, in 8-bit grey levels; outputs clipped to [0, 1];
    items past ``deadline`` skipped (n says how many were scored)."""
    from tvcli.metrics import pooled_weighted_errors

    preds = [y * 255.0 for y in predict(model, [x for x, _ in items], device, amp, deadline)]
    gts = [g.float() for _, g in items[:len(preds)]]
    wrmse, wmae = pooled_weighted_errors(preds, gts)
    return wrmse, wmae, len(preds)
