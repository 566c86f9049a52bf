"""CAM vs CAM-TV on the synthetic WSOL benchmark: the table and the heat-map picture of
docs/wsol.md.

    python benchmarks/wsol_report.py score --data DATA RUN [RUN ...] --json docs/wsol.json
    python benchmarks/wsol_report.py figure --fashion-mnist PATH --out docs/img/wsol_cam.png

``score`` scores each run folder (``tvcli train cam[-tv] ... -o RUN``) with the task's
own test scoring (:meth:`tvcli.learning.tasks.wsol.WsolTask.evaluate`: CAM threshold chosen
on val = train-fullsup, ground-truth-class maps, test split), adds each run's budget
(steps, batch, wall time, threads) and prints a markdown table with the mean and
spread over seeds per model.

``figure`` pastes Fashion-MNIST test objects (textured, tinted, as the benchmark)
into the photos of ``examples/images`` -- never BSDS500 pixels -- and draws, per
image: the image with its ground-truth box | CAM | CAM-TV (heat-map overlays of the
shipped weights with their boxes at the CAM threshold chosen on train-fullsup).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("maxboxacc_v2", "maxboxacc_30", "maxboxacc_50", "maxboxacc_70", "pxap", "top1_cls",
        "top1_loc", "gt_known_loc")


def score(data: Path, runs: list[Path]) -> dict:
    from tvcli._safetensors import load_file
    from tvcli.learning.tasks import task_class
    from tvcli.models import build_model

    out = {}
    for run in runs:
        meta = json.loads((run / "ckpt.json").read_text())
        cfg = meta["config"]
        model = build_model(cfg["model"], **meta["model_config"])
        state = {k[6:]: v for k, v in load_file(str(run / "ckpt.safetensors")).items()
                 if k.startswith("model.")}
        model.load_state_dict(state)
        res = task_class("wsol").evaluate(model, data, "cpu")
        out[run.name] = {"model": cfg["model"], "seed": cfg["seed"], "steps": meta["step"],
                         "batch": cfg["batch"], "lr": cfg["lr"],
                         "wall_s": round(meta["wall_s"], 1), "threads": meta.get("threads"),
                         "val": res["val"], "test": res["test"]}
        print(f"{run.name}: " + ", ".join(f"{k} {res['test'][k]:.2f}" for k in KEYS
                                          if k in res["test"]), file=sys.stderr)
    return out


def lam_sweep(data: Path, run: Path, lams: list[float]) -> dict:
    """CAM-TV's lam chosen on val (train-fullsup), as the protocol chooses
    hyper-parameters. The TV layer before global pooling keeps each channel's mean, so
    the classifier a cam / cam-tv run learned is the one cam-tv learns at any lam: the
    run's CAM layer is reused under every lam; val MaxBoxAccV2 picks lam, then test is
    scored once at that lam."""
    from tvcli._safetensors import load_file
    from tvcli.learning.tasks import task_class
    from tvcli.learning.tasks.wsol import WsolTask, as_exported, score_split
    from tvcli.models import build_model

    meta = json.loads((run / "ckpt.json").read_text())
    state = {k[6:]: v for k, v in load_file(str(run / "ckpt.safetensors")).items()
             if k.startswith("model.") and not k.startswith("model.tv.")}
    cfg = {k: v for k, v in meta["model_config"].items() if k not in ("tv", "lam")}
    size = WsolTask._size(data, None)
    val, xv, yv = WsolTask._split(data, "val", size)
    sweep = {}
    for lam in lams:
        model = build_model("cam-tv", lam=lam, **cfg)
        model.load_state_dict(state, strict=False)
        r = score_split(as_exported(model), val, xv, yv, masks=False)
        sweep[lam] = r["maxboxacc_v2"]
        print(f"lam {lam:g}: val MaxBoxAccV2 {r['maxboxacc_v2']:.2f}", file=sys.stderr)
    best = max(lams, key=lambda v: (sweep[v], -abs(np.log(v))))
    model = build_model("cam-tv", lam=best, **cfg)
    model.load_state_dict(state, strict=False)
    res = task_class("wsol").evaluate(model, data, "cpu")
    return {"model": f"cam-tv, lam {best:g} (chosen on val)", "seed": meta["config"]["seed"],
            "from_run": run.name, "val_sweep": {str(k): v for k, v in sweep.items()},
            "lam": best, "val": res["val"], "test": res["test"]}


def centre_prior(data: Path) -> dict:
    """A map-free reference: the same Gaussian bump (sigma = side / 4) in the centre of
    every test image, its threshold chosen on val as for the models."""
    from tvcli.learning.tasks.wsol import WsolTask
    from tvcli.metrics_wsol import BoxAccumulator, MaskAccumulator

    size = WsolTask._size(data, None)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    bump = np.exp(-(xx ** 2 + yy ** 2) / (2 * (size / 4) ** 2))
    out = {}
    for split in ("val", "test"):
        s, _, _ = WsolTask._split(data, split, size)
        box, mask = BoxAccumulator(), MaskAccumulator()
        from tvcli.data.wsol import load_wsol_masks

        for iid in s.image_ids:
            box.add(bump, s.boxes[iid])
            mk = load_wsol_masks(s, iid, (size, size))
            if mk is not None:
                mask.add(bump, *mk)
        thr = out["val"]["threshold"] if split == "test" else None
        out[split] = {**box.result(thr), **({"pxap": mask.result()["pxap"]} if mask.count
                                            else {})}
    return out


def record_in_manifest(weights_dir: Path, results: dict) -> None:
    """Adds ``wsol_test`` (the run's test scores and the centre prior's) to the manifest
    entry of each shipped file trained by a scored run (same model, seed and steps)."""
    import os

    man_path = weights_dir / "manifest.json"
    man = json.loads(man_path.read_text())
    prior = results.get("centre-prior", {}).get("test", {})
    for e in man["weights"]:
        if e.get("task") != "wsol":
            continue
        for name, r in results.items():
            if (r.get("model"), r.get("seed"), r.get("steps")) == (e["model"], e["seed"],
                                                                   e["steps"]):
                e["wsol_test"] = {**{k: round(r["test"][k], 3) for k in KEYS
                                     if k in r["test"]}, "n": r["test"]["n"],
                                  "threshold": r["test"]["threshold"], "run": name,
                                  "centre_prior": {k: round(prior[k], 3) for k in KEYS
                                                   if k in prior}}
    tmp = man_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(man, indent=1) + "\n")
    os.replace(tmp, man_path)


def table(results: dict) -> str:
    by_model: dict[str, list[dict]] = {}
    for r in results.values():
        by_model.setdefault(r["model"], []).append(r)
    head = ("| model | seeds | " + " | ".join(KEYS) + " | CAM threshold (val) |\n|"
            + "---|" * (len(KEYS) + 3))
    rows = [head]
    for model, rs in sorted(by_model.items()):
        cells = []
        for k in KEYS:
            vals = [r["test"][k] for r in rs if k in r["test"]]
            if not vals:
                cells.append("-")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.2f}")
            else:
                cells.append(f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}")
        thr = ", ".join(f"{r['val']['threshold']:.2f}" for r in rs)
        rows.append(f"| {model} | {len(rs)} | " + " | ".join(cells) + f" | {thr} |")
    return "\n".join(rows)


def figure(fashion_mnist: Path, out: Path, n: int = 4, seed: int = 7) -> None:
    from PIL import Image

    from tvcli.cli.wsol import draw_boxes, localize, overlay
    from tvcli.data.wsol import _mask_box, compose, read_idx
    from tvcli.models import load_pretrained

    x = read_idx(fashion_mnist / "t10k-images-idx3-ubyte.gz")
    y = read_idx(fashion_mnist / "t10k-labels-idx1-ubyte.gz")
    photos = [np.asarray(Image.open(ROOT / "examples" / "images" / f).convert("RGB"))
              for f in ("astronaut.png", "camera.png", "coffee.png")]
    models = {m: load_pretrained(m) for m in ("cam", "cam-tv")}
    size = int(models["cam"][1]["input_size"])
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        def crop(p: np.ndarray) -> np.ndarray:
            h, w = p.shape[:2]
            s = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
            yy, xx = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            im = Image.fromarray(p[yy:yy + s, xx:xx + s]).resize((size, size), Image.BILINEAR)
            return np.asarray(im, np.float32) / 255.0

        bg = crop(photos[i % len(photos)])
        tex = crop(photos[(i + 1) % len(photos)])
        side = int(rng.integers(int(0.30 * size), int(0.65 * size) + 1))
        yy, xx = (int(rng.integers(0, size - side + 1)) for _ in range(2))
        k = int(rng.integers(len(x)))
        img, mask = compose(bg, tex, x[k], side, yy, xx,
                            rng.uniform(0.15, 1.0, 3).astype(np.float32))
        rgb = img.astype(np.float32) / 255.0
        panels = [draw_boxes(rgb, [list(_mask_box(mask))])]
        for name in ("cam", "cam-tv"):
            model, entry = models[name]
            res = localize(model, rgb, size, float(entry["cam_threshold"]), "cpu")
            c = res["cam"] - res["cam"].min()
            c = c / c.max() if c.max() > 0 else c
            panels.append(overlay(rgb, c, res["boxes"]))
        gap = np.ones((size, 4, 3), np.float32)
        rows.append(np.concatenate([panels[0], gap, panels[1], gap, panels[2]], 1))
        print(f"row {i}: class {int(y[k])}", file=sys.stderr)
    sheet = np.concatenate([np.concatenate([r, np.ones((4, r.shape[1], 3), np.float32)], 0)
                            for r in rows], 0)[:-4]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    Image.fromarray(np.uint8(np.clip(sheet, 0, 1) * 255 + 0.5)).save(tmp, quality=75)
    tmp.replace(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("runs", nargs="+", type=Path)
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--json", type=Path)
    s.add_argument("--manifest", type=Path, default=None,
                   help="a weights folder: record the test scores in its manifest")
    sw = sub.add_parser("lam-sweep")
    sw.add_argument("runs", nargs="+", type=Path)
    sw.add_argument("--data", type=Path, required=True)
    sw.add_argument("--lams", default="0.03,0.1,0.3,1,3")
    sw.add_argument("--json", type=Path)
    f = sub.add_parser("figure")
    f.add_argument("--fashion-mnist", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--rows", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cmd == "score":
        res = score(args.data, args.runs)
        res["centre-prior"] = {"model": "centre prior (no network)", "seed": None,
                               **centre_prior(args.data)}
        if args.manifest:
            record_in_manifest(args.manifest, res)
        if args.json:
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(res, indent=1) + "\n")
            tmp.replace(args.json)
        print(table(res))
    elif args.cmd == "lam-sweep":
        lams = [float(v) for v in args.lams.split(",")]
        res = {f"{r.name}-lam": lam_sweep(args.data, r, lams) for r in args.runs}
        if args.json:
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(res, indent=1) + "\n")
            tmp.replace(args.json)
        print(table(res))
    else:
        figure(args.fashion_mnist, args.out, args.rows)


if __name__ == "__main__":
    main()
