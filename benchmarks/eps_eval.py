"""Edge-preserving smoothing on tvcli's SUBSTITUTE benchmark -> docs/eps.json + a table.

    python benchmarks/eps_eval.py --data data/eps --run eps=runs/eps --run eps-tv=runs/eps-tv
    python benchmarks/eps_eval.py --data data/eps --shipped eps eps-tv

The data folder is written by ``tvcli data eps`` (BSDS500 photos, five
classical OpenCV filters as ground truths, uniform weights; a substitute for Zhu
et al.'s BenchmarkEPS, never the real one). Rows, all on the ``test`` photos:

* input: the photo itself;
* TV prox: the converged 2-D TV prox (the paper's "L1 smooth" row is an L1
  transform; the plain TV prox stands in for it) with the single lam, from a
  grid, that has the lowest WRMSE on the ``val`` photos;
* each classical filter, scored against the *other* filters' ground truths
  (against all five, its own would count as error 0);
* the learned models, from run folders (``NAME=RUN``: the run's last
  checkpoint) or from the shipped weights (``--shipped``).

Metrics exactly as Zhu et al.'s script: WRMSE / WMAE pooled over all test
pixels, 0-255 scale, uniform weights (:func:`tvcli.metrics.pooled_weighted_errors`,
as the eps task's scoring); and per filter the mean PSNR (dB) of the method's
output against that filter's ground truth. The models' outputs come from the
task's forward pass (:func:`tvcli.learning.tasks.eps.predict`, as ``EpsTask.evaluate``).
Every output is rounded to 8 bits first (what a written PNG holds). Seconds per
megapixel: median over the first ``--time-images`` photos x ``--repeats``, all
methods timed in turn
on each photo (so load changes hit all alike), one thread for torch and
OpenCV, with the machine's load recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
LAMS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.045, 0.065, 0.09)  # [0, 1] intensity units


def _q8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> the 0-255 values an 8-bit PNG would hold (float64)."""
    return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255)


def _scores(preds: list[np.ndarray], gts: list[np.ndarray], names: list[str],
            leave_out: int | None = None) -> dict:
    """WRMSE / WMAE (pooled, 0-255) and per-filter mean PSNR.

    preds: per image (3, H, W) in 0-255; gts: per image (K, 3, H, W) in 0-255.
    leave_out: a filter index excluded from WRMSE / WMAE (the filter's own row).
    """
    from tvcli.metrics import pooled_weighted_errors

    keep = [k for k in range(len(names)) if k != leave_out]
    wr, wa = pooled_weighted_errors([torch.from_numpy(p) for p in preds],
                                    [torch.from_numpy(g[keep]) for g in gts])
    out = {"wrmse": wr, "wmae": wa, "psnr": {}}
    for k, n in enumerate(names):
        if k == leave_out:
            continue
        ps = [10 * np.log10(255.0 ** 2 / max(np.mean((p - g[k]) ** 2), 1e-12))
              for p, g in zip(preds, gts, strict=True)]
        out["psnr"][n] = float(np.mean(ps))
    return out


