"""Whole-process time of ``tvcli smooth`` on one image, torch-free path against the
torch path (``TVCLI_NO_FAST_CLI=1``): docs/cli.md, "Performance", issue 28's
start-up table.

Runs ``python -m tvcli smooth IMAGE -o OUT --lam LAM`` as a subprocess, the two
variants interleaved (new, old, new, old, ...) so that a change in the machine's
load hits both alike; reports the median wall time (process start to exit, the
file written) and the median CPU time (user + system of the child), the load
average before and after, and checks that both outputs are the same file.

    python benchmarks/cli_startup.py /tmp/c512x384.png --runs 7 [--opts '--threads 1']
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(image: str, out: str, lam: str, fast: bool, extra: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TVCLI_NO_FAST_CLI", None)
    if not fast:
        env["TVCLI_NO_FAST_CLI"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tvcli", "smooth", image, "-o", out, "--lam", lam,
                    "--overwrite", "-q", *extra], check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("--lam", default="0.05")
    ap.add_argument("--runs", type=int, default=7, help="runs of each variant")
    ap.add_argument("--opts", default="", help="more tvcli smooth options, one string: "
                                                "--opts '--threads 1'")
    args = ap.parse_args()
    args.extra = shlex.split(args.opts)
    out_dir = Path(tempfile.mkdtemp())
    outs = {True: str(out_dir / "fast.png"), False: str(out_dir / "torch.png")}
    times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    load0 = os.getloadavg()
    for _ in range(args.runs):
        for fast in (True, False):
            times[fast].append(_run(args.image, outs[fast], args.lam, fast, args.extra))
    load1 = os.getloadavg()
    same = Path(outs[True]).read_bytes() == Path(outs[False]).read_bytes()
    print(f"tvcli smooth {args.image} --lam {args.lam} {' '.join(args.extra)}: "
          f"{args.runs} interleaved runs each, load {load0[0]:.2f} -> {load1[0]:.2f}, "
          f"outputs {'identical' if same else 'DIFFER'}")
    for fast, name in ((False, "torch path (TVCLI_NO_FAST_CLI=1)"), (True, "torch-free")):
        walls = sorted(w for w, _ in times[fast])
        cpus = sorted(c for _, c in times[fast])
        print(f"  {name:34s} wall median {statistics.median(walls):.3f} s "
              f"(min {walls[0]:.3f}, max {walls[-1]:.3f}), CPU median "
              f"{statistics.median(cpus):.3f} s")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
