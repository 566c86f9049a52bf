"""Trains one arm of the EPS pair (eps / eps-tv) in lockstep with the other arm.

    nice -n 15 python benchmarks/eps_train_pair.py eps    --data data/eps --runs runs &
    nice -n 15 python benchmarks/eps_train_pair.py eps-tv --data data/eps --runs runs &

Not a training loop: it calls :func:`tvcli.train.train` (the generic, resumable
loop) in chunks of ``--chunk`` steps (``stop_at``, exactly as an interruption
and resume), and before each chunk waits until the other arm's checkpoint has
reached the same step. Whenever both are stopped, their last checkpoints are at
most one chunk apart, and the last common step is an equal budget for both
(every chunk's checkpoint is kept in ``RUN/snapshots/stepNNNNNN``).
Same data, seed, batch, patch, schedule and width for both arms; one thread.
Interrupt and rerun the same command to resume.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from tvcli.train import TrainConfig, train


def _step(run: Path) -> int:
    f = run / "ckpt.json"
    return json.loads(f.read_text())["step"] if f.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["eps", "eps-tv"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--width", type=int, default=12)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-images", type=int, default=20)
    ap.add_argument("--stop-at-utc", default=None, help="HH:MM: no new chunk after this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    other = "eps-tv" if args.model == "eps" else "eps"
    run, other_run = args.runs / f"{args.model}-eps", args.runs / f"{other}-eps"
    cfg = TrainConfig(model=args.model, data=args.data, out=str(run), task="eps",
                      steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
                      val_every=100, ckpt_every=args.chunk, val_crop=160,
                      model_config={"width": args.width},
                      task_config={"val_images": args.val_images})
    while _step(run) < args.steps:
        if args.stop_at_utc and time.strftime("%H:%M", time.gmtime()) >= args.stop_at_utc:
            print(f"{args.model}: stop time reached at step {_step(run)}", flush=True)
            break
        target = min(args.steps, _step(run) + args.chunk)
        while _step(other_run) < target - args.chunk:  # let the other arm catch up
            time.sleep(5)
        meta = train(cfg, progress=False, log=lambda m: print(m, flush=True), stop_at=target)
        # keep every chunk's checkpoint: the last step both arms reached can be scored
        snap = run / "snapshots" / f"step{meta['step']:06d}"
        snap.mkdir(parents=True, exist_ok=True)
        for f in ("ckpt.safetensors", "ckpt.json"):
            shutil.copy2(run / f, snap / f)
        last = meta["history"][-1] if meta["history"] else {}
        print(f"{time.strftime('%H:%M:%S', time.gmtime())} {args.model} step {meta['step']} "
              f"wall {meta['wall_s']:.0f}s val_wrmse {last.get('val_wrmse')}", flush=True)


if __name__ == "__main__":
    main()
