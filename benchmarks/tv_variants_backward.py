"""Forward vs backward time of the isotropic prox (tvcli.prox_tv, norm="iso") on a
batch of layer-like activations (docs/tv_variants.md): float32 uniform noise, lam
per channel. The forward is the compiled op (or the pure-PyTorch solver when the
engine is not built); the backward is tvcli/tv_implicit.py's conjugate gradients.
Each line: median of --repeat runs (forward, backward interleaved).

Usage: python benchmarks/tv_variants_backward.py [--shape 64,64,32,32] [--lam 0.05]
       [--tols 1e-3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import tvcli


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="64,64,32,32")
    ap.add_argument("--tols", default="1e-3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lam", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g).requires_grad_()
    lam = torch.full((shape[1], 1, 1), args.lam).requires_grad_()
    gy = torch.randn(shape, generator=g)
    for tol in (float(t) for t in args.tols.split(",")):
        fwds, bwds = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            y, info = tvcli.prox_tv(x, lam, norm="iso", tol=tol, return_info=True)
            fwds.append(time.perf_counter() - t)
            t = time.perf_counter()
            torch.autograd.grad((y * gy).sum(), (x, lam))
            bwds.append(time.perf_counter() - t)
        fwd, bwd = statistics.median(fwds), statistics.median(bwds)
        print(f"shape {shape} tol {tol:.0e}: forward {fwd:.3f} s "
              f"({int(info.iterations.max())} iterations max), backward {bwd:.3f} s, "
              f"backward/forward {bwd / fwd:.2f}", flush=True)


if __name__ == "__main__":
    main()
