"""Dual solvers for the isotropic / colour TV prox compared (docs/tv_variants.md).

Runs FGP (FISTA on the dual) and Chambolle-Pock (Algorithm 2, accelerated) of
tvcli.tv_nd_solvers on one noisy photo and prints, per solver and target, the
iterations and seconds until the certified RMS error bound sqrt(2 gap / n) is
below the target. Usage: python benchmarks/tv_variants_solvers.py [image] [--size 256]
"""

from __future__ import annotations

import argparse
import time

import torch

from tvcli.io import read_image
from tvcli.tv_nd_solvers import solve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image", nargs="?", default="examples/images/astronaut.png")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--max-iter", type=int, default=3000)
    ap.add_argument("--targets", default="1e-2,1e-3,1e-4")
    ap.add_argument("--solvers", default="fgp,cp")
    ap.add_argument("--joint-only", action="store_true")
    args = ap.parse_args()
    img = torch.from_numpy(read_image(args.image)[0])
    if img.dim() == 2:
        img = img.unsqueeze(-1)
    x = img[: args.size, : args.size, :3].permute(2, 0, 1).double()
    g = torch.Generator().manual_seed(0)
    x = x + 25 / 255 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    cases = [("colour (joint)", x.unsqueeze(0)), ("iso per channel", x.unsqueeze(1))]
    for label, xk in cases[:1] if args.joint_only else cases:
        w = torch.full((xk.shape[0], 1, 1, *xk.shape[2:]), args.lam, dtype=torch.float64)
        for target in (float(t) for t in args.targets.split(",")):
            for solver in args.solvers.split(","):
                t = time.perf_counter()
                _, it, bound = solve(xk, w, "iso", target, args.max_iter, solver=solver)
                dt = time.perf_counter() - t
                print(f"{label:16s} target {target:.0e} {solver:4s} iterations "
                      f"{int(it.max()):5d} bound {float(bound.max()):.2e} time {dt:7.2f} s",
                      flush=True)


if __name__ == "__main__":
    main()
