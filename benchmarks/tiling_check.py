"""Tiled vs untiled inference of the shipped denoisers (PSNR between the two).

    python benchmarks/tiling_check.py [--data DATA_DIR] [--tile 256] [--overlap 48]

Prints one line per shipped denoiser and validation image (the first three of
DATA/val): the PSNR (dB) of the tiled output against the untiled one, and both
timings (docs/denoising_val.md, "Tiled inference"). Other shipped weights
(classifiers, edge detectors, EPS) are skipped.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from tvcli.learning.tasks.denoise import load_images
from tvcli.models import list_weights, load_pretrained
from tvcli.models.inference import denoise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=48)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    images = load_images(args.data / "val")[:3]
    for w in list_weights():
        if w.get("sigma") is None and not w.get("sigma_range"):
            continue  # not a denoiser
        sigma = w["sigma"] if w["sigma"] is not None else w["val_sigma"]  # blind: 25
        model, _ = load_pretrained(w["model"], sigma)
        for i, img in enumerate(images):
            gen = torch.Generator().manual_seed(i)
            noisy = img + sigma / 255 * torch.randn(img.shape, generator=gen)
            t0 = time.perf_counter()
            full = denoise(model, noisy, tile=None, sigma=sigma / 255)
            t1 = time.perf_counter()
            tiled = denoise(model, noisy, tile=args.tile, overlap=args.overlap,
                            sigma=sigma / 255)
            t2 = time.perf_counter()
            mse = float((full - tiled).pow(2).mean())
            p = math.inf if mse == 0 else 10 * math.log10(1 / mse)
            print(f"{w['file']:28s} image {i} {tuple(img.shape[1:])}: tiled vs untiled "
                  f"{p:.1f} dB (untiled {t1 - t0:.2f} s, tiled {t2 - t1:.2f} s)")


if __name__ == "__main__":
    main()
