"""Solver benchmarks for the 1-D TV prox: ``python -m tvcli.bench``
(``tvcli.bench.tv1d``).

Workloads
  * table1 - the paper's Table 1 (DESIGN.md section 6): 256 x 32 x 32 float32
    signals of length 32, each a unit step plus N(0, 0.1^2) noise, lam = 1;
    forward (prox), backward (the backward op that autograd calls, given y and an
    upstream gradient) and forward + backward through autograd.
  * sweep  - one signal of length N = 32 ... 10^6 (random walk, sawtooth, noisy
    step) at lam = 1: how the cost grows with N, worst cases included.

Every timing is the median of ``repeats`` runs after warm-up, with the
interquartile range; peers installed in this environment (proxTV) run in the
same process on the same data, and ratios are printed against them. Timings are
never asserted anywhere: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

import tvcli
from tvcli._extension import HAS_EXT

__all__ = ["Timing", "time_call", "table1_workload", "bench_table1", "bench_sweep", "main"]


@dataclass
class Timing:
    """Wall-clock statistics of repeated calls, in milliseconds."""

    name: str
    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    repeats: int
    note: str = ""
    extra: dict = field(default_factory=dict)


def time_call(
    name: str, fn: Callable[[], object], repeats: int = 25, warmup: int = 3, note: str = ""
) -> Timing:
    """Times ``fn()`` ``repeats`` times after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return Timing(name, statistics.median(samples), q[0], q[2], min(samples), repeats, note)


