"""The validation protocol of shipped weights, and plain TV's score under it.

A shipped denoiser must never lose to plain TV smoothing. Protocol (exactly that
of ``benchmarks/denoise_eval.py --data``, docs/denoising_val.md): the validation
images of a data folder (``DATA/val/*.png``: the data recipe's 8), full size, gray
ones kept gray (through the colour networks as three equal channels, then
averaged); AWGN of std sigma/255 added in float32 with seed ``1000 * sigma +
index``; outputs clipped to [0, 1]; mean PSNR. Plain TV = the 2-D TV prox (tol
1e-3) with the best single lam of a small grid per sigma on these same images.
A model is scored at its trained sigma, a blind-range model at 15, 25 and 50.
``benchmarks/tv_floor.py`` writes the result into each manifest entry as
``val_full = {sigma: {psnr, tv_psnr, tv_lam}}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["PROTOCOL", "val_sigmas", "add_noise", "tv_best", "model_psnr"]

PROTOCOL = ("benchmarks/denoise_eval.py --data (docs/denoising_val.md): full val images of "
            "the data recipe, AWGN seed 1000*sigma+i, outputs clipped, mean PSNR; TV = 2-D "
            "TV prox, best lam of its grid")

TV_LAMS = {15: (0.03, 0.045, 0.06), 25: (0.05, 0.07, 0.09), 50: (0.1, 0.13, 0.16)}


def val_sigmas(entry: dict) -> list[float]:
    """The sigmas (0-255) a manifest entry is validated at."""
    return [15.0, 25.0, 50.0] if entry.get("sigma_range") else [float(entry["sigma"])]


def add_noise(img: torch.Tensor, sigma: float, idx: int) -> torch.Tensor:
    """(C, H, W) float image + seeded AWGN of std sigma/255 (not clipped)."""
    gen = torch.Generator().manual_seed(1000 * int(sigma) + idx)
    return img + sigma / 255.0 * torch.randn(img.shape, generator=gen)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from tvcli.metrics import psnr

    return float(psnr(a.clamp(0, 1), b, data_range=1.0))


def load_val(data: Path) -> list[torch.Tensor]:
    """(C, H, W) float32 images in [0, 1]; gray ones keep one channel."""
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
        m = np.mean([_psnr(tvcli.prox_tv2d(add_noise(im, sigma, i), lam, tol=1e-3), im)
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
        scores.append(_psnr(y.mean(0, keepdim=True) if im.shape[0] == 1 else y, im))
    return float(np.mean(scores))
