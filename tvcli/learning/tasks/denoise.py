"""Denoising (AWGN): the task of DnCNN / DnCNN-TV / FFDNet / FFDNet-TV.

Training (:class:`DenoiseTask`): random patches from ``DATA/train/*.png`` (a
``tvcli data fetch`` or ``tvcli data bsd432`` folder, or a ``.pack`` of a GPU run),
the 8 dihedral flips/rotations, additive white Gaussian noise of a fixed sigma (or,
for models with a noise-level input, a sigma drawn per patch from ``sigma_range``:
one blind-range model), MSE loss; validation = mean PSNR on ``DATA/val/*.png``
(center crops of ``val_crop``) with fixed-seed noise.

Scoring, one protocol for every caller (the GPU runner, ``benchmarks/tv_floor.py``,
``benchmarks/denoise_eval.py``, the weights tests):

* :func:`add_noise`: AWGN of std sigma/255 drawn in float32 on the CPU with seed
  ``1000 * sigma + index`` (+ :data:`SEED_OFFSET` of the test set: Kodak24's
  noise differs from CBSD68's), never clipped unless the protocol says so;
* :func:`psnr_db` of the output clipped to [0, 1] (:func:`tvcli.metrics.psnr`);
* the validation protocol of shipped weights (docs/denoising_val.md,
  :data:`PROTOCOL`): the full val images of a data folder, gray ones kept gray,
  tiled inference as ``tvcli run`` (:func:`model_psnr`), and plain TV's best
  score over a small lam grid (:func:`tv_best`) -- a shipped denoiser must never
  lose to it;
* the paper's Table 6 on CBSD68 / Kodak24 (:meth:`DenoiseTask.evaluate`, test
  sets ``test/<SET>/<name>`` of a data pack).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tvcli.learning.tasks.base import (
    Task,
    TaskDataError,
    TaskDefaults,
    crop_center,
    psnr_db,
    read_manifest,
)
from tvcli.models.inference import apply_model

__all__ = ["PROTOCOL", "SEED_OFFSET", "DenoiseTask", "add_noise", "load_images", "load_val",
           "model_psnr", "random_crops", "tv_best", "val_sigmas", "validate"]

PROTOCOL = ("benchmarks/denoise_eval.py --data (docs/denoising_val.md): full val images of "
            "the data recipe, AWGN seed 1000*sigma+i, outputs clipped, mean PSNR; TV = 2-D "
            "TV prox, best lam of its grid")

# Added to the noise seed of a test set's images (Table 6 protocol).
SEED_OFFSET = {"Kodak24": 100000}

TV_LAMS = {15: (0.03, 0.045, 0.06), 25: (0.05, 0.07, 0.09), 50: (0.1, 0.13, 0.16)}


# ------------------------------------------------------------------ the protocol


def add_noise(img: torch.Tensor, sigma: float, idx: int, set_name: str | None = None
              ) -> torch.Tensor:
    """(C, H, W) float image in [0, 1] + seeded AWGN of std sigma/255 (sigma in
    0-255 units; not clipped). The seed is ``1000 * int(sigma) + idx`` plus the
    test set's :data:`SEED_OFFSET`."""
    seed = 1000 * int(sigma) + idx + SEED_OFFSET.get(set_name or "", 0)
    gen = torch.Generator().manual_seed(seed)
    return img + sigma / 255.0 * torch.randn(img.shape, generator=gen)


def val_sigmas(entry: dict) -> list[float]:
    """The sigmas (0-255) a manifest entry is validated at."""
    return [15.0, 25.0, 50.0] if entry.get("sigma_range") else [float(entry["sigma"])]


def load_val(data: Path) -> list[torch.Tensor]:
    """(C, H, W) float32 images in [0, 1] of ``DATA/val/*.png``; gray ones keep one
    channel."""
    from PIL import Image

    out = []
    for p in sorted((Path(data) / "val").glob("*.png")):
        t = torch.from_numpy(np.asarray(Image.open(p)).astype(np.float32) / 255.0)
        out.append(t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous())
    return out


@torch.no_grad()
def tv_best(images: list[torch.Tensor], sigma: float) -> tuple[float, float]:
    """(best mean PSNR, its lam) of the TV prox over the grid ``TV_LAMS[sigma]``."""
    import tvcli

    best = (-np.inf, 0.0)
    for lam in TV_LAMS[int(sigma)]:
        m = np.mean([psnr_db(tvcli.prox_tv2d(add_noise(im, sigma, i), lam, tol=1e-3), im)
                     for i, im in enumerate(images)])
        best = max(best, (float(m), lam))
    return best


@torch.no_grad()
def model_psnr(model: torch.nn.Module, images: list[torch.Tensor], sigma: float) -> float:
    """Mean PSNR of ``model`` (tiled inference, as ``tvcli run``) under the protocol."""
    from tvcli.models.inference import denoise

    scores = []
    for i, im in enumerate(images):
        x = add_noise(im, sigma, i)
        y = denoise(model, x.expand(3, -1, -1) if x.shape[0] == 1 else x, tile=512,
                    overlap=48, sigma=sigma / 255.0)
        scores.append(psnr_db(y.mean(0, keepdim=True) if im.shape[0] == 1 else y, im))
    return float(np.mean(scores))


