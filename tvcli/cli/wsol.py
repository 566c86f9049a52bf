"""Weakly supervised localization on the command line: ``tvcli run cam[-tv] IMAGES`` and
``tvcli eval PRED GT -m wsol``.

``tvcli run cam-tv photos/ -o out/`` writes per image ``NAME``:

* ``out/NAME.cam.png`` -- the class activation map of the predicted class at the
  image's size, min-max normalised and stored as 16-bit grey (0-65535; the raw
  range is in the JSON record as ``cam_range``);
* ``out/NAME.overlay.png`` -- 8-bit RGB: the photo blended with the map (a blue -
  green - red colour ramp) and the predicted boxes drawn in white;
* ``out/NAME.json`` -- the record that ``--json`` prints: ``class``,
  ``class_index``, ``probability``, ``boxes`` (inclusive ``[x0, y0, x1, y1]`` in
  the image's pixels, one per contour of the map at ``cam_threshold``, largest
  first), ``cam_threshold`` (the one chosen on train-fullsup when the weights were
  exported), ``size`` and ``cam_range``.

Without ``-o`` the files go beside each input as ``NAME.MODEL.cam.png`` etc. Inputs
are never overwritten, nor existing outputs unless ``--overwrite``. The network sees
the image resized to its input size (the manifest's ``input_size``, bilinear); the
map is upsampled from the network's stride-16 grid straight to the image's size.
A bad file gets one error line (or an error record) and the batch goes on; exit 1.

``tvcli eval PRED GT -m wsol``: PRED is such an output folder, GT the split folder
of a benchmark's metadata (``DATA/metadata/test``: the wsolevaluation layout, see
:mod:`tvcli.data.wsol`). Images are paired by file stem. Reported: MaxBoxAccV2 (and
at IoU 30/50/70), PxAP where the split has masks, top-1 cls, and top-1 loc /
GT-known loc at the ``cam_threshold`` of the records. The maps are those of the
*predicted* class (``tvcli run`` knows no labels): for correctly classified images
they equal the ground-truth-class maps of Choe et al.'s protocol; ``tvcli``'s own
scoring of the shipped weights (``docs/wsol.md``) uses ground-truth-class maps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tvcli.cli._app import CLIError
from tvcli.cli.per_file import collect_images, emit, exit_status, record_error

LOCALIZERS = ("cam", "cam-tv")


def is_localizer(model_name: str) -> bool:
    return model_name in LOCALIZERS


def colour_ramp(v: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) float RGB: blue (0) - cyan - green - yellow - red (1)."""
    r = np.clip(np.minimum(4 * v - 2, 1.0), 0, 1)
    g = np.clip(np.minimum(4 * v, 4 - 4 * v), 0, 1)
    b = np.clip(np.minimum(1.0, 2 - 4 * v), 0, 1)
    return np.stack([r, g, b], -1)


