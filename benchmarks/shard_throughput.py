"""Images per second of a sharded ``tvcli smooth`` batch: 1 process vs N shard
processes side by side on one machine (docs/scaling.md).

Each configuration runs the real CLI (``python -m tvcli``) as subprocesses on
the folder given, writing to a fresh temporary folder, ``--repeats`` times; the
report gives the median wall time and images per second, with the machine's
load (``uptime``) before and after, because a shared machine's other jobs
change these figures.

    python benchmarks/shard_throughput.py ../shared/data/denoise/CBSD68 --procs 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tvcli.bench import uptime_line

ROOT = Path(__file__).resolve().parents[1]


def run_config(folder: Path, procs: int, threads: int, lam: float, extra: list[str]) -> float:
    """Wall seconds to smooth ``folder`` with ``procs`` shard processes of
    ``threads`` CPU threads each, all started together."""
    out = Path(tempfile.mkdtemp(prefix="tvcli-shard-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    try:
        cmds = []
        for k in range(procs):
            shard = ["--shard", f"{k}/{procs}"] if procs > 1 else []
            cmds.append([sys.executable, "-m", "tvcli", "smooth", str(folder), "-o", str(out),
                         "-r", "-q", "--lam", str(lam), "--threads", str(threads), *shard,
                         *extra])
        start = time.perf_counter()
        running = [subprocess.Popen(c, env=env) for c in cmds]
        codes = [p.wait() for p in running]
        wall = time.perf_counter() - start
        if any(codes):
            raise SystemExit(f"a shard failed: exit codes {codes}")
        return wall
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    ap.add_argument("--lam", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args, extra = ap.parse_known_args()
    n = sum(1 for p in args.folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    result = {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
              "folder": str(args.folder), "images": n, "lam": args.lam,
              "threads_per_process": args.threads, "extra_args": extra,
              "uptime_before": uptime_line(), "configs": []}
    print(result["uptime_before"], flush=True)
    for procs in args.procs:
        walls = [run_config(args.folder, procs, args.threads, args.lam, extra)
                 for _ in range(args.repeats)]
        med = statistics.median(walls)
        row = {"processes": procs, "walls_s": [round(w, 2) for w in walls],
               "median_s": round(med, 2), "images_per_s": round(n / med, 2)}
        result["configs"].append(row)
        print(json.dumps(row), flush=True)
    result["uptime_after"] = uptime_line()
    base = result["configs"][0]["images_per_s"]
    for row in result["configs"]:
        row["speedup_vs_first"] = round(row["images_per_s"] / base, 2)
    print(result["uptime_after"])
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
