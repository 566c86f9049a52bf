"""The full solver benchmark behind ``tvcli bench`` (extends :mod:`tvcli.bench.tv1d`).

Sections (all in one process, on the same data, peers called the way their
users call them):

table1
    The paper's Table 1 workload (DESIGN.md section 6): 256 x 32 x 32 float32
    signals of length 32 (8192 signals), unit step + N(0, 0.1^2), lam = 1.
    For every device (cpu; cuda when present) and every tvcli solver: forward,
    the backward op (grad_x and grad_lam for an upstream gradient g; it depends
    only on the output, so it is one entry per device) and forward + backward
    through autograd. Peers when installed:

    * proxTV ``tv1_1d`` in a per-row Python loop, float64 (its only dtype), its
      default method ('hybridtautstring') and 'pn' (the paper's PN), and its
      batched ``tvgen``; forward only (proxTV has no backward).
    * cvxpylayers (a generic conic solver with implicit differentiation): its
      default backend (diffcp + SCS), float64, with SCS ``eps = 1e-7`` because
      looser tolerances give visibly wrong gradients (DESIGN.md section 8; the
      error at the default tolerance is measured and reported too). It is timed
      on a smaller batch (256 signals; 16 with --quick) and the time is
      *extrapolated linearly* to 8192 signals - every row says so. The layer is
      built (problem canonicalised) once, outside the timing.

    Every timing is the median of ``repeats`` (>= 25 by default) runs after
    warm-up, with the interquartile range and the minimum; the few peer entries
    that take seconds per run use fewer runs and say how many.

2d
    The 512 x 512 time-to-accuracy comparison from ``tvcli.bench.tv2d.run(quick)``
    when that module exists ("not available" otherwise).

length
    One signal of length N = 32 ... 10^6 (unit step + noise, lam = 1): tvcli
    forward (each solver) and backward, proxTV ``tv1_1d`` default and 'pn'.

batch
    B = 1 ... 65536 signals of length 32: tvcli forward and backward, proxTV
    row loop and ``tvgen``.

variants
    :func:`tvcli.prox_tv` isotropic, colour and 3-D TV against scikit-image's
    chambolle, pyproximal's TV prox and proxTV where each has the variant, one
    thread, accuracy beside time (:mod:`tvcli.bench.tv_variants`).

Timings are never asserted anywhere: the machines are shared and noisy. The
load average at the start and the end of the run is recorded next to them.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict

import torch

import tvcli
from tvcli._extension import ext_has_device
from tvcli.bench.tv1d import Timing, machine_info, sweep_signal, table1_workload, time_call

__all__ = ["run", "print_report", "plot", "SECTIONS"]

SECTIONS = ("table1", "2d", "length", "batch", "variants", "layer", "converged", "large")
LAM = 1.0
CVX_EPS = 1e-7


# --------------------------------------------------------------------- helpers


# Devices the run is restricted to (run(devices=...)); None: cpu and cuda if present.
_ONLY_DEVICES: tuple[str, ...] | None = None


def _devices() -> list[str]:
    if _ONLY_DEVICES is not None:
        return list(_ONLY_DEVICES)
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _engine(device: str) -> str:
    return "C++" if ext_has_device(device) else "pure-PyTorch fallback"


def _synced(fn: Callable[[], object], device: str) -> Callable[[], object]:
    """CUDA launches are asynchronous: time until the work is done."""
    if device == "cpu":
        return fn

    def wrapped() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return wrapped


def _solvers(device: str) -> list[str]:
    ok = []
    for s in tvcli.SOLVERS:
        try:
            tvcli.prox_tv1d(torch.zeros(2, 3, device=device), 1.0, solver=s)
            ok.append(s)
        except Exception:  # solver not built for this device
            pass
    return ok


def _timed(name: str, fn: Callable[[], object], repeats: int, note: str = "") -> Timing:
    """``time_call`` with fewer runs (>= 5, and said in the row) for entries that
    take over 0.2 s per call, so that one slow peer cannot stretch a sweep to
    many minutes."""
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    rep = repeats if one < 0.2 else min(repeats, max(5, repeats // 5))
    if rep < repeats:
        note = (note + "; " if note else "") + f"slow entry: {rep} runs"
    return time_call(name, fn, rep, warmup=1 if one < 0.2 else 0, note=note)


def _row(t: Timing, **fields: object) -> dict:
    d = asdict(t)
    extra = d.pop("extra")
    d.update(fields)
    d.update(extra)
    return d


def _skipped(name: str, note: str, **fields: object) -> dict:
    nan = float("nan")
    return _row(Timing(name, nan, nan, nan, nan, 0, note), **fields)


def peer_versions() -> dict[str, str]:
    """Installed peers and their versions; "not installed", or "unusable (...)"
    when the package is there but does not import."""
    from importlib import metadata

    out = {}
    for label, dist in (("proxTV", "prox-tv-sdist"), ("cvxpylayers", "cvxpylayers"),
                        ("pyproximal", "pyproximal")):
        try:
            out[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[label] = "not installed"
    importable = {"proxTV": _proxtv() is not None, "cvxpylayers": _cvxpylayers_ok(),
                  "pyproximal": _pyproximal_ok()}
    for label, ok in importable.items():
        if ok and out[label] == "not installed":
            out[label] = "installed"  # e.g. built from source under another name
        elif not ok and out[label] != "not installed":
            out[label] = f"unusable (version {out[label]} does not import)"
    return out


def _cvxpylayers_ok() -> bool:
    try:
        import cvxpy  # noqa: F401
        import cvxpylayers.torch  # noqa: F401
    except Exception:
        return False
    return True


def _pyproximal_ok() -> bool:
    try:
        import pyproximal  # noqa: F401
    except Exception:
        return False
    return True


def _proxtv():
    try:
        import prox_tv  # type: ignore[import-not-found]

        return prox_tv
    except Exception:
        return None


# --------------------------------------------------------------------- table 1


def table1(repeats: int = 25, shape: tuple[int, ...] = (256, 32, 32), peers: bool = True,
           cvx_batch: int = 256) -> list[dict]:
    """Rows for the Table 1 workload (see the module docstring)."""
    x_cpu = table1_workload(shape)
    g_cpu = torch.randn(x_cpu.shape, generator=torch.Generator().manual_seed(1))
    n_sig = x_cpu.numel() // x_cpu.shape[-1]
    rows: list[dict] = []
    default_threads = torch.get_num_threads()
    for dev in _devices():
        # On the CPU also one thread when torch uses more: on a loaded machine a
        # parallel loop waits for its slowest thread to be scheduled, and the
        # difference is worth seeing next to the default.
        settings = [default_threads] + ([1] if dev == "cpu" and default_threads > 1 else [])
        for nt in settings if dev == "cpu" else [None]:
            with torch_threads(nt if nt != default_threads else None):
                rows += _table1_tvcli(x_cpu, g_cpu, dev, repeats, nt)
    if peers:
        with _restore_threads():
            rows += _table1_proxtv(x_cpu, repeats)
        with _restore_threads():
            rows += _table1_cvxpylayers(x_cpu, g_cpu, repeats, cvx_batch, n_sig)
    _add_ratios(rows, default_threads)
    return rows


@contextlib.contextmanager
def _restore_threads():
    """Puts torch's thread count back after a peer ran: proxTV's ``tvgen`` calls
    ``omp_set_num_threads(n_threads)`` (default 1), which silently changes
    torch's intra-op thread count for the whole process."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _table1_tvcli(x_cpu: torch.Tensor, g_cpu: torch.Tensor, dev: str, repeats: int,
                  threads: int | None) -> list[dict]:
    """tvcli's rows of Table 1 on one device (and CPU thread count)."""
    rows: list[dict] = []
    x, g = x_cpu.to(dev), g_cpu.to(dev)
    eng = _engine(dev) + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
    fields = {"impl": "tvcli", "device": dev, "threads": threads}
    for s in _solvers(dev):
        t = time_call(f"tvcli {s} forward", _synced(
            lambda s=s, x=x: tvcli.prox_tv1d(x, LAM, solver=s), dev), repeats, note=eng)
        rows.append(_row(t, solver=s, phase="forward", **fields))
    y = tvcli.prox_tv1d(x, LAM)
    if ext_has_device(dev):
        lam_b = torch.full((*x.shape[:-1], 1), LAM, device=dev)
        t = time_call("tvcli backward (op)", _synced(
            lambda: torch.ops.tvcli.prox_tv1d_backward(g, y, lam_b, y.dim() - 1), dev),
            repeats, note=f"{eng}; grad_x and grad_lam from y, same for every solver")
        rows.append(_row(t, solver="any", phase="backward", **fields))
    for s in _solvers(dev):
        xr = x.clone().requires_grad_(True)
        lam_t = torch.tensor(LAM, device=dev, requires_grad=True)

        def fwd_bwd(s: str = s, xr: torch.Tensor = xr, lam_t: torch.Tensor = lam_t) -> None:
            xr.grad = None
            lam_t.grad = None
            tvcli.prox_tv1d(xr, lam_t, solver=s).backward(g)

        t = time_call(f"tvcli {s} forward+backward", _synced(fwd_bwd, dev), repeats,
                      note=f"{eng}; autograd, grads for x and lam")
        rows.append(_row(t, solver=s, phase="forward+backward", **fields))
    return rows


