"""Step time of ``tvcli train`` on the CPU: plain, under torchrun with 1 rank,
and with 2 gloo ranks (DDP + synchronised batch norm), for docs/scaling.md.

Each configuration is a real run (``tvcli train`` or ``torchrun ... -m tvcli
train``) on a data folder made by ``tvcli data fetch`` (or any folder with
train/ and val/ PNGs and a manifest.json); the step time is the loop's own wall
time (``wall_s`` in the run's ckpt.json: process start-up, data loading and the
final validation excluded) divided by the steps. Medians over ``--repeats``.

    python benchmarks/ddp_overhead.py DATA --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tvcli.bench import uptime_line

ROOT = Path(__file__).resolve().parents[1]


def run_once(data: Path, nproc: int | None, batch: int, args: argparse.Namespace) -> float:
    """Seconds per step of one run (nproc None: plain `tvcli train`)."""
    out = Path(tempfile.mkdtemp(prefix="tvcli-ddp-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    train = ["train", args.model, "--data", str(data), "--out", str(out / "run"),
             "--steps", str(args.steps), "--batch", str(batch), "--patch", str(args.patch),
             "--depth", str(args.depth), "--width", str(args.width), "--val-every",
             str(10 ** 6), "--ckpt-every", str(10 ** 6), "-q"]
    if nproc is None:
        cmd = [sys.executable, "-m", "tvcli", *train]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "tvcli", *train]
    try:
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        meta = json.loads((out / "run" / "ckpt.json").read_text())
        return meta["wall_s"] / meta["step"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="dncnn-tv")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8, help="global batch")
    ap.add_argument("--patch", type=int, default=40)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    b = args.batch
    configs = [("plain tvcli train", None, b), ("torchrun, 1 rank", 1, b),
               ("torchrun, 2 ranks, same global batch", 2, b // 2),
               ("torchrun, 2 ranks, same per-rank batch", 2, b)]
    result = {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "cpus": os.cpu_count(), "settings": {k: str(v) for k, v in vars(args).items()},
              "uptime_before": uptime_line(), "configs": []}
    print(result["uptime_before"], flush=True)
    for name, nproc, per_rank in configs:
        times = [run_once(args.data, nproc, per_rank, args) for _ in range(args.repeats)]
        med = statistics.median(times)
        ranks = nproc or 1
        row = {"config": name, "ranks": ranks, "batch_per_rank": per_rank,
               "s_per_step": [round(t, 4) for t in times], "median_ms_per_step":
               round(1000 * med, 1), "samples_per_s": round(ranks * per_rank / med, 1)}
        result["configs"].append(row)
        print(json.dumps(row), flush=True)
    result["uptime_after"] = uptime_line()
    print(result["uptime_after"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
