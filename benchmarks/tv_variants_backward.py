"""Forward vs backward time of the isotropic prox (tvcli.prox_tv, norm="iso") on a
batch of layer-like activations (docs/tv_variants.md).

Usage: python benchmarks/tv_variants_backward.py [--shape 8,16,32,32] [--lam 0.05]
"""

from __future__ import annotations

import argparse
import time

import torch

import tvcli


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="8,16,32,32")
    ap.add_argument("--lam", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g).requires_grad_()
    lam = torch.full((shape[1], 1, 1), args.lam).requires_grad_()
    gy = torch.randn(shape, generator=g)
    for tol in (1e-3, 1e-4):
        t = time.perf_counter()
        y, info = tvcli.prox_tv(x, lam, norm="iso", tol=tol, return_info=True)
        fwd = time.perf_counter() - t
        t = time.perf_counter()
        torch.autograd.grad((y * gy).sum(), (x, lam))
        bwd = time.perf_counter() - t
        print(f"shape {shape} tol {tol:.0e}: forward {fwd:.3f} s "
              f"({int(info.iterations.max())} iterations max), backward {bwd:.3f} s, "
              f"backward/forward {bwd / fwd:.2f}", flush=True)


if __name__ == "__main__":
    main()
