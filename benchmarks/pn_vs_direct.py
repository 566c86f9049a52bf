"""direct vs pn on the paper's Table 1 workload, side by side, with PN's iterations.

Workload (Yeh et al. 2022, section 4.1): 8192 signals of length 32 (256 x 32 x 32),
float32, a unit step plus N(0, 0.1) noise, lam = 1. Forward = prox; backward =
gradient of sum(y * g) with respect to x and lam. CPU always; CUDA when a device
and a CUDA build are present.

    python benchmarks/pn_vs_direct.py [--threads N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import tvcli
from tvcli._extension import ext_has_device
from tvcli.solver_stats import prox_tv1d_pn_stats


def paper_batch(device: str) -> torch.Tensor:
    """(256, 32, 32) float32: unit step along the last dim plus N(0, 0.1) noise."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(256, 32, 32)
    x[..., 16:] = 1
    x += 0.1 * torch.randn(256, 32, 32, generator=g)
    return x.to(device)


def time_ms(fn: Callable[[], object], device: str, repeat: int) -> tuple[float, float]:
    """Median and min time of fn() in ms (synchronizing on CUDA).

    Wall time, except on the CPU with one torch thread, where the solver runs in
    the calling thread and its CPU time (time.thread_time) is measured instead:
    unlike wall time it does not count the time another process held the core,
    so it stays meaningful on a loaded machine.
    """
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.perf_counter
    if device == "cpu" and torch.get_num_threads() == 1:
        clock = time.thread_time
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        sync()
        times.append(1e3 * (clock() - t0))
    return statistics.median(times), min(times)


def bench(device: str, repeat: int) -> None:
    x = paper_batch(device)
    g = torch.randn_like(x)
    what = "thread CPU time" if device == "cpu" and torch.get_num_threads() == 1 else "wall"
    print(f"\n{device}: batch {tuple(x.shape)} float32, lam = 1 ({what})")
    print(f"{'solver':8s} {'forward ms (median/min)':>26s} {'backward ms (median/min)':>27s}")
    base = None
    for solver in ("direct", "pn"):
        fwd = time_ms(lambda s=solver: tvcli.prox_tv1d(x, 1.0, solver=s), device, repeat)
        xr = x.clone().requires_grad_(True)
        lam = torch.ones(256, 32, 1, device=device, requires_grad=True)
        y = tvcli.prox_tv1d(xr, lam, solver=solver)
        bwd = time_ms(
            lambda y=y, xr=xr, lam=lam: torch.autograd.grad(y, (xr, lam), g, retain_graph=True),
            device, repeat,
        )
        base = base or fwd[0]
        print(f"{solver:8s} {fwd[0]:12.2f} / {fwd[1]:7.2f}   {bwd[0]:12.2f} / {bwd[1]:7.2f}"
              f"   forward x{fwd[0] / base:.2f} of direct")
    _, iters, status = prox_tv1d_pn_stats(x, 1.0)
    it = iters.flatten().float().cpu()
    counts = torch.bincount(status.flatten().long().cpu(), minlength=3).tolist()
    print(f"pn iterations: mean {float(it.mean()):.2f}, max {int(it.max())}; "
          f"signals trivial/polished/fallback: {counts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=25)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    bench("cpu", args.repeat)
    if torch.cuda.is_available() and ext_has_device("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}")
        bench("cuda", args.repeat)


if __name__ == "__main__":
    main()