def table1_workload(
    shape: tuple[int, ...] = (256, 32, 32), sigma: float = 0.1, seed: int = 0
) -> torch.Tensor:
    """The paper's Table 1 input: float32 ``shape``, signals along the last dim,
    each a unit step (0 then 1, at the middle) plus Gaussian noise of std ``sigma``."""
    gen = torch.Generator().manual_seed(seed)
    n = shape[-1]
    step = (torch.arange(n) >= n // 2).to(torch.float32)
    return step + sigma * torch.randn(shape, generator=gen)


def _load_proxtv():
    try:
        import prox_tv  # type: ignore[import-not-found]

        return prox_tv
    except Exception:
        return None


def bench_table1(repeats: int = 25, shape: tuple[int, ...] = (256, 32, 32),
                 peers: bool = True) -> list[Timing]:
    """Forward / backward timings on the Table 1 workload, tvcli and peers."""
    x = table1_workload(shape)
    lam = 1.0
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out: list[Timing] = []
    solvers = [s for s in tvcli.SOLVERS if _solver_available(s)]
    engine = "C++" if HAS_EXT else "pure-PyTorch fallback"
    for solver in solvers:
        out.append(time_call(f"tvcli {solver} forward", lambda s=solver: tvcli.prox_tv1d(
            x, lam, solver=s), repeats, note=engine))
    if HAS_EXT:
        y = tvcli.prox_tv1d(x, lam)
        lam_b = torch.full((*x.shape[:-1], 1), lam)
        out.append(time_call("tvcli backward (op)", lambda: torch.ops.tvcli.prox_tv1d_backward(
            g, y, lam_b, x.dim() - 1), repeats, note="grad_x and grad_lam"))
    xr = x.clone().requires_grad_(True)
    lam_t = torch.tensor(lam, requires_grad=True)

    def fwd_bwd() -> None:
        xr.grad = None
        lam_t.grad = None
        tvcli.prox_tv1d(xr, lam_t).backward(g)

    out.append(time_call("tvcli forward+backward (autograd)", fwd_bwd, repeats,
                         note="direct; grads for x and lam"))
    proxtv = _load_proxtv() if peers else None
    rows = x.reshape(-1, x.shape[-1]).to(torch.float64).numpy()
    if proxtv is not None:
        import numpy as np

        def proxtv_loop(method: str) -> None:
            for r in rows:
                proxtv.tv1_1d(r, lam, method=method)

        for method in ("hybridtautstring", "pn"):  # its default, and the paper's PN
            rep = max(5, repeats // 5)
            out.append(time_call(f"proxTV tv1_1d '{method}' row loop", lambda m=method:
                                 proxtv_loop(m), rep, warmup=1,
                                 note="forward only, float64, per-row Python calls"))
        ref = np.stack([proxtv.tv1_1d(r, lam) for r in rows[:512]])
        ours = tvcli.prox_tv1d(torch.from_numpy(rows[:512]), lam).numpy()
        out[-1].extra["max_abs_diff_vs_tvcli_first512"] = float(np.abs(ref - ours).max())
    else:
        out.append(Timing("proxTV tv1_1d", float("nan"), float("nan"), float("nan"),
                          float("nan"), 0, note="not installed (pip install prox-tv-sdist)"))
    return out


def _solver_available(solver: str) -> bool:
    x = torch.zeros(1, 3)
    try:
        tvcli.prox_tv1d(x, 1.0, solver=solver)
        return True
    except Exception:
        return False


def sweep_signal(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    """One float32 test signal of length ``n``: 'walk' (random walk, unit steps),
    'sawtooth' (period 64, amplitude 10, plus N(0, 0.1^2)), 'step' (unit step + noise)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator=gen)
    if kind == "walk":
        return noise.cumsum(0).to(torch.float32)
    if kind == "sawtooth":
        t = torch.arange(n, dtype=torch.float64)
        return (10.0 * ((t % 64) / 64.0) + 0.1 * noise).to(torch.float32)
    if kind == "step":
        return ((torch.arange(n) >= n // 2).to(torch.float32) + 0.1 * noise).to(torch.float32)
    raise ValueError(f"unknown signal kind {kind!r}")


def bench_sweep(lengths: list[int], kinds: tuple[str, ...] = ("walk", "sawtooth", "step"),
                repeats: int = 7) -> list[Timing]:
    """Time one signal of each length and kind at lam = 1 (forward, then backward op)."""
    out = []
    for kind in kinds:
        for n in lengths:
            x = sweep_signal(kind, n)
            rep = repeats if n <= 100_000 else max(3, repeats // 2)
            for solver in [s for s in tvcli.SOLVERS if _solver_available(s)]:
                t = time_call(f"{solver} forward {kind} N={n}",
                              lambda s=solver, x=x: tvcli.prox_tv1d(x, 1.0, solver=s), rep)
                t.extra.update(kind=kind, n=n, solver=solver, ns_per_sample=t.median_ms * 1e6 / n)
                out.append(t)
    return out


def uptime_line() -> str:
    """The ``uptime`` line (time, users, 1/5/15-min load), recorded before and
    after a benchmark so a reader can see how busy the machine was; "n/a"
    where there is no ``uptime`` command."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def machine_info() -> dict:
    """Machine, load and versions, to print next to every table."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": round(load[0], 2),
        "torch": torch.__version__,
        "tvcli": tvcli.__version__,
        "engine": "C++" if HAS_EXT else "pure-PyTorch fallback",
    }


def _print_table(title: str, rows: list[Timing], baseline: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    base = next((r.median_ms for r in rows if r.name == baseline), None)
    table = Table(title=title)
    for col in ("what", "median ms", "IQR ms", "min ms", "runs", "x baseline", "note"):
        table.add_column(col, justify="right" if "ms" in col or col in ("runs", "x baseline")
                         else "left")
    for r in rows:
        ratio = f"{r.median_ms / base:.1f}" if base and r.median_ms == r.median_ms else "-"
        note = r.note + ("; " + ", ".join(f"{k}={v:.3g}" for k, v in r.extra.items()
                                         if isinstance(v, float)) if r.extra else "")
        table.add_row(r.name, f"{r.median_ms:.3f}", f"{r.q25_ms:.3f}-{r.q75_ms:.3f}",
                      f"{r.min_ms:.3f}", str(r.repeats), ratio, note)
    Console().print(table)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry: ``python -m tvcli.bench [--quick] [--json] [--repeats R]``."""
    parser = argparse.ArgumentParser(prog="python -m tvcli.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=25, help="timed runs per entry (>= 25)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-peers", action="store_true", help="skip installed peers")
    args = parser.parse_args(argv)
    if args.quick:
        t1 = bench_table1(repeats=3, shape=(4, 8, 32), peers=not args.no_peers)
        sweep = bench_sweep([32, 1000], repeats=3)
    else:
        t1 = bench_table1(repeats=args.repeats, peers=not args.no_peers)
        sweep = bench_sweep([32, 1_000, 10_000, 100_000, 1_000_000])
    result = {"machine": machine_info(), "table1": [asdict(t) for t in t1],
              "sweep": [asdict(t) for t in sweep]}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        m = result["machine"]
        print(f"{m['date']} | {m['cpu']} | {m['cores']} cores, torch threads "
              f"{m['torch_threads']} | load {m['loadavg_1m']} | torch {m['torch']} | "
              f"engine {m['engine']}")
        _print_table("Table 1 workload: 8192 signals x 32, float32, lam = 1", t1,
                     baseline="tvcli direct forward")
        _print_table("Length sweep: one signal, lam = 1", sweep)
    return result


if __name__ == "__main__":
    main()
