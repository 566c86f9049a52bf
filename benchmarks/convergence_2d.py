"""Convergence curves of 2-D TV prox solvers: max-abs error vs wall time.

    PYTHONPATH=. python benchmarks/convergence_2d.py  [--out docs/convergence_2d.png]
    PYTHONPATH=. python benchmarks/convergence_2d.py --replot docs/convergence_2d.json

Image: scikit-image's 512 x 512 ``camera`` in [0, 1] (float32), lam = 0.1.
Reference: tvcli converged mode in float64 to a certified RMS bound of 1e-9
(tvcli.bench.tv2d.reference_2d). Each point is one call with a fixed iteration count
K (the best of two timings), so the time includes everything a call costs.
Writes the PNG and, next to it, the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

import tvcli
from tvcli.bench import machine_info
from tvcli.bench.tv2d import LAM, photo_512, reference_2d

KS = [1, 2, 3, 5, 8, 12, 18, 27, 40, 60, 90, 135, 200, 300]


def _timed(fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(2):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, out


def curves(x: torch.Tensor, y_ref: torch.Tensor) -> dict[str, list[tuple[int, float, float]]]:
    ref = y_ref.double().numpy()
    xn = x.double().numpy()
    methods = {
        "tvcli converged (dual FISTA)": lambda k: tvcli.prox_tv2d(x, LAM, tol=0.0, max_iter=k),
        "tvcli paper mode (Dykstra, Alg. 1)": lambda k: tvcli.prox_tv2d(x, LAM, iters=k),
    }
    try:
        import prox_tv

        methods["proxTV tv1_2d 'dr' (2 threads)"] = lambda k: torch.from_numpy(
            prox_tv.tv1_2d(xn, LAM, n_threads=2, max_iters=k, method="dr"))
        methods["proxTV tv1_2d 'pd' (Dykstra, 2 threads)"] = lambda k: torch.from_numpy(
            prox_tv.tv1_2d(xn, LAM, n_threads=2, max_iters=k, method="pd"))
    except ImportError:
        pass
    out: dict[str, list[tuple[int, float, float]]] = {}
    for name, fn in methods.items():
        pts = []
        for k in KS:
            ms, y = _timed(lambda fn=fn, k=k: fn(k))
            err = float(np.abs(y.double().numpy() - ref).max())
            pts.append((k, ms, err))
            print(f"{name:42s} K={k:4d} {ms:9.1f} ms  max-abs err {err:.2e}", flush=True)
            if ms > 20_000:
                break
        out[name] = pts
    return out


def plot(data: dict, meta: dict, path: str) -> None:
    """Left: error vs iterations (independent of machine load). Right: error vs wall
    time per call (what a user waits; inflated when the shared machine is busy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_k, ax_t) = plt.subplots(1, 2, figsize=(12, 5))
    for name, pts in data.items():
        ax_k.loglog([p[0] for p in pts], [p[2] for p in pts], marker="o", ms=3, label=name)
        ax_t.loglog([p[1] for p in pts], [p[2] for p in pts], marker="o", ms=3, label=name)
    for ax in (ax_k, ax_t):
        for tgt in (1e-3, 1e-4):
            ax.axhline(tgt, color="gray", lw=0.7, ls="--")
        ax.set_ylabel("max |Y - Y*| (intensity units, image in [0, 1])")
        ax.grid(True, which="both", lw=0.3)
    ax_t.axvline(50, color="tab:red", lw=0.7, ls=":")
    ax_t.axvline(150, color="tab:red", lw=0.7, ls=":")
    ax_k.set_xlabel("iterations (each: one row pass + one column pass)")
    ax_t.set_xlabel("wall time per call (ms); red: the 50 / 150 ms targets")
    ax_k.legend(fontsize=8)
    fig.suptitle(f"512x512 camera, lam = {LAM}: {meta['cores']} cores, 1-min load "
                 f"{meta['loadavg_1m']} -> {meta.get('load_end', '?')} (shared machine), "
                 f"{meta['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                      "convergence_2d.png"))
    parser.add_argument("--replot", metavar="JSON", help="only redraw from saved numbers")
    args = parser.parse_args()
    if args.replot:
        with open(args.replot) as fh:
            saved = json.load(fh)
        plot(saved["points_k_ms_err"], saved["machine"], args.out)
        return
    meta = machine_info()
    x, name = photo_512()
    y_ref, ref_meta = reference_2d(x, LAM)
    data = curves(x, y_ref)
    meta["load_end"] = round(os.getloadavg()[0], 2)
    plot(data, meta, args.out)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
        json.dump({"machine": meta, "image": name, "lam": LAM, "reference": ref_meta,
                   "points_k_ms_err": data}, fh, indent=1)


if __name__ == "__main__":
    main()