def overlay(rgb: np.ndarray, cam01: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
    """``rgb`` (H, W, 3) float [0, 1], ``cam01`` (H, W) [0, 1] -> (H, W, 3) float: half
    photo, half colour-ramped map, boxes drawn 1 px wide in white."""
    return draw_boxes(0.5 * rgb + 0.5 * colour_ramp(cam01), boxes)


def draw_boxes(rgb: np.ndarray, boxes: list[list[int]], value: float = 1.0) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) float with inclusive boxes drawn 1 px wide."""
    out = np.array(rgb, dtype=np.float64)
    h, w = out.shape[:2]
    for x0, y0, x1, y1 in boxes:
        x1, y1 = min(x1, w - 1), min(y1, h - 1)
        out[y0, x0:x1 + 1] = out[y1, x0:x1 + 1] = value
        out[y0:y1 + 1, x0] = out[y0:y1 + 1, x1] = value
    return out


def localize(model, rgb: np.ndarray, input_size: int, threshold: float, device: str
             ) -> dict:
    """One image: ``rgb`` (H, W, 3) float [0, 1] -> {"logits" (K,), "cam" (H, W) raw
    float32 of the predicted class, "boxes" at ``threshold``, largest first}."""
    import torch
    from PIL import Image
    from torch.nn import functional as F

    from tvcli.metrics_wsol import boxes_from_cam

    h, w = rgb.shape[:2]
    if (h, w) != (input_size, input_size):
        chans = [Image.fromarray(np.asarray(rgb[:, :, k], np.float32), mode="F")
                 .resize((input_size, input_size), Image.BILINEAR) for k in range(3)]
        x = np.clip(np.stack([np.asarray(c) for c in chans], 0), 0, 1)
    else:
        x = rgb.transpose(2, 0, 1)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(device)
    with torch.inference_mode():
        logits, maps = model.cam(xt)
        k = int(logits[0].argmax())
        cam = F.interpolate(maps[:, k:k + 1].float(), size=(h, w), mode="bilinear",
                            align_corners=False)[0, 0].cpu().numpy()
    (boxes,) = boxes_from_cam(cam, [threshold])
    boxes = sorted(boxes.tolist(), key=lambda b: -(b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return {"logits": logits[0].float().cpu(), "cam": cam, "boxes": boxes}


def run_localizer(model_name: str, inputs: list[str], *, output: str | None, device: str,
                  threads: int | None, recursive: bool, as_json: bool, quiet: bool,
                  overwrite: bool) -> int:
    """``tvcli run cam[-tv]``: class, heat-map and boxes per image; returns the exit
    status."""
    import torch

    from tvcli import io
    from tvcli.cli.smooth import resolve_device
    from tvcli.metrics_wsol import normalize_cam
    from tvcli.models import WeightsError, load_pretrained

    if output == "-":
        raise CLIError("localizers write several files per image: give -o FOLDER")
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    try:
        model, entry = load_pretrained(model_name, device=dev)
    except (WeightsError, OSError, ImportError) as exc:  # ImportError: the backbone's package
        raise CLIError(str(exc).splitlines()[0]) from None
    classes = entry.get("classes") or [str(i) for i in range(model.config["num_classes"])]
    size = int(entry.get("input_size", 128))
    threshold = float(entry.get("cam_threshold", 0.2))
    files = collect_images(inputs, recursive)
    if not files:
        raise CLIError("no input images found")
    if "-" in files:
        raise CLIError("localizers read files, not stdin ('-')")
    out_dir = Path(output) if output is not None else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise CLIError(f"-o {out_dir}: not a folder")
        stems = [Path(f).stem for f in files]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise CLIError(f"two inputs share the name {dup[0]!r}: their outputs would "
                           "collide in one folder")
        io.ensure_folder(out_dir)
    failed = 0
    for f in files:
        src = Path(f)
        base = (out_dir / src.stem) if out_dir is not None else src.with_name(
            f"{src.stem}.{model_name}")
        paths = {k: Path(f"{base}.{ext}") for k, ext in
                 (("cam", "cam.png"), ("overlay", "overlay.png"), ("json", "json"))}
        rec: dict = {"input": f, "model": model_name, "weights": entry["file"]}
        try:
            clash = [p for p in paths.values() if p.exists()]
            if any(p.resolve() == src.resolve() for p in paths.values()):
                raise ValueError("an output would overwrite the input")
            if clash and not overwrite:
                raise ValueError(f"{clash[0]} exists (--overwrite replaces it)")
            img, _ = io.read_image(f)
            c = img.shape[2]
            rgb = img[:, :, :3] if c >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
            rgb = np.clip(rgb, 0, 1)
            res = localize(model, rgb, size, threshold, dev)
            prob = torch.softmax(res["logits"], 0)
            k = int(prob.argmax())
            cam01 = normalize_cam(res["cam"])
            io.write_image(paths["cam"], cam01.astype(np.float32), dtype="uint16")
            io.write_image(paths["overlay"], overlay(rgb, cam01, res["boxes"]), dtype="uint8")
            rec.update(status="ok", **{"class": classes[k]}, class_index=k,
                       probability=round(float(prob[k]), 6), boxes=res["boxes"],
                       cam_threshold=threshold, size=[rgb.shape[1], rgb.shape[0]],
                       cam_range=[float(res["cam"].min()), float(res["cam"].max())],
                       outputs={n: str(p) for n, p in paths.items()})
            io.atomic_write_bytes(paths["json"], (json.dumps(rec) + "\n").encode())
        except (OSError, ValueError) as exc:  # io.ImageError is a ValueError
            failed += 1
            record_error(rec, exc)
        line = (f"{f}: {rec['class']} ({rec['probability']:.3f}), box {rec['boxes'][0]} "
                f"-> {paths['overlay']}" if rec["status"] == "ok" else "")
        emit(rec, as_json=as_json, quiet=quiet, line=line)
    return exit_status(failed, len(files))


def eval_wsol(pred: Path, gt: Path, *, as_json: bool, as_csv: bool) -> int:
    """``tvcli eval PRED GT -m wsol`` (see the module docstring); exit status."""
    from tvcli import io
    from tvcli.cli._jsonout import dumps
    from tvcli.data.wsol import WsolDataError, load_wsol_masks, read_wsol_split
    from tvcli.metrics_wsol import BoxAccumulator, MaskAccumulator

    if not pred.is_dir():
        raise CLIError(f"{pred}: expected the output folder of `tvcli run cam[-tv] ... -o "
                       "FOLDER`", 2)
    split_name = gt.name
    if not (gt / "image_ids.txt").is_file() or gt.parent.name != "metadata":
        raise CLIError(f"{gt}: expected a split folder of WSOL metadata, e.g. "
                       "DATA/metadata/test (with image_ids.txt)", 2)
    try:
        split = read_wsol_split(gt.parents[1], split_name)
    except WsolDataError as exc:
        raise CLIError(str(exc), 2) from None
    if not split.boxes and not split.masks:
        raise CLIError(f"{gt}: the split has neither boxes nor masks (localization.txt) "
                       "to score", 2)
    stems: dict[str, str] = {}
    for iid in split.image_ids:
        s = Path(iid).stem
        if s in stems:
            raise CLIError(f"{gt}: image ids {stems[s]!r} and {iid!r} share the stem {s!r}", 2)
        stems[s] = iid
    problems: list[str] = []
    boxes, masks = BoxAccumulator(), MaskAccumulator()
    threshold = None
    rows = []
    cls_hits = 0
    for s, iid in stems.items():
        cam_p, rec_p = pred / f"{s}.cam.png", pred / f"{s}.json"
        if not cam_p.is_file() or not rec_p.is_file():
            problems.append(f"{iid}: no prediction ({cam_p.name}, {rec_p.name})")
            continue
        try:
            rec = json.loads(rec_p.read_text())
            cam, _ = io.read_image(cam_p)
            k = int(rec["class_index"])
            t = float(rec["cam_threshold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{iid}: unreadable prediction ({str(exc).splitlines()[0]})")
            continue
        threshold = t if threshold is None else threshold
        if t != threshold:
            problems.append(f"{iid}: cam_threshold {t} differs from {threshold}; skipped")
            continue
        cam = cam[:, :, 0].astype(np.float64)
        h, w = cam.shape
        sw, sh = split.sizes.get(iid, (w, h))
        fx, fy = w / sw, h / sh
        gtb = [(int(x0 * fx), int(y0 * fy), min(w - 1, int(x1 * fx)), min(h - 1, int(y1 * fy)))
               for x0, y0, x1, y1 in split.boxes.get(iid, [])]
        try:
            mk = load_wsol_masks(split, iid, (h, w))
        except WsolDataError as exc:
            problems.append(str(exc))
            continue
        if not gtb and mk is None:
            problems.append(f"{iid}: no ground-truth box or mask")
            continue
        correct = k == split.labels[iid]
        row = {"name": iid, "correct": correct}
        if gtb:  # boxes (CUB, ImageNet, the synthetic set)
            row["best_iou"] = float(boxes.add(cam, gtb, correct=correct).max())
        else:
            cls_hits += correct
        if mk is not None:  # masks (OpenImages, the synthetic set)
            masks.add(cam, mk[0], mk[1])
        rows.append(row)
    if not rows:
        for p in problems[:5]:
            print(f"tvcli: {p}", file=sys.stderr)
        raise CLIError(f"no image of {gt} has a prediction in {pred}", 2)
    res = boxes.result(threshold) if boxes.count else {
        "n": len(rows), "top1_cls": 100.0 * cls_hits / len(rows)}
    if masks.count:
        res["pxap"] = masks.result()["pxap"]
    keys = ["maxboxacc_v2", "maxboxacc_30", "maxboxacc_50", "maxboxacc_70", "pxap",
            "top1_cls", "top1_loc", "gt_known_loc", "threshold", "n"]
    summary = {k: res[k] for k in keys if k in res}
    if as_json:
        print(dumps({"metric": "wsol", **summary, "images": rows, "errors": problems}))
    elif as_csv:
        print(",".join(summary))
        print(",".join(f"{v:.4f}" if isinstance(v, float) else str(v)
                       for v in summary.values()))
    else:
        for k, v in summary.items():
            print(f"{k:>14}  {v:.2f}" if isinstance(v, float) else f"{k:>14}  {v}")
    for p in problems[:10]:
        print(f"tvcli: {p}", file=sys.stderr)
    if len(problems) > 10:
        print(f"tvcli: ... and {len(problems) - 10} more problems ({len(rows)} images "
              "scored)", file=sys.stderr)
    return 1 if problems else 0
