"""3-D isotropic TV: tvcli.prox_tv(dims=(-3, -2, -1), norm="iso") against
scikit-image's n-D denoise_tv_chambolle on a noisy piecewise-constant volume,
interleaved, one thread each (docs/tv_variants.md). Prints seconds and the RMS error
against tvcli run to a certified 1e-6.

Usage: python benchmarks/tv_variants_volume.py [--size 48] [--lam 0.1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

import tvcli


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--lam", type=float, default=0.1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.size
    idx = torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij")).double()
    ball = ((idx - n / 2) ** 2).sum(0) < (n / 3) ** 2  # a sphere in a box
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * ball.double() + 0.1 * torch.randn((n, n, n), generator=g,
                                                       dtype=torch.float64)
    ref = tvcli.prox_tv(x, args.lam, dims=(0, 1, 2), norm="iso", tol=1e-6, max_iter=100000)
    runs = [
        ("tvcli prox_tv 3-D iso tol 1e-2", lambda: tvcli.prox_tv(
            x, args.lam, dims=(0, 1, 2), norm="iso", tol=1e-2).numpy()),
        ("skimage chambolle 3-D defaults", lambda: denoise_tv_chambolle(
            x.numpy(), weight=args.lam)),
        ("tvcli prox_tv 3-D iso tol 1e-3", lambda: tvcli.prox_tv(
            x, args.lam, dims=(0, 1, 2), norm="iso", tol=1e-3).numpy()),
        ("skimage chambolle 3-D eps 1e-6, 5000 it", lambda: denoise_tv_chambolle(
            x.numpy(), weight=args.lam, eps=1e-6, max_num_iter=5000)),
    ]
    for name, fn in runs:
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        err = out - ref.numpy()
        print(f"{name:42s} {dt:7.3f} s  RMS error {np.sqrt((err ** 2).mean()):.1e}", flush=True)


if __name__ == "__main__":
    main()