# ---------------------------------------------------------------------- training


def load_images(folder: Path, channels: int = 3, as_uint8: bool = False) -> list[torch.Tensor]:
    """All PNG images of ``folder`` as (channels, H, W) tensors: float32 in [0, 1], or
    uint8 with ``as_uint8`` (a quarter of the memory; crops are converted later)."""
    from PIL import Image

    out = []
    for path in sorted(Path(folder).glob("*.png")):
        img = np.asarray(Image.open(path).convert("RGB" if channels == 3 else "L"))
        t = torch.from_numpy(img.copy() if as_uint8 else img.astype(np.float32) / 255.0)
        out.append(t.permute(2, 0, 1).contiguous() if t.dim() == 3 else t.unsqueeze(0))
    if not out:
        raise FileNotFoundError(f"no PNG images in {folder} (run `tvcli data fetch` first)")
    return out


def _to_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0 if t.dtype == torch.uint8 else t


def random_crops(images: list[torch.Tensor], weights: torch.Tensor, n: int, patch: int,
                 gen: torch.Generator) -> torch.Tensor:
    """(n, C, patch, patch) float32 random crops, each flipped/rotated at random
    (one of the 8 dihedral transforms); images are picked with probability
    proportional to ``weights`` (their pixel counts)."""
    idx = torch.multinomial(weights, n, replacement=True, generator=gen)
    crops = []
    for i in idx.tolist():
        img = images[i]
        h, w = img.shape[-2:]
        ph, pw = min(patch, h), min(patch, w)
        y = int(torch.randint(0, h - ph + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - pw + 1, (1,), generator=gen))
        crop = img[:, y:y + ph, x:x + pw]
        k = int(torch.randint(0, 8, (1,), generator=gen))
        crop = torch.rot90(crop, k % 4, dims=(1, 2))
        if k >= 4:
            crop = crop.flip(2)
        crops.append(_to_float(crop))
    return torch.stack(crops)