def _table1_proxtv(x: torch.Tensor, repeats: int) -> list[dict]:
    ptv = _proxtv()
    if ptv is None:
        status = peer_versions()["proxTV"]
        return [_skipped("proxTV", f"{status} (pip install prox-tv-sdist)", impl="proxTV",
                         solver="-", device="cpu", phase="forward")]
    import numpy as np

    rows2d = x.reshape(-1, x.shape[-1]).to(torch.float64).numpy()
    ref = tvcli.prox_tv1d(torch.from_numpy(rows2d), LAM).numpy()
    out = []
    rep = max(5, repeats // 5)  # each run is ~0.1-0.3 s of Python calls
    for method in ("hybridtautstring", "pn"):
        def loop(m: str = method) -> None:
            for r in rows2d:
                ptv.tv1_1d(r, LAM, method=m)

        t = time_call(f"proxTV tv1_1d '{method}' row loop", loop, rep, warmup=1,
                      note="per-row Python calls, float64, forward only")
        got = np.stack([ptv.tv1_1d(r, LAM, method=method) for r in rows2d[:512]])
        t.extra["max_abs_diff_vs_tvcli"] = float(np.abs(got - ref[:512]).max())
        out.append(_row(t, impl="proxTV", solver=method, device="cpu", phase="forward"))
    t = time_call("proxTV tvgen (batched)", lambda: ptv.tvgen(rows2d, [LAM], [2], [1]),
                  repeats, note=f"one call on the {tuple(rows2d.shape)} matrix, float64, "
                                "default n_threads=1 (it sets the process's OpenMP threads; "
                                "torch's are restored after)")
    t.extra["max_abs_diff_vs_tvcli"] = float(np.abs(ptv.tvgen(rows2d, [LAM], [2], [1])
                                                - ref).max())
    out.append(_row(t, impl="proxTV", solver="tvgen", device="cpu", phase="forward"))
    return out


def _cvx_layer(n: int):
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    xp = cp.Parameter(n)
    lp = cp.Parameter(nonneg=True)
    y = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(y - xp) + lp * cp.norm1(cp.diff(y))))
    return CvxpyLayer(prob, parameters=[xp, lp], variables=[y])


