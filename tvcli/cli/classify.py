"""Classifiers on the command line: ``tvcli run allconv* IMAGES`` and
``tvcli eval PRED LABELS -m top1``.

``tvcli run`` with a classifier prints, per image, the top class and the class
probabilities (softmax); with ``--json`` one JSON record per line, e.g.
``{"input": "a.png", "status": "ok", "class": "cat", "probability": 0.81,
"probabilities": {...}, "size": [32, 32], "resized_from": null}``. The networks
take 32x32 RGB: other sizes are resized to 32x32 (Pillow, Lanczos; the aspect
ratio is not kept) and ``resized_from`` gives the original [width, height]. Grey
images are replicated to RGB, alpha is dropped. A bad file gets an error record
(one line on stderr without --json) and the batch goes on; exit status 1.

``tvcli eval PRED LABELS -m top1``: PRED is the JSON-lines output of ``tvcli run
... --json`` (or a folder's worth of them in one file); LABELS is a CSV of
``stem,label`` rows (an optional header ``stem,label``) or a folder of
class-named subfolders (``LABELS/<class>/<stem>.<ext>``). Predictions are paired
with labels by file stem; unpaired or duplicate stems are reported on stderr.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from tvcli.cli._app import CLIError, apply_threads
from tvcli.cli.per_file import collect_images, emit, exit_status, record_error

CLASSIFIERS = ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")
_SIDE = 32


def is_classifier(model_name: str) -> bool:
    return model_name in CLASSIFIERS


def to_input(img, side: int = _SIDE):
    """float (H, W, C) in [0, 1] -> (float32 (3, side, side) tensor, resized_from or None)."""
    import numpy as np
    import torch
    from PIL import Image

    c = img.shape[2]
    rgb = img[:, :, :3] if c >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    h, w = rgb.shape[:2]
    resized_from = None
    if (h, w) != (side, side):
        resized_from = [w, h]
        chans = [Image.fromarray(np.asarray(rgb[:, :, k], np.float32), mode="F")
                 .resize((side, side), Image.LANCZOS) for k in range(3)]
        rgb = np.clip(np.stack([np.asarray(ch) for ch in chans], -1), 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))
    return x, resized_from


def run_classifier(model_name: str, inputs: list[str], *, output: str | None, device: str,
                   threads: int | None, recursive: bool, as_json: bool, quiet: bool) -> int:
    """Classifies the images; prints one line per file; returns the exit status."""
    import torch

    from tvcli import io
    from tvcli.cli.smooth import resolve_device
    from tvcli.models import WeightsError, load_pretrained

    if output is not None:
        raise CLIError("classifiers write no images: drop -o and redirect the printed "
                       "results (--json gives one JSON record per line)")
    apply_threads(threads)
    dev = resolve_device(device)
    try:
        model, entry = load_pretrained(model_name, device=dev)
    except (WeightsError, OSError) as exc:
        raise CLIError(str(exc)) from None
    classes = entry.get("classes") or [str(i) for i in range(model.config["num_classes"])]
    files = collect_images(inputs, recursive)
    if not files:
        raise CLIError("no input images found")
    failed = 0
    for f in files:
        rec: dict = {"input": f, "model": model_name, "weights": entry["file"]}
        try:
            if f == "-":
                img, _ = io.decode_image(sys.stdin.buffer.read(), "<stdin>")
            else:
                img, _ = io.read_image(f)
            x, resized_from = to_input(img)
            with torch.inference_mode():
                prob = torch.softmax(model(x.unsqueeze(0).to(dev)).float(), 1)[0].cpu()
            k = int(prob.argmax())
            rec.update(status="ok", **{"class": classes[k]},
                       probability=round(float(prob[k]), 6),
                       probabilities={c: round(float(p), 6) for c, p in
                                      zip(classes, prob.tolist(), strict=True)},
                       size=[_SIDE, _SIDE], resized_from=resized_from)
        except (OSError, ValueError) as exc:  # io.ImageError is a ValueError
            failed += 1
            record_error(rec, exc)
        line = ""
        if rec["status"] == "ok":
            note = (" (resized from {}x{})".format(*resized_from) if rec["resized_from"]
                    else "")
            line = f"{f}: {rec['class']} ({rec['probability']:.3f}){note}"
        emit(rec, as_json=as_json, quiet=quiet, line=line)
    return exit_status(failed, len(files))


# ------------------------------------------------------------------ eval top-1


def read_labels(gt: Path) -> dict[str, str]:
    """stem -> label from a ``stem,label`` CSV or class-named subfolders."""
    from tvcli.io import IMAGE_EXTENSIONS

    labels: dict[str, str] = {}
    dupes: list[str] = []
    if gt.is_dir():
        for cls_dir in sorted(d for d in gt.iterdir() if d.is_dir()):
            for f in sorted(cls_dir.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    if f.stem in labels:
                        dupes.append(f.stem)
                    labels[f.stem] = cls_dir.name
    elif gt.is_file():
        with open(gt, newline="") as fh:
            for i, row in enumerate(csv.reader(fh)):
                if not row or (i == 0 and [c.strip().lower() for c in row] == ["stem",
                                                                                 "label"]):
                    continue
                if len(row) != 2:
                    raise CLIError(f"{gt}, line {i + 1}: expected 'stem,label', got {row}", 2)
                stem, label = row[0].strip(), row[1].strip()
                if stem in labels:
                    dupes.append(stem)
                labels[stem] = label
    else:
        raise CLIError(f"{gt}: no such labels file or folder", 2)
    if dupes:
        raise CLIError(f"{gt}: stems labelled twice: {', '.join(sorted(set(dupes))[:5])}", 2)
    if not labels:
        raise CLIError(f"{gt}: no labels found", 2)
    return labels


def eval_top1(pred: Path, gt: Path, *, as_json: bool, as_csv: bool) -> int:
    """Top-1 accuracy of ``tvcli run --json`` records against labels; exit status."""
    from tvcli.cli._jsonout import dumps

    if not pred.is_file():
        raise CLIError(f"{pred}: expected the JSON-lines output of `tvcli run MODEL ... "
                       "--json`", 2)
    labels = read_labels(gt)
    preds: dict[str, str] = {}
    problems: list[str] = []
    for n, line in enumerate(pred.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            stem = Path(rec["input"]).stem
        except (ValueError, KeyError, TypeError):
            raise CLIError(f"{pred}, line {n}: not a `tvcli run --json` record", 2) from None
        if rec.get("status") != "ok":
            problems.append(f"{rec.get('input')}: not classified ({rec.get('error')})")
        elif stem in preds:
            problems.append(f"{stem}: predicted twice")
        else:
            preds[stem] = rec["class"]
    rows = []
    for stem in sorted(preds):
        if stem not in labels:
            problems.append(f"{stem}: no label")
            continue
        rows.append({"name": stem, "pred": preds[stem], "label": labels[stem],
                     "correct": preds[stem] == labels[stem]})
    problems += [f"{s}: no prediction" for s in sorted(set(labels) - set(preds))]
    top1 = 100.0 * sum(r["correct"] for r in rows) / len(rows) if rows else None
    if as_json:
        print(dumps({"metric": "top1", "top1": top1, "n": len(rows), "images": rows,
                     "errors": problems}))
    elif as_csv:
        w = csv.writer(sys.stdout)
        w.writerow(["name", "pred", "label", "correct"])
        for r in rows:
            w.writerow([r["name"], r["pred"], r["label"], int(r["correct"])])
        w.writerow(["mean", "", "", "" if top1 is None else f"{top1 / 100:.6f}"])
    else:
        print(f"top-1: {'n/a' if top1 is None else f'{top1:.2f} %'} over {len(rows)} images")
    for p in problems:
        print(f"tvcli: {p}", file=sys.stderr)
    return 1 if problems or not rows else 0