@torch.no_grad()
def validate(model: nn.Module, images: list[torch.Tensor], sigma: float, crop: int | None,
             device: str | torch.device, seed: int = 1234) -> float:
    """Mean PSNR over ``images`` (center-cropped to ``crop``) with fixed-seed noise
    (sigma in 0-255 units; outputs clipped to [0, 1]): the training validation."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for img in images:
        img = crop_center(_to_float(img), crop)
        noisy = img + sigma / 255.0 * torch.randn(img.shape, generator=gen)
        out = apply_model(model, noisy.unsqueeze(0).to(device), sigma / 255.0)
        scores.append(psnr_db(out.squeeze(0), img))
    model.train(was_training)
    return float(sum(scores) / len(scores))


@dataclass
class _PatchSet:
    """Training images, or a pool of patches already on the device."""

    images: list[torch.Tensor]
    weights: torch.Tensor
    pool: torch.Tensor | None = None


class DenoiseTask(Task):
    """AWGN denoising: see the module docstring. ``cond`` is the per-patch noise
    level (N,) in [0, 1] units, given to models with a noise-level input."""

    name = "denoise"
    metric = "val_psnr"
    higher_is_better = True
    defaults = TaskDefaults(batch=16, patch=40, val_every=250, ckpt_every=100, val_crop=192)
    options: dict[str, type] = {}
    data_help = "a `tvcli data fetch` folder or a .pack"

    @classmethod
    def check_data(cls, data: Path) -> None:
        data = Path(data)
        if data.is_file() and data.suffix == ".pack":
            return
        man = read_manifest(data)
        if "filters" in man and "benchmark" in man:
            raise TaskDataError(f"{data} is an edge-preserving-smoothing folder (tvcli data "
                                f"eps); denoisers train on `tvcli data fetch` folders")
        if not man or not (data / "train").is_dir():
            from tvcli.learning.tasks import models_of

            raise TaskDataError(f"{data} has no manifest.json and train/ folder: run "
                                f"`tvcli data fetch {data}` first (denoisers: "
                                f"{models_of('denoise')})")

    @classmethod
    def out_tag(cls, sigma: float, sigma_range: list[float] | None) -> str:
        return "blind" if sigma_range else f"s{int(sigma)}"

    def check_model(self, model: nn.Module) -> None:
        cfg = self.cfg
        if cfg.sigma_range is not None:
            if not getattr(model, "takes_sigma", False):
                raise ValueError(f"model {cfg.model!r} has no noise-level input: train it "
                                 "with one --sigma, not a range")
            lo, hi = (float(v) for v in cfg.sigma_range)
            if not 0 <= lo <= hi:
                raise ValueError(f"sigma range must satisfy 0 <= lo <= hi, got "
                                 f"{cfg.sigma_range}")

    def load(self, data: Path) -> tuple[_PatchSet, list[torch.Tensor]]:
        if data.suffix == ".pack":  # one file made by `make gpu-data` (tvcli.data.pack)
            from tvcli.data.pack import read_pack

            arrays = read_pack(data)[1]
            imgs = [t for k, t in sorted(arrays.items()) if k.startswith("train/")]
            if "train" in arrays:  # equal-size crops stored as one (N, C, H, W) array
                imgs += list(arrays["train"].unbind(0))
            val = [t for k, t in sorted(arrays.items()) if k.startswith("val/")]
        else:
            imgs = load_images(data / "train", as_uint8=True)
            val = load_images(data / "val", as_uint8=True)
        weights = torch.tensor([float(im.shape[-1] * im.shape[-2]) for im in imgs])
        return _PatchSet(imgs, weights), val

    def sample(self, train_set: _PatchSet, gen: torch.Generator,
               dgen: torch.Generator | None, device: torch.device):
        cfg = self.cfg
        if cfg.patch_pool > 0:  # GPU path: patches already on the device
            if train_set.pool is None:
                pool_gen = torch.Generator().manual_seed(cfg.seed + 1)
                train_set.pool = random_crops(train_set.images, train_set.weights,
                                              cfg.patch_pool, cfg.patch, pool_gen).to(device)
            idx = torch.randint(0, cfg.patch_pool, (cfg.batch,), generator=gen).to(device)
            clean = train_set.pool[idx]
            k = int(torch.randint(0, 8, (1,), generator=gen))  # one transform per batch
            clean = torch.rot90(clean, k % 4, dims=(2, 3))
            if k >= 4:
                clean = clean.flip(3)
        else:
            clean = random_crops(train_set.images, train_set.weights, cfg.batch, cfg.patch,
                                 gen)
        n = clean.shape[0]
        if cfg.sigma_range is None:
            level = torch.full((n,), cfg.sigma / 255.0)
        else:
            lo, hi = (float(v) for v in cfg.sigma_range)
            level = (lo + (hi - lo) * torch.rand(n, generator=gen)) / 255.0
        if dgen is None:  # CPU: noise from the one CPU generator
            noise = torch.randn(clean.shape, generator=gen)
            clean, noise = clean.to(device), noise.to(device)
        else:
            noise = torch.randn(clean.shape, generator=dgen, device=device)
        level = level.to(device)
        noisy = clean + level.view(-1, 1, 1, 1) * noise
        return noisy, clean, level

    def forward(self, model: nn.Module, inputs: torch.Tensor, cond: Any) -> torch.Tensor:
        return apply_model(model, inputs, cond)

    def validate(self, model: nn.Module, val_set: list[torch.Tensor],
                 device: torch.device) -> float:
        return validate(model, val_set, self.cfg.sigma, self.cfg.val_crop, device)

    def export_tag(self) -> str:
        return "blind" if self.cfg.sigma_range else f"s{int(self.cfg.sigma)}"

    def manifest_fields(self) -> dict:
        srange = self.cfg.sigma_range
        return {"sigma": None if srange else self.cfg.sigma,
                **({"sigma_range": srange, "val_sigma": self.cfg.sigma} if srange else {}),
                "val_crop": self.cfg.val_crop}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model, data, device="cpu", *, amp=None, step=1, deadline=math.inf,
                 sigmas=(25.0, 50.0), **options) -> dict:
        """Mean PSNR per test set of a data pack (``test/<SET>/<name>`` arrays), sigma
        in ``sigmas`` and input convention (unclipped / clipped noisy input), with
        the Table 6 noise (:func:`add_noise`, the set's seed offset):
        ``{"SET|SIGMA|clip": {"psnr", "n"}}``."""
        import contextlib

        from tvcli.data.pack import load_data

        amp = amp or contextlib.nullcontext
        arrays = load_data(Path(data))[1]
        model.eval()
        sets: dict[str, list[torch.Tensor]] = {}
        for k in sorted(arrays):
            if k.startswith("test/"):
                sets.setdefault(k.split("/")[1], []).append(arrays[k])
        res: dict = {}
        for set_name, imgs in sets.items():
            for sigma in sigmas:
                for clip in ("unclipped", "clipped"):
                    scores = []
                    for i, im in enumerate(imgs):
                        if i % step or (scores and time.perf_counter() > deadline):
                            continue
                        clean = im.float() / 255.0
                        noisy = add_noise(clean, sigma, i, set_name)
                        if clip == "clipped":
                            noisy = noisy.clamp(0, 1)
                        with amp():
                            y = apply_model(model, noisy.unsqueeze(0).to(device), sigma / 255.0)
                        scores.append(psnr_db(y.squeeze(0), clean))
                    res[f"{set_name}|{sigma:g}|{clip}"] = {"psnr": sum(scores) / len(scores),
                                                          "n": len(scores)}
        return res