def _table1_cvxpylayers(x: torch.Tensor, g: torch.Tensor, repeats: int, batch: int,
                        n_sig: int) -> list[dict]:
    status = peer_versions()["cvxpylayers"]
    if status == "not installed" or status.startswith("unusable"):
        return [_skipped("cvxpylayers", f"{status} (pip install cvxpylayers)",
                         impl="cvxpylayers", solver="-", device="cpu", phase="forward")]
    n = x.shape[-1]
    batch = min(batch, n_sig)
    xb = x.reshape(-1, n)[:batch].to(torch.float64)
    gb = g.reshape(-1, n)[:batch].to(torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SCS "Solved/Inaccurate" chatter; accuracy is measured
        layer = _cvx_layer(n)

        def solve(eps: float | None):
            xr = xb.clone().requires_grad_(True)
            lam = torch.full((batch,), LAM, dtype=torch.float64, requires_grad=True)
            t0 = time.perf_counter()
            (y,) = layer(xr, lam, solver_args={} if eps is None else {"eps": eps})
            t1 = time.perf_counter()
            gx, gl = torch.autograd.grad((y * gb).sum(), [xr, lam])
            t2 = time.perf_counter()
            return (t1 - t0) * 1e3, (t2 - t1) * 1e3, y.detach(), gx, gl

        # Reference: tvcli's exact values and gradients on the same signals.
        xr = xb.clone().requires_grad_(True)
        lam_r = torch.full((batch, 1), LAM, dtype=torch.float64, requires_grad=True)
        y_ref = tvcli.prox_tv1d(xr, lam_r)
        gx_ref, gl_ref = torch.autograd.grad((y_ref * gb).sum(), [xr, lam_r])

        def errors(y, gx, gl) -> dict:
            return {"max_abs_err_y": float((y - y_ref).abs().max()),
                    "max_abs_err_grad_x": float((gx - gx_ref).abs().max()),
                    "max_abs_err_grad_lam": float((gl - gl_ref[:, 0]).abs().max())}

        default_err = errors(*solve(None)[2:])
        solve(CVX_EPS)  # warm-up
        rep = max(3, min(repeats, 25))
        fw, bw = [], []
        for _ in range(rep):
            f, b, y, gx, gl = solve(CVX_EPS)
            fw.append(f)
            bw.append(b)
        tight_err = errors(y, gx, gl)
    scale = n_sig / batch
    rows = []
    for phase, samples in (("forward", fw), ("backward", bw)):
        t = _timing_from(f"cvxpylayers {phase} (x{scale:g} extrapolated)", samples, scale,
                         note=f"measured on {batch} signals, scaled linearly to {n_sig}; "
                              f"diffcp+SCS eps={CVX_EPS:g}, float64")
        t.extra.update(measured_batch=batch, measured_median_ms=t.median_ms / scale,
                       extrapolated=True)
        if phase == "backward":
            t.extra.update(tight_err)
            t.extra.update({f"default_eps_{k}": v for k, v in default_err.items()})
        rows.append(_row(t, impl="cvxpylayers", solver="diffcp-scs", device="cpu", phase=phase))
    return rows


def _timing_from(name: str, samples: list[float], scale: float, note: str) -> Timing:
    import statistics

    s = sorted(v * scale for v in samples)
    q = statistics.quantiles(s, n=4) if len(s) > 1 else s * 3
    return Timing(name, statistics.median(s), q[0], q[2], s[0], len(s), note)


def _add_ratios(rows: list[dict], nt: int) -> None:
    """``x_tvcli``: median over tvcli's CPU default ('direct', torch's default thread
    count) median, same phase;
    peers' forward rows are compared with tvcli's forward, backward with backward."""
    base = {r["phase"]: r["median_ms"] for r in rows
            if r["impl"] == "tvcli" and r["device"] == "cpu" and r["solver"] in ("direct", "any")
            and r.get("threads") in (None, nt)}
    for r in rows:
        b = base.get(r["phase"])
        r["x_tvcli"] = r["median_ms"] / b if b and r["median_ms"] == r["median_ms"] else None


# --------------------------------------------------------------------- sweeps


def _sweep_tvcli(x: torch.Tensor, repeats: int, **fields: object) -> list[dict]:
    """tvcli forward (each solver) and backward op on ``x`` (signals along the last
    dim), at torch's thread count and, when that is above 1, at one thread too
    (rows marked ``variant='1 thread'``)."""
    rows: list[dict] = []
    default = torch.get_num_threads()
    for nt in [default] + ([1] if default > 1 else []):
        extra = {"threads": nt, **({"variant": "1 thread"} if nt != default else {})}
        with torch_threads(nt if nt != default else None):
            for s in _solvers("cpu"):
                t = _timed(f"tvcli {s} forward",
                           lambda s=s: tvcli.prox_tv1d(x, LAM, solver=s), repeats)
                rows.append(_row(t, impl="tvcli", solver=s, phase="forward", **fields,
                                 **extra))
            if ext_has_device("cpu"):
                y = tvcli.prox_tv1d(x, LAM)
                g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
                lam_b = torch.full((*x.shape[:-1], 1), LAM)
                t = _timed("tvcli backward (op)", lambda y=y, g=g, lam_b=lam_b:
                           torch.ops.tvcli.prox_tv1d_backward(g, y, lam_b, x.dim() - 1),
                           repeats)
                rows.append(_row(t, impl="tvcli", solver="any", phase="backward", **fields,
                                 **extra))
    return rows


def length_sweep(lengths: list[int], repeats: int = 25, peers: bool = True) -> list[dict]:
    """One noisy-step signal of each length N at lam = 1 (forward, backward; proxTV)."""
    rows = []
    ptv = _proxtv() if peers else None
    for n in lengths:
        x = sweep_signal("step", n)
        rows += _sweep_tvcli(x, repeats, n=n)
        if ptv is not None:
            xd = x.to(torch.float64).numpy()
            for m in ("hybridtautstring", "pn"):
                t = _timed(f"proxTV tv1_1d '{m}'", lambda m=m, xd=xd: ptv.tv1_1d(xd, LAM,
                                                                                   method=m),
                           repeats)
                rows.append(_row(t, impl="proxTV", solver=m, phase="forward", n=n))
    for r in rows:
        r["ns_per_sample"] = r["median_ms"] * 1e6 / r["n"]
    return rows


def batch_sweep(batches: list[int], n: int = 32, repeats: int = 25,
                peers: bool = True) -> list[dict]:
    """B signals of length ``n`` (Table 1 signals) at lam = 1."""
    rows = []
    ptv = _proxtv() if peers else None
    for b in batches:
        x = table1_workload((b, n))
        rows += _sweep_tvcli(x, repeats, batch=b)
        if ptv is not None:
            xd = x.to(torch.float64).numpy()

            def loop(xd=xd) -> None:
                for r in xd:
                    ptv.tv1_1d(r, LAM)

            t = _timed("proxTV tv1_1d row loop", loop, repeats,
                       note="default method, per-row Python calls")
            rows.append(_row(t, impl="proxTV", solver="hybridtautstring", phase="forward",
                             batch=b))
            with _restore_threads():
                t = _timed("proxTV tvgen", lambda xd=xd: ptv.tvgen(xd, [LAM], [2], [1]),
                           repeats, note="default n_threads=1")
            rows.append(_row(t, impl="proxTV", solver="tvgen", phase="forward", batch=b))
    for r in rows:
        r["us_per_signal"] = r["median_ms"] * 1e3 / r["batch"]
    return rows


# --------------------------------------------------------------------- 2-D


def bench_2d(quick: bool, peers: bool = True) -> dict:
    """The 2-D section: ``tvcli.bench.tv2d.bench_photo`` (512 x 512 time-to-accuracy
    and peers at their defaults) and ``bench_layer`` (TVLayer forward+backward),
    as rows with the keys method, target, ms, max_abs_error, setting, note. Any
    failure is reported in ``status`` without losing the other sections.
    """
    try:
        # import_module (not `from tvcli import`) so that sys.modules decides
        bench2d = importlib.import_module("tvcli.bench.tv2d")
    except ImportError:
        return {"status": "not available (tvcli.bench.tv2d is not part of this build)", "rows": []}
    try:
        photo = bench2d.bench_photo(3 if quick else 5, peers=peers, quick=quick)
        rows = [{"method": r["method"], "target": r["target"], "ms": r["ms"],
                 "max_abs_error": r["error"], "setting": r["setting"], "note": r["note"]}
                for r in photo.get("to_target", [])]
        rows += [{"method": r["method"], "target": "-", "ms": r["ms"],
                  "max_abs_error": r["max_abs_error"], "setting": "defaults",
                  "note": r.get("problem", "")} for r in photo.get("peers", [])]
        layer = getattr(bench2d, "bench_layer", None)
        if layer is not None:
            shape = (4, 8, 32, 32) if quick else (64, 64, 32, 32)
            for t in layer(3 if quick else 5, shape=shape):
                rows.append({"method": t.name, "target": "-", "ms": t.median_ms,
                             "max_abs_error": None, "setting": str(shape), "note": t.note})
        return {"status": "ok", "source": "tvcli.bench.tv2d.bench_photo",
                "image": photo.get("image"), "shape": photo.get("shape"),
                "lam": photo.get("lam"), "rows": rows}
    except Exception as exc:  # report, do not lose the other sections
        return {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                "rows": []}


# --------------------------------------------------------------------- device workloads

# Issue 12's device workloads (docs/gpu.md): the K = 4 layer, converged 2-D on a
# 512 x 512 image and a batch of them, one 4096 x 4096 image. Sections "layer",
# "converged", "large"; every row names the route the 2-D operator took (the
# fused op of the compiled engine, or the Python loop over the 1-D op).

WORKLOAD_LAM = 0.1


def workload_image(h: int, w: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """(batch, h, w) float32 test images in [0, 1]: rectangles and a disc of
    different grey levels plus N(0, 0.1^2) noise (synthetic: no data files)."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, h).reshape(h, 1)
    xx = torch.linspace(0, 1, w).reshape(1, w)
    clean = 0.2 + 0.5 * ((yy > 0.3) & (xx < 0.6)).float()
    clean = clean + 0.25 * (((yy - 0.6) ** 2 + (xx - 0.7) ** 2) < 0.04).float()
    noise = 0.1 * torch.randn(batch, h, w, generator=g)
    return (clean + noise).float()


def _route(device: str, op: str) -> str:
    return "fused op" if ext_has_device(device, op) else "python loop over prox_tv1d"


def _workload_row(t: Timing, device: str, workload: str, shape: tuple[int, ...],
                  route: str, images: int, **fields: object) -> dict:
    row = _row(t, impl="tvcli", device=device, workload=workload, shape=list(shape),
               route=route, **fields)
    row["images_per_s"] = images / (t.median_ms / 1e3) if t.median_ms == t.median_ms else None
    return row


def bench_layer_workload(repeats: int, quick: bool) -> list[dict]:
    """TVLayer(C, iters=4) forward and forward + backward on (N, C, H, W) float32."""
    from tvcli.nn import TVLayer

    shape = (4, 8, 32, 32) if quick else (64, 64, 32, 32)
    rows = []
    x_cpu = workload_image(shape[2], shape[3], shape[0] * shape[1]).reshape(shape)
    for dev in _devices():
        layer = TVLayer(shape[1], iters=4, lam_init=0.05).to(dev)
        x = x_cpu.to(dev)
        xg = x.clone().requires_grad_(True)

        def fwd(layer=layer, x=x):
            with torch.no_grad():
                return layer(x)

        def fwd_bwd(layer=layer, xg=xg):
            layer(xg).sum().backward()

        route = _route(dev, "prox_tv2d_dykstra")
        for phase, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
            t = _timed(f"TVLayer K=4 {phase}", _synced(fn, dev), repeats)
            rows.append(_workload_row(t, dev, f"layer K=4 {phase}", shape, route,
                                      shape[0] * shape[1], phase=phase))
    return rows


def _converged_rows(x_cpu: torch.Tensor, tols: tuple[float, ...], workload: str,
                    repeats: int) -> list[dict]:
    rows = []
    for dev in _devices():
        x = x_cpu.to(dev)
        for tol in tols:
            def call(x=x, tol=tol):
                return tvcli.prox_tv2d(x, WORKLOAD_LAM, tol=tol, max_iter=5000,
                                       return_info=True)

            _y, info = call()
            t = _timed(f"{workload} tol {tol:g}", _synced(call, dev), repeats)
            rows.append(_workload_row(
                t, dev, workload, tuple(x.shape), _route(dev, "prox_tv2d_solve"), x.shape[0],
                phase="forward", tol=tol, lam=WORKLOAD_LAM,
                iterations_max=int(info.iterations.max()),
                error_bound_max=float(info.error_bound.max()),
                converged=bool(info.converged.all())))
    return rows


def bench_converged_workload(repeats: int, quick: bool) -> list[dict]:
    """Converged 2-D: one image to 1e-3 and 1e-4, a batch of 64 to 1e-3."""
    n, batch = (64, 4) if quick else (512, 64)
    rows = _converged_rows(workload_image(n, n, 1), (1e-3, 1e-4), f"converged {n}x{n}",
                           repeats)
    rows += _converged_rows(workload_image(n, n, batch, seed=1), (1e-3,),
                            f"converged {batch} x {n}x{n}", max(3, repeats // 5))
    return rows


def bench_large_workload(repeats: int, quick: bool) -> list[dict]:
    """One 4096 x 4096 image: paper mode K = 4 (forward) and converged to 1e-3."""
    n = 128 if quick else 4096
    x_cpu = workload_image(n, n, 1, seed=2)
    rows = []
    reps = max(3, repeats // 5)
    for dev in _devices():
        x = x_cpu.to(dev)
        t = _timed(f"paper K=4 {n}x{n}", _synced(
            lambda x=x: tvcli.prox_tv2d(x, WORKLOAD_LAM, iters=4), dev), reps)
        rows.append(_workload_row(t, dev, f"paper K=4 {n}x{n}", tuple(x.shape),
                                  _route(dev, "prox_tv2d_dykstra"), 1, phase="forward"))
    rows += _converged_rows(x_cpu, (1e-3,), f"converged {n}x{n}", reps)
    return rows


# --------------------------------------------------------------------- driver


def run(quick: bool = False, repeats: int = 25, peers: bool = True,
        sections: tuple[str, ...] = SECTIONS, cvx_batch: int = 256,
        progress: Callable[[str], None] | None = None,
        devices: tuple[str, ...] | None = None) -> dict:
    """Runs the selected sections on ``devices`` (default: cpu, and cuda when
    present); returns one JSON-serialisable dict."""
    global _ONLY_DEVICES
    _ONLY_DEVICES = devices
    try:
        return _run(quick, repeats, peers, sections, cvx_batch, progress)
    finally:
        _ONLY_DEVICES = None


def _run(quick: bool, repeats: int, peers: bool, sections: tuple[str, ...], cvx_batch: int,
         progress: Callable[[str], None] | None) -> dict:
    say = progress or (lambda s: None)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t_start = time.perf_counter()
    result: dict = {
        "machine": machine_info(),
        "settings": {"quick": quick, "repeats": repeats, "lam": LAM, "peers": peers,
                     "sections": list(sections), "cvxpylayers_eps": CVX_EPS,
                     "devices": _devices(),
                     "engines": {d: _engine(d) for d in _devices()}},
        "peers": peer_versions() if peers else {"proxTV": "skipped", "cvxpylayers": "skipped",
                                                 "pyproximal": "skipped"},
    }
    if "table1" in sections:
        say("table1")
        shape = (4, 8, 32) if quick else (256, 32, 32)
        result["settings"]["table1_shape"] = list(shape)
        result["table1"] = table1(repeats, shape, peers, cvx_batch=16 if quick else cvx_batch)
    if "2d" in sections:
        say("2d")
        result["table2d"] = bench_2d(quick, peers)
    if "length" in sections:
        say("length sweep")
        lengths = [32, 1000] if quick else [32, 100, 1_000, 10_000, 100_000, 1_000_000]
        result["length_sweep"] = length_sweep(lengths, repeats, peers)
    if "batch" in sections:
        say("batch sweep")
        batches = [1, 16] if quick else [1, 16, 256, 4096, 65536]
        result["batch_sweep"] = batch_sweep(batches, 32, repeats, peers)
    if "variants" in sections:
        from tvcli.bench import tv_variants

        # The pure-PyTorch iso solver takes ~1 s per call at the full size: at most 5
        # interleaved rounds (medians of 5), 3 with --quick.
        with _restore_threads():
            result["variants"] = tv_variants.run(quick, min(repeats, 3 if quick else 5), say,
                                                 peers=peers)
    for name, fn in (("layer", bench_layer_workload), ("converged", bench_converged_workload),
                     ("large", bench_large_workload)):
        if name in sections:
            say(name)
            try:
                result[name] = fn(repeats, quick)
            except Exception as exc:  # report, do not lose the other sections
                result[name] = [{"workload": name, "status":
                                 f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"}]
    result["machine"]["loadavg_1m_start"] = round(load0, 2)
    result["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2) \
        if hasattr(os, "getloadavg") else float("nan")
    result["machine"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


# --------------------------------------------------------------------- output


def _ms(v: float | None) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:.3g}" if v < 10 else f"{v:,.1f}"


def print_report(result: dict, console=None) -> None:
    """Rich tables of a :func:`run` result."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    if console is None and not con.is_terminal and con.width < 120:
        con = Console(width=120)  # piped to a file: do not wrap at 80 columns
    m = result["machine"]
    con.print(f"{m['date']} | {m['cpu']} | {m['cores']} cores, torch threads "
              f"{m['torch_threads']} | load {m.get('loadavg_1m_start', '?')} -> "
              f"{m.get('loadavg_1m_end', '?')} | torch {m['torch']} | tvcli {m['tvcli']}")
    con.print("peers: " + ", ".join(f"{k} {v}" for k, v in result["peers"].items()))
    if "table1" in result:
        # Notes go below the table as numbered footnotes: they are long and a
        # note column would squeeze the numbers on an 80-column terminal.
        shp = result["settings"].get("table1_shape", [256, 32, 32])
        t = Table(title=f"Table 1 workload: {' x '.join(map(str, shp))} float32 "
                        f"({math.prod(shp) // shp[-1]} signals of length {shp[-1]}), lam = 1")
        for c in ("what", "median ms", "IQR ms", "min ms", "runs", "x tvcli", "note"):
            t.add_column(c, justify="left" if c == "what" else "right")
        notes: list[str] = []
        for r in result["table1"]:
            errs = "; ".join(f"{k}={v:.2g}" for k, v in r.items()
                             if k.startswith(("max_abs", "default_eps")) and _num(v))
            note = r["note"] + (f"; {errs}" if errs else "")
            if note and note not in notes:
                notes.append(note)
            ratio = r.get("x_tvcli")
            dev = r["device"] + (f" x{r['threads']}" if r.get("threads") else "")
            what = f"{r['impl']} {r['solver']} {dev} {r['phase']}".replace(" any ", " ")
            t.add_row(what, _ms(r["median_ms"]), f"{_ms(r['q25_ms'])}-{_ms(r['q75_ms'])}",
                      _ms(r["min_ms"]), str(r["repeats"]),
                      "-" if ratio is None else f"{ratio:.3g}",
                      f"[{notes.index(note) + 1}]" if note else "")
        con.print(t)
        for i, note in enumerate(notes, 1):
            con.print(f"  [{i}] {note}", highlight=False)
    if "table2d" in result:
        sec = result["table2d"]
        if sec["status"] != "ok" or not sec["rows"]:
            con.print(f"2-D time-to-accuracy: {sec['status']}")
        else:
            keys = list(dict.fromkeys(k for r in sec["rows"] for k in r))
            t = Table(title="2-D time-to-accuracy (tvcli.bench.tv2d)")
            for k in keys:
                t.add_column(k)
            for r in sec["rows"]:
                t.add_row(*[_fmt_any(r.get(k)) for k in keys])
            con.print(t)
    for key, axis, title in (("length_sweep", "n", "Length sweep: one signal of length N, "
                                                     "median ms"),
                             ("batch_sweep", "batch", "Batch sweep: B signals of length 32, "
                                                      "median ms")):
        if key not in result:
            continue
        rows = result[key]
        cols = list(dict.fromkeys(row_label(r) for r in rows))
        t = Table(title=title)
        t.add_column(axis.upper() if axis == "n" else "B", justify="right")
        for c in cols:
            t.add_column(c, justify="right")
        t.add_column("proxTV / tvcli fwd", justify="right")
        for v in dict.fromkeys(r[axis] for r in rows):
            cell = {row_label(r): r["median_ms"] for r in rows if r[axis] == v}
            ours = cell.get("tvcli direct forward")
            peer = cell.get("proxTV hybridtautstring forward")
            ratio = f"{peer / ours:.3g}" if ours and peer else "-"
            t.add_row(f"{v:,}", *[_ms(cell.get(c)) for c in cols], ratio)
        con.print(t)
    if "variants" in result:
        _print_variants(con, result["variants"])
    for key in ("layer", "converged", "large"):
        if key not in result:
            continue
        t = Table(title=f"Device workload: {key}")
        cols = ("device", "workload", "shape", "route", "median_ms", "repeats",
                "images_per_s", "iterations_max", "error_bound_max", "status")
        for c in cols:
            t.add_column(c)
        for r in result[key]:
            t.add_row(*[_fmt_any(r.get(c)) for c in cols])
        con.print(t)


def _print_variants(con, sec: dict) -> None:
    """The ``variants`` section: one table per workload, time and error side by side."""
    from rich.table import Table

    if sec["status"] != "ok":
        con.print(f"TV variants: {sec['status']}")
    for wl in dict.fromkeys(r["workload"] for r in sec["rows"]):
        rows = [r for r in sec["rows"] if r["workload"] == wl]
        t = Table(title=f"TV variants: {wl} {'x'.join(map(str, rows[0]['shape']))} float64, "
                        f"lam {sec['lam']}, {sec['threads']} thread; errors against "
                        f"{rows[0]['reference']}")
        for c in ("method", "setting", "median ms", "x tvcli 1e-3", "RMS error",
                  "max error", "note"):
            t.add_column(c, justify="left" if c in ("method", "setting", "note") else "right")
        for r in rows:
            ratio = r.get("x_tvcli")
            t.add_row(r["method"], r["setting"], _ms(r["median_ms"]),
                      "-" if ratio is None else f"{ratio:.3g}",
                      "-" if r["rms_error"] is None else f"{r['rms_error']:.1e}",
                      "-" if r["max_error"] is None else f"{r['max_error']:.1e}", r["note"])
        con.print(t)


def _num(v: object) -> bool:
    """A measured time (JSON null / NaN mark entries that were not measured)."""
    return isinstance(v, (int, float)) and v == v


def row_label(r: dict) -> str:
    """'impl solver phase' (+ ' [variant]'), the column / legend name of a sweep row."""
    lab = f"{r['impl']} {r['solver']} {r['phase']}".replace(" any ", " ")
    return lab + (f" [{r['variant']}]" if r.get("variant") else "")



def _fmt_any(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def plot(result: dict, path: str) -> None:
    """Writes a PNG: length sweep, batch sweep and speed-up over proxTV.

    Raises:
        ImportError: matplotlib is not installed (``pip install tvcli[plot]``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 6.2))
    for ax, key, axis, xlabel in ((axes[0], "length_sweep", "n", "signal length N"),
                                  (axes[1], "batch_sweep", "batch",
                                   "number of signals B (length 32)")):
        rows = result.get(key, [])
        for lab in dict.fromkeys(row_label(r) for r in rows):
            pts = sorted((r[axis], r["median_ms"]) for r in rows if row_label(r) == lab
                         and _num(r["median_ms"]))
            if pts:
                style = (":" if "[" in lab else "-") if lab.startswith("tvcli") else "--"
                ax.plot(*zip(*pts, strict=True), style, marker="o", label=lab)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="median time (ms)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_title("one signal, lam = 1")
    axes[1].set_title("Table 1 signals, lam = 1")
    ax = axes[2]
    for key, axis, lab in (("length_sweep", "n", "vs N (one signal)"),
                           ("batch_sweep", "batch", "vs B (signals of length 32)")):
        rows = result.get(key, [])
        # Against tvcli at torch's thread count (solid) and at 1 thread (dotted):
        # on a loaded machine the two differ a lot (see the caveats).
        for base, style, tag in (("tvcli direct forward", "-", ""),
                                 ("tvcli direct forward [1 thread]", ":", ", tvcli 1 thread")):
            ours = {r[axis]: r["median_ms"] for r in rows if row_label(r) == base}
            for peer in ("proxTV hybridtautstring forward", "proxTV tvgen forward"):
                pts = sorted((r[axis], r["median_ms"] / ours[r[axis]]) for r in rows
                             if row_label(r) == peer and _num(r["median_ms"])
                             and ours.get(r[axis]))
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, marker="o",
                            label=f"{peer.split(' forward')[0]} {lab}{tag}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="N or B", ylabel="peer time / tvcli time",
           title="speed-up of tvcli direct (forward)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Below the axes: inside, six labels would hide the curves.
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    else:
        ax.text(0.5, 0.5, "no peer measured", ha="center", transform=ax.transAxes)
    m = result["machine"]
    fig.suptitle(f"tvcli {m['tvcli']} | {m['cpu']} | torch threads {m['torch_threads']} | "
                 f"load {m.get('loadavg_1m_start', '?')} | {m['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily sets torch's intra-op thread count."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)

