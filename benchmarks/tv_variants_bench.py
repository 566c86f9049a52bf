"""tvcli.prox_tv (isotropic, per channel) against scikit-image's denoise_tv_chambolle
on one noisy colour photo, interleaved in one run, one thread each
(docs/tv_variants.md). Prints seconds (best of --repeat) and the RMS error of each
result against the exact prox (tvcli run to a certified --ref-tol, default 1e-6;
errors below it are not resolved).

Usage: python benchmarks/tv_variants_bench.py [image] [--size 256] [--lam 0.1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

import tvcli
from tvcli.io import read_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image", nargs="?", default="examples/images/astronaut.png")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ref-tol", type=float, default=1e-6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    img = torch.from_numpy(read_image(args.image)[0])[: args.size, : args.size, :3]
    g = torch.Generator().manual_seed(0)
    noisy = (img.double() + 25 / 255 * torch.randn(img.shape, generator=g, dtype=torch.float64))
    x = noisy.permute(2, 0, 1).contiguous()  # (3, H, W)
    ref = tvcli.prox_tv(x, args.lam, norm="iso", tol=args.ref_tol, max_iter=100000)

    def ours(tol: float):
        return lambda: tvcli.prox_tv(x, args.lam, norm="iso", tol=tol).numpy()

    def skimage(eps: float, max_num_iter: int):
        return lambda: np.moveaxis(denoise_tv_chambolle(
            noisy.numpy(), weight=args.lam, eps=eps, max_num_iter=max_num_iter,
            channel_axis=-1), -1, 0)

    runs = [("tvcli prox_tv iso tol 1e-2", ours(1e-2)),
            ("skimage chambolle defaults (eps 2e-4, 200 it)", skimage(2e-4, 200)),
            ("tvcli prox_tv iso tol 1e-3", ours(1e-3)),
            ("skimage chambolle eps 1e-6, 5000 it", skimage(1e-6, 5000)),
            ("tvcli prox_tv iso tol 1e-4", ours(1e-4))]
    best = {name: float("inf") for name, _ in runs}
    out = {}
    for _ in range(args.repeat):  # interleaved
        for name, fn in runs:
            t = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
    for name, _ in runs:
        err = out[name] - ref.numpy()
        print(f"{name:48s} {best[name]:7.3f} s  RMS error {np.sqrt((err ** 2).mean()):.1e}  "
              f"max error {np.abs(err).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
