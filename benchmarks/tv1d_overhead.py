"""Per-call overhead and the backward of the 1-D TV prox, builds side by side (issue 28).

    python benchmarks/tv1d_overhead.py --old /tmp/old28o --rounds 7 --threads 1 \\
        [--layer] [--json out.json]

Arms, each a fresh worker process per round, run in turn (the order rotates
every round) so that load drifts hit every arm alike:

  * ``new``: this checkout's ``tvcli`` (with its compiled engine);
  * ``old``: the ``tvcli`` package under ``--old`` (e.g. main's package and its
    ``_C*.so`` copied to ``/tmp/old/tvcli``), the "before";
  * ``proxtv``: proxTV's ``tv1_1d`` (when installed: ``make bench-peers``);
  * ``plainc``: a plain C backward (below, compiled with ``cc -O3``, called once
    through ctypes for the whole batch): for each signal, the mean of the
    incoming gradient over each constant run of y, and the lam gradient
    ``sum_k (s_k - s_{k-1}) * mean_k`` (docs/exactness.md), double accumulators
    as tvcli's. Its output is compared with tvcli's backward op (``max_abs_diff``).

Measured in each tvcli arm: the per-call time of ``prox_tv1d(x, 1.0)`` on one
float32 signal of N = 32, 64, 100 samples (noisy unit step), forward alone and
forward + ``.backward(g)`` (``x.grad`` reset each call); the same two for
``torch.neg`` (the floor of a torch op and of the autograd engine on this
machine); on the paper's Table 1 workload (256 x 32 x 32 float32, lam = 1) the
forward, the backward op, and ``y.backward(g)`` alone (lam a 0-d tensor with
``requires_grad``, as in ``tvcli bench``). With ``--layer``: ``TVLayer(96,
direction="row" / "col")`` forward + backward on (64, 96, 32, 32) and the 3x3
convolution 96 -> 96 on the same tensor.

Per-call times are means over blocks of calls, the median over blocks in a
worker, then the median over rounds; the report gives medians and ratios.
Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (32, 64, 100)

PLAIN_C = r"""
#include <stdint.h>
/* y, g: (count, n) row-major float32; gx: (count, n); glam: (count,). */
void plain_backward(const float* y, const float* g, float* gx, float* glam,
                    int64_t count, int64_t n) {
  for (int64_t s = 0; s < count; ++s) {
    const float* ys = y + s * n;
    const float* gs = g + s * n;
    float* out = gx + s * n;
    double gl = 0.0, prev = 0.0;
    int64_t a = 0;
    while (a < n) {
      const float v = ys[a];
      double sum = gs[a];
      int64_t b = a + 1;
      while (b < n && ys[b] == v) sum += gs[b++];
      const double mean = sum / (double)(b - a);
      for (int64_t i = a; i < b; ++i) out[i] = (float)mean;
      const double next = b < n ? (double)((ys[b] > v) - (ys[b] < v)) : 0.0;
      gl += (next - prev) * mean;
      prev = next;
      a = b;
    }
    glam[s] = (float)gl;
  }
}
"""


def _median_block_us(fn, calls: int, blocks: int = 7) -> float:
    """Median over ``blocks`` of the mean time of ``calls`` calls of ``fn``, in us."""
    for _ in range(max(10, calls // 10)):
        fn()
    out = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(out)


def _median_each_us(fn, setup, reps: int) -> float:
    """Median over ``reps`` of the time of ``fn(setup())`` alone (setup untimed), in us."""
    fn(setup())
    out = []
    for _ in range(reps):
        arg = setup()
        t0 = time.perf_counter()
        fn(arg)
        out.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(out)


def _signal(n: int):
    import torch

    gen = torch.Generator().manual_seed(n)
    return (torch.arange(n) >= n // 2).float() + 0.1 * torch.randn(n, generator=gen)


def _table1():
    import torch

    gen = torch.Generator().manual_seed(0)
    x = (torch.arange(32) >= 16).float() + 0.1 * torch.randn(256, 32, 32, generator=gen)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    return x, g


def worker_tvcli(calls: int, reps: int, layer: bool) -> dict:
    """The tvcli arm's timings (the ``tvcli`` found first on sys.path)."""
    import torch

    import tvcli

    res: dict = {"tvcli_file": tvcli.__file__}
    for n in LENGTHS:
        x = _signal(n)
        xr = x.clone().requires_grad_(True)
        g = torch.ones(n)

        def fb(xr=xr, g=g) -> None:
            xr.grad = None
            tvcli.prox_tv1d(xr, 1.0).backward(g)

        res[f"fwd_N{n}"] = _median_block_us(lambda x=x: tvcli.prox_tv1d(x, 1.0), calls)
        res[f"fwdbwd_N{n}"] = _median_block_us(fb, calls // 2)
    x = _signal(64)
    xr = x.clone().requires_grad_(True)
    g = torch.ones(64)

    def neg_fb() -> None:
        xr.grad = None
        torch.neg(xr).backward(g)

    res["neg_fwd"] = _median_block_us(lambda: torch.neg(x), calls)
    res["neg_fwdbwd"] = _median_block_us(neg_fb, calls // 2)

    x, g = _table1()
    lam_b = torch.ones(256, 32, 1)
    y = tvcli.prox_tv1d(x, 1.0)
    res["t1_fwd"] = _median_each_us(lambda _: tvcli.prox_tv1d(x, 1.0), lambda: None, reps)
    res["t1_bwd_op"] = _median_each_us(
        lambda _: torch.ops.tvcli.prox_tv1d_backward(g, y, lam_b, 2), lambda: None, reps)
    # The same op right after a forward that made a fresh y (as in training).
    res["t1_bwd_op_flow"] = _median_each_us(
        lambda yy: torch.ops.tvcli.prox_tv1d_backward(g, yy, lam_b, 2),
        lambda: tvcli.prox_tv1d(x, 1.0), reps)
    xr = x.clone().requires_grad_(True)
    lam_t = torch.tensor(1.0, requires_grad=True)

    def graph():
        xr.grad = None
        lam_t.grad = None
        return tvcli.prox_tv1d(xr, lam_t)

    res["t1_bwd_autograd"] = _median_each_us(lambda yy: yy.backward(g), graph, reps)
    res["t1_fwd_grad"] = _median_each_us(lambda _: graph(), lambda: None, reps)
    if layer:
        from tvcli.nn import TVLayer

        xl = torch.randn(64, 96, 32, 32, generator=torch.Generator().manual_seed(2))
        xl.requires_grad_(True)
        gl = torch.randn(xl.shape, generator=torch.Generator().manual_seed(3))
        mods = {"layer_row": TVLayer(96, direction="row"),
                "layer_col": TVLayer(96, direction="col"),
                "conv3x3": torch.nn.Conv2d(96, 96, 3, padding=1)}
        for name, mod in mods.items():
            def step(_, mod=mod) -> None:
                xl.grad = None
                mod.zero_grad(set_to_none=True)
                mod(xl).backward(gl)

            res[name] = _median_each_us(step, lambda: None, max(3, reps // 10))
    return res


def worker_proxtv(calls: int) -> dict:
    """proxTV's per-call forward (float64: the only dtype it takes)."""
    import prox_tv  # type: ignore[import-not-found]

    res = {}
    for n in LENGTHS:
        xn = _signal(n).double().numpy()
        res[f"fwd_N{n}"] = _median_block_us(lambda xn=xn: prox_tv.tv1_1d(xn, 1.0), calls)
    return res


def _plain_c_lib(build_dir: Path):
    src = build_dir / "plain_backward.c"
    lib = build_dir / "plain_backward.so"
    if not lib.exists():
        src.write_text(PLAIN_C)
        subprocess.run(["cc", "-O3", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    so = ctypes.CDLL(str(lib))
    so.plain_backward.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2
    return so


def worker_plainc(reps: int, build_dir: Path) -> dict:
    """The plain C backward on the Table 1 workload (y from tvcli's forward)."""
    import torch

    import tvcli

    so = _plain_c_lib(build_dir)
    x, g = _table1()
    y = tvcli.prox_tv1d(x, 1.0).contiguous()
    gx = torch.empty_like(y)
    glam = torch.empty(256 * 32)
    count, n = 256 * 32, 32

    def run(_) -> None:
        so.plain_backward(y.data_ptr(), g.data_ptr(), gx.data_ptr(), glam.data_ptr(), count, n)

    held: list = []

    def run_flow(yy) -> None:
        # As a backward through autograd meets it: a fresh y from a forward, and
        # fresh outputs that stay alive until the next call (as x.grad does).
        a, b = torch.empty_like(yy), torch.empty(count)
        so.plain_backward(yy.data_ptr(), g.data_ptr(), a.data_ptr(), b.data_ptr(), count, n)
        held[:] = [a, b]

    res = {"t1_bwd_plainc": _median_each_us(run, lambda: None, reps),
           "t1_bwd_plainc_flow": _median_each_us(
               run_flow, lambda: tvcli.prox_tv1d(x, 1.0).contiguous(), reps)}
    ref_gx, ref_gl = torch.ops.tvcli.prox_tv1d_backward(g, y, torch.ones(256, 32, 1), 2)
    res["max_abs_diff_gx"] = float((gx - ref_gx).abs().max())
    res["max_abs_diff_glam"] = float((glam - ref_gl.reshape(-1)).abs().max())
    return res


def _worker_main(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "proxtv":
        res = worker_proxtv(args.calls)
    elif args.worker == "plainc":
        res = worker_plainc(args.reps, Path(args.build_dir))
    else:
        res = worker_tvcli(args.calls, args.reps, args.layer)
    print(json.dumps(res))


def _run_worker(arm: str, args: argparse.Namespace, build_dir: str) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    path = str(ROOT) if arm in ("new", "plainc", "proxtv") else str(args.old)
    env["PYTHONPATH"] = path
    cmd = [sys.executable, __file__, "--worker", "tvcli" if arm in ("new", "old") else arm,
           "--threads", str(args.threads), "--calls", str(args.calls), "--reps", str(args.reps),
           "--build-dir", build_dir] + (["--layer"] if args.layer else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        print(f"[{arm}] failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, default=None,
                    help="folder holding the 'before' tvcli package (with its _C*.so)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads, every arm")
    ap.add_argument("--calls", type=int, default=2000, help="calls per timing block")
    ap.add_argument("--reps", type=int, default=41, help="timed runs of the Table 1 entries")
    ap.add_argument("--layer", action="store_true", help="also TVLayer row / col vs conv")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--build-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker_main(args)
        return {}
    try:
        import prox_tv  # type: ignore[import-not-found]  # noqa: F401

        has_proxtv = True
    except ImportError:
        has_proxtv = False
    arms = ["new"] + (["old"] if args.old else []) + (["proxtv"] if has_proxtv else [])
    arms.append("plainc")
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    meta = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "uptime_start": _uptime(), "threads": args.threads, "rounds": args.rounds,
            "calls": args.calls, "reps": args.reps, "cores": os.cpu_count(), "arms": arms}
    with tempfile.TemporaryDirectory() as build_dir:
        for r in range(args.rounds):
            order = arms[r % len(arms):] + arms[:r % len(arms)]
            for arm in order:
                res = _run_worker(arm, args, build_dir)
                if res is not None:
                    runs[arm].append(res)
            print(f"round {r + 1}/{args.rounds} done ({_uptime()})", file=sys.stderr)
    meta["uptime_end"] = _uptime()
    med = {a: {k: statistics.median(d[k] for d in rs) for k in rs[0]
               if isinstance(rs[0][k], float)} for a, rs in runs.items() if rs}
    report = {"meta": meta, "median": med, "runs": runs}
    _print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


def _print_report(report: dict) -> None:
    med, meta = report["median"], report["meta"]
    print(f"{meta['date']} | threads {meta['threads']} | rounds {meta['rounds']}")
    print(f"  start: {meta['uptime_start']}\n  end:   {meta['uptime_end']}")
    new, old, ptv = med.get("new", {}), med.get("old", {}), med.get("proxtv", {})
    print("\nper call, us (median of rounds)")
    print(f"{'N':>5} {'new fwd':>9} {'old fwd':>9} {'proxTV':>9} {'new/pTV':>8} "
          f"{'new f+b':>9} {'old f+b':>9} {'f+b/pTV':>8}")
    for n in LENGTHS:
        nf, of, pf = new.get(f"fwd_N{n}"), old.get(f"fwd_N{n}"), ptv.get(f"fwd_N{n}")
        nb, ob = new.get(f"fwdbwd_N{n}"), old.get(f"fwdbwd_N{n}")

        def f(v):
            return f"{v:9.2f}" if v is not None else f"{'-':>9}"

        def q(a, b):
            return f"{a / b:8.2f}" if a is not None and b else f"{'-':>8}"

        print(f"{n:>5} {f(nf)} {f(of)} {f(pf)} {q(nf, pf)} {f(nb)} {f(ob)} {q(nb, pf)}")
    for k in ("neg_fwd", "neg_fwdbwd", "t1_fwd", "t1_fwd_grad", "t1_bwd_op", "t1_bwd_op_flow",
              "t1_bwd_autograd", "layer_row", "layer_col", "conv3x3"):
        if k in new:
            print(f"{k:>16}: new {new[k]:10.1f} us   old {old.get(k, float('nan')):10.1f} us")
    pc = med.get("plainc", {})
    if pc:
        print(f"{'t1_bwd_plainc':>16}: {pc['t1_bwd_plainc']:10.1f} us (max_abs_diff gx "
              f"{pc['max_abs_diff_gx']:.2g}, glam {pc['max_abs_diff_glam']:.2g}); after a "
              f"forward, fresh outputs: {pc['t1_bwd_plainc_flow']:.1f} us")
        for arm, d in (("new", new), ("old", old)):
            if "t1_bwd_autograd" in d:
                c, cf = pc["t1_bwd_plainc"], pc["t1_bwd_plainc_flow"]
                print(f"  {arm}: backward through autograd / plain C = "
                      f"{d['t1_bwd_autograd'] / c:.2f}x (vs plain C after a forward: "
                      f"{d['t1_bwd_autograd'] / cf:.2f}x); backward op / plain C = "
                      f"{d['t1_bwd_op'] / c:.2f}x (after a forward: "
                      f"{d['t1_bwd_op_flow'] / cf:.2f}x)")
    for arm, d in (("new", new), ("old", old)):
        if "conv3x3" in d:
            print(f"  {arm}: TVLayer row / conv3x3 = {d['layer_row'] / d['conv3x3']:.2f}x, "
                  f"col / conv3x3 = {d['layer_col'] / d['conv3x3']:.2f}x (forward+backward)")


if __name__ == "__main__":
    main()
