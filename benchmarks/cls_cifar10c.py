"""The paper's section 4.2 report: clean top-1 and CIFAR-10-C top-1 per corruption
type (mean over the 5 severities) and overall, as in the paper's Table 2, of the
three arms All-Conv, TV-Smooth and TV-Sharp trained by ``tvcli train`` at an equal
budget (same steps, batch, schedule, augmentation, seed).

It trains nothing: each arm is a ``tvcli train`` run folder ``RUNS/<arm>`` (its last
checkpoint). Scoring is the classify task's (:func:`tvcli.learning.tasks.classify.top1_accuracy`,
as ``ClassifyTask.evaluate``). Each arm is written to ``OUT/results.json`` as soon
as it is scored (arms may be scored by parallel processes); the corrupted test
subset is cached (``OUT/cifar10c-<n>.npz``, git-ignored under runs/).

Example (the CPU smoke budget of docs/classification.md):
    for arm in allconv allconv-tv-smooth allconv-tv-sharp; do
      OMP_NUM_THREADS=1 tvcli train $arm --data ../shared/data/cifar10/cifar10-jpeg.tar.gz \\
          --out runs/cls-smoke/$arm --steps 30 --width 8 --batch 16 --val-every 6 \\
          --ckpt-every 25 --train-per-class 100 --val-per-class 10 --threads 1 --quiet
    done
    OMP_NUM_THREADS=1 python benchmarks/cls_cifar10c.py \\
        --data ../shared/data/cifar10/cifar10-jpeg.tar.gz --out runs/cls-smoke --c-per-class 1
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
from tvcli.learning.tasks.classify import top1_accuracy
from tvcli.learning.train.checkpoint import load_model_state
from tvcli.learning.train.export import lam_table
from tvcli.models import build_model

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


def score_arm(model: torch.nn.Module, cset: dict, device: str = "cpu") -> dict:
    """Top-1 (percent) on the clean subset, per corruption type (mean over the
    severities present) and over all types ("all")."""
    labels = torch.from_numpy(cset["labels"])
    row = {"clean": top1_accuracy(model, torch.from_numpy(cset["clean"]), labels, device)}
    for name in CORRUPTIONS:
        accs = [top1_accuracy(model, torch.from_numpy(cset[f"{name}/{s}"]), labels, device)
                for s in range(1, 6) if f"{name}/{s}" in cset]
        if accs:
            row[name] = float(np.mean(accs))
    types = [k for k in row if k != "clean"]
    row["all"] = float(np.mean([row[k] for k in types])) if types else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the CIFAR-10 JPEG .tar.gz or its folder")
    ap.add_argument("--out", default="runs/cls", help="results.json and the CIFAR-10-C cache")
    ap.add_argument("--runs", default=None,
                    help="folder of the arms' `tvcli train` run folders (default: --out)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    ap.add_argument("--c-per-class", type=int, default=None,
                    help="test images per class for CIFAR-10-C (None = all 1000)")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--clean-all", action="store_true",
                    help="also score clean top-1 on all 10 000 test images")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1) if args.device == "cpu" else None
    out = Path(args.out)
    runs = Path(args.runs) if args.runs else out
    results_path = out / "results.json"
    cset = None
    clean_all = None
    for arm in args.arms.split(","):
        run = runs / arm
        if not (run / "ckpt.json").exists():
            raise SystemExit(f"{run}: no checkpoint; train the arm first (`tvcli train {arm} "
                             f"--data {args.data} --out {run} ...`)")
        meta = json.loads((run / "ckpt.json").read_text())
        cfg = meta["config"]
        if cset is None:
            cset = corrupted_set(args.data, args.c_per_class,
                                 out / f"cifar10c-{args.c_per_class or 'all'}.npz", args.seed)
        model = build_model(arm, **meta["model_config"])
        model.load_state_dict(load_model_state(run))
        model.to(args.device).eval()
        row = score_arm(model, cset, args.device)
        if args.clean_all:
            if clean_all is None:
                clean_all = load_cifar10(args.data, "test", None)
            row["clean_all"] = top1_accuracy(model, clean_all[0], clean_all[1], args.device)
        mc, tc = meta["model_config"], cfg.get("task_config", {})
        dropout = ([mc["dropout_in"], mc["dropout"]] if "dropout_in" in mc else None)
        entry = {"top1": row, "steps": meta["step"], "wall_s": round(meta["wall_s"], 1),
                 "val_top1_history": meta["history"],
                 "lams": getattr(model, "lams", list)(),
                 "lam_history": lam_table(meta.get("lam_history", [])),
                 "budget": {"steps": cfg["steps"], "batch": cfg["batch"],
                            "width": mc.get("width"), "dropout": dropout,
                            "train_per_class": tc.get("train_per_class"),
                            "val_per_class": tc.get("val_per_class"),
                            "c_per_class": args.c_per_class, "seed": cfg["seed"],
                            "threads": meta.get("threads"), "device": cfg["device"],
                            "run": str(run)}}
        merge_result(results_path, arm, entry)
        print(json.dumps({arm: row}), flush=True)


if __name__ == "__main__":
    main()
