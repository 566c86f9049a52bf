"""Trains DexiNed and DexiNed-TV on BSDS500 with tvcli's training loop (task "edges").

    python benchmarks/edges_train.py --data ../shared/data/bsds500 --model dexined-tv \
        --out runs/edges/dexined-tv --steps 1500

Resumable: run the same command again after an interruption. Both arms of a
comparison must use the same --steps/--batch/--patch/--width/--seed (the
budget); the run folder's ckpt.json records it. One CPU thread unless --threads.
A thin wrapper: `tvcli train dexined-tv --data BSDS500 --threads 1 ...` trains the
same way (the config comes from tvcli.train.config.make_config in both).
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="BSDS500 folder (images/, groundTruth/)")
    ap.add_argument("--model", required=True, choices=["dexined", "dexined-tv"])
    ap.add_argument("--out", required=True, help="run folder (checkpoints; resumes)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=160)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--max-wall", type=float, default=None, help="seconds (safety stop)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lam-init", type=float, default=None,
                    help="dexined-tv: initial lam of all five TV layers, in logit units "
                         "(default: the model's 0.05)")
    ap.add_argument("--export", default=None, help="weights folder to export into when done")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)
    from tvcli.train import export_weights, train
    from tvcli.train.config import make_config

    # The same config as `tvcli train MODEL --data BSDS500` (tvcli/train/config.py).
    cfg = make_config(a.model, a.data, a.out, steps=a.steps, batch=a.batch, patch=a.patch,
                      lr=a.lr, seed=a.seed, val_every=a.val_every, ckpt_every=a.ckpt_every,
                      width=a.width, max_wall=a.max_wall)
    if a.lam_init is not None:
        if a.model != "dexined-tv" or not a.lam_init > 0:
            raise SystemExit("--lam-init: only for dexined-tv, and > 0 (lam is learned)")
        cfg.model_config.update(lam_sharp=a.lam_init, lam_smooth=a.lam_init)
    meta = train(cfg, progress=False)
    print(f"done: step {meta['step']}, wall {meta['wall_s']:.0f} s")
    if a.export and meta["step"] >= a.steps:
        from pathlib import Path

        print(export_weights(Path(a.out), Path(a.export)))


if __name__ == "__main__":
    main()
