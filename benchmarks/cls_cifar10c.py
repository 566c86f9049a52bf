"""The paper's section 4.2 experiment: train All-Conv, TV-Smooth and TV-Sharp at an
equal budget (same steps, batch, schedule, augmentation, seed) through the shared
training loop, then report clean top-1 and CIFAR-10-C top-1 per corruption type
(mean over the 5 severities) and overall, as in the paper's Table 2.

Each arm is trained, then evaluated, so partial results survive an interruption;
rerunning resumes training (checkpoints in OUT/<arm>/) and reuses the cached
corrupted test subset (OUT/cifar10c-<n>.npz, git-ignored under runs/).

Example (the CPU smoke budget of docs/classification.md):
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/cls_cifar10c.py \\
        --data ../shared/data/cifar10/cifar10-jpeg.tar.gz --out runs/cls-smoke \\
        --steps 150 --width 16 --batch 32 --train-per-class 500 --val-per-class 50 \\
        --c-per-class 5
Full budget (GPU): --width 96 --steps 60000 --batch 128 (no per-class limits).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tvcli.data.cifar import load_cifar10
from tvcli.data.corruptions import CORRUPTIONS, MissingTexture, corrupt_batch
from tvcli.models import build_model
from tvcli.tasks.classify import top1_accuracy
from tvcli.train import lam_table, train
from tvcli.train.config import make_config

ARMS = ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")


def corrupted_set(data: str, per_class: int | None, cache: Path, seed: int = 0) -> dict:
    """{(name, severity): uint8 (N, 3, 32, 32)} plus "clean" and "labels", cached."""
    if cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    images, labels = load_cifar10(data, "test", per_class)
    hwc = images.permute(0, 2, 3, 1).numpy()
    out = {"clean": images.numpy(), "labels": labels.numpy()}
    for name in CORRUPTIONS:
        for sev in range(1, 6):
            t = time.perf_counter()
            try:
                c = corrupt_batch(hwc, name, sev, seed=seed)
            except MissingTexture as exc:
                print(f"skip {name}: {exc}", flush=True)
                break
            out[f"{name}/{sev}"] = np.ascontiguousarray(c.transpose(0, 3, 1, 2))
            print(f"{name} s{sev}: {time.perf_counter() - t:.1f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed: arms trained in parallel processes
    # share the cache and must never read a half-written file.
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def merge_result(results_path: Path, arm: str, entry: dict) -> None:
    """Add ``entry`` under ``arm`` to results.json, re-read just before writing.

    Arms may run as separate processes with the same --out (one per core); each
    merges its own key into what is on disk then, so none drops another's row.
    """
    import fcntl

    results_path.parent.mkdir(parents=True, exist_ok=True)
    with open(results_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        results[arm] = entry
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(results_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="runs/cls")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-per-class", type=int, default=None)
    ap.add_argument("--val-per-class", type=int, default=None)
    ap.add_argument("--c-per-class", type=int, default=None,
                    help="test images per class for CIFAR-10-C (None = all 1000)")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--val-every", type=int, default=None,
                    help="validation interval in steps (default: steps // 5)")
    ap.add_argument("--dropout", type=float, nargs=2, default=None, metavar=("IN", "MID"),
                    help="the input dropout and the two mid-network dropouts (the paper's "
                    "model: 0.2 0.5); 0 0 for short CPU budgets, where dropout mainly "
                    "slows learning")
    ap.add_argument("--clean-all", action="store_true",
                    help="also score clean top-1 on all 10 000 test images")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1) if args.device == "cpu" else None
    out = Path(args.out)
    results_path = out / "results.json"
    cset = None
    clean_all = None
    for arm in args.arms.split(","):
        # The config of `tvcli train ARM --data CIFAR ...` (tvcli/train/config.py).
        cfg = make_config(arm, args.data, out / arm, steps=args.steps, batch=args.batch,
                          lr=args.lr, seed=args.seed,
                          val_every=args.val_every or max(1, args.steps // 5),
                          ckpt_every=max(25, args.steps // 50), device=args.device,
                          width=args.width, dropout=args.dropout,
                          task_options={"train_per_class": args.train_per_class,
                                        "val_per_class": args.val_per_class})
        meta = train(cfg, progress=False)
        print(f"{arm}: {meta['step']} steps, {meta['wall_s']:.0f} s, history "
              f"{meta['history']}", flush=True)
        if cset is None:
            cset = corrupted_set(args.data, args.c_per_class,
                                 out / f"cifar10c-{args.c_per_class or 'all'}.npz", args.seed)
        from tvcli._safetensors import load_file

        model = build_model(arm, **meta["model_config"])
        state = load_file(str(out / arm / "ckpt.safetensors"))
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        model.to(args.device).eval()
        labels = torch.from_numpy(cset["labels"])
        row = {"clean": top1_accuracy(model, torch.from_numpy(cset["clean"]), labels,
                                      args.device)}
        for name in CORRUPTIONS:
            accs = [top1_accuracy(model, torch.from_numpy(cset[f"{name}/{s}"]), labels,
                                  args.device) for s in range(1, 6) if f"{name}/{s}" in cset]
            if accs:
                row[name] = float(np.mean(accs))
        types = [k for k in row if k != "clean"]
        row["all"] = float(np.mean([row[k] for k in types])) if types else None
        if args.clean_all:
            if clean_all is None:
                clean_all = load_cifar10(args.data, "test", None)
            row["clean_all"] = top1_accuracy(model, clean_all[0], clean_all[1], args.device)
        entry = {"top1": row, "steps": meta["step"], "wall_s": round(meta["wall_s"], 1),
                        "val_top1_history": meta["history"],
                        "lams": getattr(model, "lams", list)(),
                        "lam_history": lam_table(meta.get("lam_history", [])),
                        "budget": {"steps": args.steps, "batch": args.batch,
                                   "width": args.width, "dropout": args.dropout,
                                   "train_per_class":
                                   args.train_per_class, "val_per_class": args.val_per_class,
                                   "c_per_class": args.c_per_class, "seed": args.seed,
                                   "threads": torch.get_num_threads(),
                                   "device": args.device}}
        merge_result(results_path, arm, entry)
        print(json.dumps({arm: row}), flush=True)


if __name__ == "__main__":
    main()
