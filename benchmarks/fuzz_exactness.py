"""Exactness fuzz run of the 1-D TV prox (issue 11): figures for docs/exactness.md.

    OMP_NUM_THREADS=1 python benchmarks/fuzz_exactness.py --scale full --json runs/fuzz.json

Generates the signal kinds of ``tests/fuzz_tv1d.py`` (photo Dykstra / FISTA
iterates, quantised rows, flat runs, ties, merge thresholds, huge and tiny
scales), solves them with ``solver="direct"`` and ``"pn"`` in float64 (and
float32 for the direct solver; in the full run pn and float32 take every other
batch, to halve its time), checks every result against the optimality
conditions and a subsample against the independent taut string, and prints
counts per kind, the largest residuals and the wall time. Photos come from
examples/images and, when present, ../shared/data/bsds500/images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "tests"))

import fuzz_tv1d as fz  # noqa: E402


def run(scale: str, seed: int, ref_every: int, only: list[str] | None = None,
        log=print) -> dict:
    """Runs every kind; returns {kind: {solver/dtype: stats}} plus totals."""
    rng = np.random.default_rng(seed)
    ref_rng = np.random.default_rng(seed + 1)
    results: dict = {}
    t_all = time.perf_counter()
    for name, make in fz.kinds(scale, rng).items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        configs = {
            "direct/f64": ("direct", torch.float64),
            "pn/f64": ("pn", torch.float64),
            "direct/f32": ("direct", torch.float32),
        }
        stats = {k: fz.KindStats() for k in configs}
        for i, (x, lam) in enumerate(make()):
            for key, (solver, dtype) in configs.items():
                if key != "direct/f64" and i % 2 and scale == "full":
                    continue  # full run: pn and float32 on every other batch (time)
                every = ref_every if key == "direct/f64" else 0
                fz.check_batch(stats[key], x, lam, solver=solver, dtype=dtype,
                               ref_every=every, rng=ref_rng)
        dt = time.perf_counter() - t0
        results[name] = {
            k: {
                "signals": s.signals, "samples": s.samples, "kkt_max": s.kkt_max,
                "kkt_fail": s.kkt_fail, "ref_checked": s.ref_checked, "ref_max": s.ref_max,
                "ref_fail": s.ref_fail,
                "failures": [{"lam": lam, "residual": r, "x": x.tolist()}
                             for x, lam, r in s.failures],
            }
            for k, s in stats.items()
        }
        results[name]["seconds"] = dt
        s64 = stats["direct/f64"]
        log(f"{name:10s} {s64.signals:8d} signals  direct f64 kkt max {s64.kkt_max:.2e} "
            f"fail {s64.kkt_fail}  pn kkt max {stats['pn/f64'].kkt_max:.2e} "
            f"fail {stats['pn/f64'].kkt_fail}  f32 max {stats['direct/f32'].kkt_max:.2e} "
            f"fail {stats['direct/f32'].kkt_fail}  ref {s64.ref_checked} max {s64.ref_max:.2e} "
            f"fail {s64.ref_fail}  {dt:.1f} s")
    results["_total"] = {
        "signals": sum(v["direct/f64"]["signals"] for k, v in results.items() if k != "_total"),
        "seconds": time.perf_counter() - t_all,
        "scale": scale, "seed": seed, "ref_every": ref_every,
        "photos_iterates": len(fz.photo_paths(limit=12 if scale == "full" else 2)),
        "photos_quantised": len(fz.photo_paths(limit=40 if scale == "full" else 2)),
        "torch_threads": torch.get_num_threads(),
    }
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["quick", "full"], default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-every", type=int, default=200,
                    help="compare about one signal in this many with the taut string")
    ap.add_argument("--only", nargs="*", help="kinds to run (default: all)")
    ap.add_argument("--json", help="write the figures (and failing signals) here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = run(args.scale, args.seed, args.ref_every, args.only)
    tot = res["_total"]
    print(f"total {tot['signals']} signals (per solver/dtype) in {tot['seconds']:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    bad = sum(v[k]["kkt_fail"] + v[k]["ref_fail"] for n, v in res.items() if n != "_total"
              for k in ("direct/f64", "pn/f64", "direct/f32"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
