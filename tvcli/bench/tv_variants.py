"""The ``variants`` section of ``tvcli bench``: :func:`tvcli.prox_tv` isotropic,
colour (joint) and 3-D TV against the peers that solve the same problem.

Workloads (synthetic, no data files; float64, lam = 0.1; the default size and,
in brackets, ``--quick``):

* ``iso 2-D``: a 128 x 128 [48 x 48] gray image (rectangles, a disc, N(0, 0.1^2) noise),
  isotropic TV;
* ``colour 2-D``: a 3 x 96 x 96 [3 x 32 x 32] colour image, colour (vectorial) TV,
  one l2 norm over channels and directions per pixel (``channel_dim``);
* ``iso 3-D``: a 32^3 [12^3] volume (a ball in a box plus noise), isotropic 3-D TV;
* ``aniso 3-D``: the same volume, anisotropic 3-D TV.

All use forward differences with 0 past the last slice, the convention of
scikit-image and pyproximal, so ``weight`` / ``sigma * tau`` = lam compare
directly. Arms, each the way its users call it:

* tvcli ``prox_tv`` at tol 1e-2 and 1e-3 (a certified RMS error bound);
* scikit-image ``denoise_tv_chambolle`` (iso only; with ``channel_axis`` it solves
  each channel alone, so it has no colour-TV row) at its defaults (eps 2e-4,
  200 iterations) and run to eps 1e-6 (5000 iterations);
* pyproximal ``TV(dims, sigma=lam).prox(x, 1)`` (Beck-Teboulle FGP, iso only, no
  colour coupling) at its defaults (10 iterations) and at 500 iterations;
* proxTV ``tvgen`` for the anisotropic 3-D problem (proxTV has no isotropic 2-D
  or 3-D TV and no colour TV: those rows say so).

Accuracy is the RMS and max error against tvcli run to a certified RMS bound of
1e-6 [1e-5], reported beside each time. Timings are medians of ``repeats`` runs,
the arms of one workload interleaved (round robin), all with one thread; the ratio
``x_tvcli`` is each median over tvcli tol 1e-3's on the same workload. Nothing is
asserted about timings. The sizes are small because tvcli's iso solver is pure
PyTorch today (a 256^2 / 48^3 version of this section took over 25 minutes on the
loaded 2-core build machine, mostly in the peers' tight runs and the references).
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import tvcli

__all__ = ["LAM", "WORKLOADS", "run", "workload"]

LAM = 0.1
WORKLOADS = ("iso 2-D", "colour 2-D", "iso 3-D", "aniso 3-D")
BASE = "tvcli prox_tv tol 1e-3"


def workload(name: str, quick: bool) -> tuple[np.ndarray, dict]:
    """The float64 data of a workload and how prox_tv is called on it (dims, norm,
    channel_dim)."""
    gen = np.random.default_rng(0)
    if name in ("iso 2-D", "colour 2-D"):
        n = (48 if quick else 128) if name == "iso 2-D" else (32 if quick else 96)
        yy, xx = np.mgrid[0:n, 0:n] / n
        clean = 0.2 + 0.5 * ((yy > 0.3) & (xx < 0.6)) + 0.25 * (
            ((yy - 0.6) ** 2 + (xx - 0.7) ** 2) < 0.04)
        if name == "iso 2-D":
            return clean + 0.1 * gen.standard_normal((n, n)), {"dims": (-2, -1), "norm": "iso"}
        rgb = np.stack([clean, 1 - clean, 0.5 * clean + 0.2])
        return rgb + 0.1 * gen.standard_normal(rgb.shape), {
            "dims": (-2, -1), "norm": "iso", "channel_dim": 0}
    n = 12 if quick else 32
    zz, yy, xx = np.mgrid[0:n, 0:n, 0:n] / n
    clean = 0.2 + 0.6 * (((zz - 0.5) ** 2 + (yy - 0.5) ** 2 + (xx - 0.5) ** 2) < 0.09)
    vol = clean + 0.1 * gen.standard_normal((n, n, n))
    return vol, {"dims": (-3, -2, -1), "norm": "iso" if name == "iso 3-D" else "aniso"}


def _tvcli(x: np.ndarray, how: dict, tol: float, max_iter: int = 100_000):
    t = torch.from_numpy(x)
    return lambda: tvcli.prox_tv(t, LAM, tol=tol, max_iter=max_iter, **how).numpy()


def _module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or installed but broken: the row says so
        return None


def _arms(name: str, x: np.ndarray, how: dict, quick: bool,
          peers: bool = True) -> list[tuple[str, str, object]]:
    """(arm, setting, callable or the reason it is absent) for one workload."""
    arms: list[tuple[str, str, object]] = [
        ("tvcli prox_tv tol 1e-2", "certified RMS bound 1e-2", _tvcli(x, how, 1e-2)),
        (BASE, "certified RMS bound 1e-3", _tvcli(x, how, 1e-3)),
    ]
    if not peers:
        return arms
    colour = "channel_dim" in how
    iso = how["norm"] == "iso"
    restoration = _module("skimage.restoration")
    label = "scikit-image denoise_tv_chambolle"
    if restoration is None:
        arms.append((label, "-", "not installed (pip install scikit-image)"))
    elif colour or not iso:
        arms.append((label, "-", "no such variant (isotropic per channel only)"))
    else:
        chamb = restoration.denoise_tv_chambolle
        arms.append((f"{label} defaults", "eps 2e-4, 200 it",
                     lambda: chamb(x, weight=LAM)))
        arms.append((f"{label} eps 1e-6", "eps 1e-6, 5000 it",
                     lambda: chamb(x, weight=LAM, eps=1e-6, max_num_iter=5000)))
    pyprox = _module("pyproximal")
    label = "pyproximal TV"
    if pyprox is None:
        arms.append((label, "-", "not installed (pip install pyproximal)"))
    elif colour or not iso:
        arms.append((label, "-", "no such variant (isotropic, no channel coupling)"))
    else:
        # 60 iterations: the fewest of 20, 30, ..., 100 whose actual RMS error reaches
        # 1e-3 on these workloads (2026-12-06), to set against tvcli's certified 1e-3.
        for niter in (10, 100) if quick else (10, 60, 500):
            op = pyprox.TV(dims=x.shape, sigma=LAM, niter=niter, rtol=0.0 if niter > 10 else 1e-4)
            setting = "defaults (10 it, rtol 1e-4)" if niter == 10 else f"{niter} it"
            arms.append((f"{label} {setting.split(' (')[0]}", setting,
                         lambda op=op: op.prox(x.ravel(), 1.0).reshape(x.shape)))
    ptv = _module("prox_tv")
    label = "proxTV tvgen"
    if ptv is None:
        arms.append((label, "-", "not installed (make bench-peers)"))
    elif iso:
        arms.append((label, "-", "no such variant (anisotropic only)"))
    else:
        nd = x.ndim
        arms.append((f"{label} (n_threads 1)", "defaults",
                     lambda: ptv.tvgen(x, [LAM] * nd, list(range(1, nd + 1)), [1] * nd,
                                       n_threads=1)))
    return arms


def _bench_workload(name: str, quick: bool, repeats: int, peers: bool = True) -> list[dict]:
    x, how = workload(name, quick)
    ref_tol = 1e-5 if quick else 1e-6
    ref = tvcli.prox_tv(torch.from_numpy(x), LAM, tol=ref_tol, max_iter=200_000,
                        **how).numpy()
    arms = _arms(name, x, how, quick, peers)
    live = [(a, s, f) for a, s, f in arms if callable(f)]
    times: dict[str, list[float]] = {a: [] for a, _, _ in live}
    outs: dict[str, np.ndarray] = {}
    for a, _, f in live:  # warm-up, and the output whose error is reported
        outs[a] = np.asarray(f())
    for _ in range(repeats):  # interleaved: every arm once per round
        for a, _, f in live:
            t0 = time.perf_counter()
            f()
            times[a].append((time.perf_counter() - t0) * 1e3)
    shape = list(x.shape)
    rows = []
    for a, setting, f in arms:
        row = {"workload": name, "shape": shape, "method": a, "setting": setting,
               "lam": LAM, "reference": f"tvcli prox_tv certified RMS {ref_tol:g}"}
        if callable(f):
            err = outs[a] - ref
            row.update(median_ms=statistics.median(times[a]), min_ms=min(times[a]),
                       repeats=repeats, rms_error=float(np.sqrt(np.mean(err ** 2))),
                       max_error=float(np.abs(err).max()), note="")
        else:
            row.update(median_ms=math.nan, min_ms=math.nan, repeats=0, rms_error=None,
                       max_error=None, note=str(f))
        rows.append(row)
    base = next(r["median_ms"] for r in rows if r["method"] == BASE)
    for r in rows:
        r["x_tvcli"] = r["median_ms"] / base if r["median_ms"] == r["median_ms"] else None
    return rows


def run(quick: bool = False, repeats: int = 5,
        progress: Callable[[str], None] | None = None, peers: bool = True) -> dict:
    """All workloads with one torch thread; returns ``{"status", "rows", "threads"}``.
    ``peers`` False: tvcli's rows only.

    A failure is reported in ``status`` without losing the other sections.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict] = []
    try:
        for name in WORKLOADS:
            if progress is not None:
                progress(f"variants: {name}")
            rows += _bench_workload(name, quick, repeats, peers)
        status = "ok"
    except Exception as exc:  # report, do not lose the other sections
        status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        torch.set_num_threads(before)
    return {"status": status, "threads": 1, "lam": LAM, "rows": rows}