def _load_run(name: str, run: Path) -> tuple[torch.nn.Module, dict]:
    from tvcli.learning.train.checkpoint import load_model_state
    from tvcli.models import build_model

    meta = json.loads((run / "ckpt.json").read_text())
    model = build_model(name, **meta["model_config"])
    model.load_state_dict(load_model_state(run))
    cfg = meta["config"]
    info = {"source": f"run {run}", "steps": meta["step"], "wall_s": round(meta["wall_s"], 1),
            "batch": cfg["batch"], "patch": cfg["patch"], "config": meta["model_config"]}
    return model.eval(), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--test", type=int, default=None, help="first N test photos (default all)")
    ap.add_argument("--run", action="append", default=[], metavar="MODEL=RUN_DIR")
    ap.add_argument("--shipped", nargs="*", default=[], metavar="MODEL")
    ap.add_argument("--time-images", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "eps.json")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from tvcli.data.eps import FILTERS, apply_filter, load_eps_split
    from tvcli.prox2d import prox_tv2d

    names = [f.name for f in FILTERS]
    test = load_eps_split(args.data, "test", args.test)
    val = load_eps_split(args.data, "val")
    gts = [g.astype(np.float64) * 255.0 for _, _, g in test]
    gts = [np.rint(g) for g in gts]
    nt = min(args.time_images, len(test))
    load_before = os.getloadavg()
    rows: dict[str, dict] = {}

    def timed(fn, x) -> tuple[np.ndarray, float]:
        t = time.perf_counter()
        y = fn(x)
        return y, time.perf_counter() - t

    # input
    preds = [_q8(x) for _, x, _ in test]
    rows["input"] = _scores(preds, gts, names)

    # best-lam TV prox, lam chosen on val
    def tv(x, lam):
        with torch.no_grad():
            return prox_tv2d(torch.from_numpy(x)[None], lam)[0].numpy()

    val_gts = [np.rint(g.astype(np.float64) * 255.0) for _, _, g in val]
    sweep = {}
    for lam in LAMS:
        sweep[lam] = _scores([_q8(tv(x, lam)) for _, x, _ in val], val_gts, names)["wrmse"]
        print(f"val TV lam {lam}: WRMSE {sweep[lam]:.3f}", flush=True)
    best = min(sweep, key=sweep.get)
    outs = [_q8(tv(x, best)) for _, x, _ in test]
    timers = {"tv": lambda a: tv(a, best)}
    rows["tv"] = {**_scores(outs, gts, names), "lam": best,
                  "lam_255": best * 255, "val_sweep": {str(k): v for k, v in sweep.items()}}
    print("tv", rows["tv"]["wrmse"], flush=True)

    # each classical filter against the others' ground truths
    def u8(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((a.transpose(1, 2, 0) * 255).round().astype(np.uint8))

    for k, f in enumerate(FILTERS):
        timers[f"filter:{f.name}"] = lambda a, f=f: apply_filter(f, u8(a))
        rows[f"filter:{f.name}"] = {**_scores([g[k] for g in gts], gts, names, leave_out=k),
                                    "vs": "the other filters"}
        print(f.name, rows[f"filter:{f.name}"]["wrmse"], flush=True)

    # learned models
    models = []
    for spec in args.run:
        name, run = spec.split("=", 1)
        models.append((name, *_load_run(name, Path(run))))
    for name in args.shipped:
        from tvcli.models import load_pretrained

        m, entry = load_pretrained(name)
        models.append((name, m, {"source": f"weights/{entry['file']}", "steps": entry["steps"],
                                 "wall_s": entry["wall_s"], "config": entry["config"]}))
    from tvcli.learning.tasks.eps import predict

    photos = [torch.from_numpy(np.rint(x * 255.0).astype(np.uint8)) for _, x, _ in test]
    for name, model, info in models:
        def fwd(a, model=model):  # timing only: the photo as it is in memory
            with torch.inference_mode():
                return model(torch.from_numpy(a)[None])[0].numpy()
        outs = [_q8(y.numpy()) for y in predict(model, photos)]
        timers[name] = fwd
        extra = {}
        if hasattr(model, "tv_out"):
            extra["lam_out_255"] = float(model.tv_out.lam.detach()[0]) * 255
        rows[name] = {**_scores(outs, gts, names), **info, **extra}
        print(name, rows[name]["wrmse"], rows[name]["wmae"], flush=True)

    # Seconds per megapixel, interleaved (photo by photo, every method in turn,
    # --repeats times) so that a change of machine load hits all methods alike.
    times: dict[str, list[float]] = {k: [] for k in timers}
    for _, x, _ in test[:nt]:
        mp = x.shape[1] * x.shape[2] / 1e6
        for _ in range(args.repeats):
            for key, fn in timers.items():
                _, t = timed(fn, x)
                times[key].append(t / mp)
    rows["input"]["s_per_mp"] = 0.0
    for key, ts in times.items():
        rows[key]["s_per_mp"] = float(np.median(ts))

    result = {
        "benchmark": "SUBSTITUTE for Zhu et al.'s BenchmarkEPS (tvcli data eps)",
        "data_digest": json.loads((args.data / "manifest.json").read_text())["digest"],
        "test_images": [s for s, _, _ in test], "val_images": [s for s, _, _ in val],
        "filters": names, "rows": rows,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "threads": 1, "timed_images": nt, "repeats": args.repeats,
                    "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg(), "torch": torch.__version__},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The markdown table of docs/eps.md."""
    names = result["filters"]
    head = ("| method | WRMSE ↓ | WMAE ↓ | " + " | ".join(f"PSNR vs {n}" for n in names)
            + " | s/MP |")
    lines = [head, "|" + " --- |" * (4 + len(names))]
    for key, r in result["rows"].items():
        label = {"input": "input (no smoothing)",
                 "tv": f"TV prox, best lam on val ({r.get('lam_255', 0):.2f} in 0-255)",
                 "eps": "ResNet (tvcli `eps`)", "eps-tv": "ResNet-TV (tvcli `eps-tv`)"}.get(
                     key, key.replace("filter:", "") + " (vs the other 4)")
        ps = " | ".join(f"{r['psnr'][n]:.2f}" if n in r["psnr"] else "—" for n in names)
        lines.append(f"| {label} | {r['wrmse']:.2f} | {r['wmae']:.2f} | {ps} | "
                     f"{r['s_per_mp']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
