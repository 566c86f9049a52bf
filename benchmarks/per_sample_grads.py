"""Per-sample gradients: torch.func.vmap(grad(...)) against a loop of autograd calls,
for docs/tv_variants.md ("torch.func"). One thread; 64 samples of (3, 32, 32),
float32, a per-sample lam 0.1; medians of 7 interleaved rounds, ms.

    python benchmarks/per_sample_grads.py
"""
from __future__ import annotations

import statistics
import time

import torch

import tvcli

CASES = {
    "prox_tv1d": lambda v, lam: tvcli.prox_tv1d(v, lam),
    "prox_tv2d paper": lambda v, lam: tvcli.prox_tv2d(v, lam, iters=4),
    "prox_tv iso": lambda v, lam: tvcli.prox_tv(v, lam, norm="iso", tol=1e-3),
}


def compare(op, x: torch.Tensor, lam: torch.Tensor, g: torch.Tensor,
            rounds: int = 7) -> tuple[float, float]:
    """Medians (ms) of a loop of per-sample autograd calls and of vmap(grad)."""

    def loss(v, lam_v, gv):
        return (op(v, lam_v) * gv).sum()

    per_sample = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)))

    def loop():
        out = []
        for i in range(x.shape[0]):
            xi, li = x[i].clone().requires_grad_(), lam[i].clone().requires_grad_()
            loss(xi, li, g[i]).backward()
            out.append((xi.grad, li.grad))
        return out

    def vmapped():
        return per_sample(x, lam, g)

    arms = {"loop": loop, "vmap": vmapped}
    times: dict[str, list[float]] = {k: [] for k in arms}
    for f in arms.values():
        f()  # warm-up
    for _ in range(rounds):
        for k, f in arms.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return statistics.median(times["loop"]) * 1e3, statistics.median(times["vmap"]) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    g = torch.randn_like(x)
    lam = torch.full((64,), 0.1)
    print("| operator | loop of autograd calls, ms | vmap(grad), ms | speed-up |")
    print("|---|---|---|---|")
    for name, op in CASES.items():
        a, b = compare(op, x, lam, g)
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.1f}x |")


if __name__ == "__main__":
    main()
