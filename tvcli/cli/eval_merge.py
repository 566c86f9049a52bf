"""Part files of a sharded ``tvcli eval`` and their merge into one report.

``tvcli eval PRED GT --shard K/N --summary part-{index}.json`` writes, besides
the shard's own report, what a data-set summary is computed from, per image:

* ``_wmse`` / ``_wmae`` / ``_npix``: the weighted MSE / MAE and the pixel
  count (WRMSE / WMAE pool over all pixels of the data set, as Zhu et al.'s
  script does, so the per-image values would not do);
* ``_edge_counts``: the four per-threshold match counts (ODS and AP are
  re-thresholded on the counts summed over the whole data set, OIS on each
  image's counts at its own best threshold);
* ``_index``: the image's position in the unsharded pairing order.

``tvcli eval --merge part-*.json`` checks that the parts come from one
evaluation (same metrics, data range, thresholds, match tolerance) and cover
every shard 0..N-1 exactly once, puts the images and errors back into the
unsharded order and recomputes the summary with the same code as an unsharded
run: PSNR / SSIM means over images, WRMSE / WMAE pooled over pixels,
ODS / OIS / AP from the merged counts. Floats survive JSON exactly (shortest
round-trip repr) and the sums run in the unsharded order, so the merged report
equals the unsharded one bit for bit (for edge metrics: given the same counts;
the BSDS matcher itself is randomised).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

KIND = "tvcli-eval-part"
VERSION = 1
_SETTINGS = ("metrics", "data_range", "thresholds", "max_dist", "nms")


def part_file(result: dict, rows: list[dict], errors: list, shard, n_planned: int,
              settings: dict, timings: dict) -> dict:
    """The JSON object of a part file (see the module docstring).

    Args:
        result: the shard's report, as ``--json`` prints it.
        rows: the evaluated rows with their private ``_...`` fields; ``_edge_counts``
            holds a :class:`tvcli.metrics.EdgeCounts`.
        errors: ``(name, message, order)`` with ``order`` = [0, i] for the i-th
            pairing problem and [1, i] for a failure of pair i.
        shard: the :class:`tvcli.cli.shard.Shard`, or None (the whole data set).
        n_planned: pairs in the whole data set.
        settings: metrics, data_range, thresholds, max_dist.
        timings: wall_s and images_per_s of this run.
    """
    raw = []
    for r in rows:
        item = {k: v for k, v in r.items() if k.startswith("_") and k != "_edge_counts"}
        c = r.get("_edge_counts")
        if c is not None:
            item["_edge_counts"] = {"count_r": c.count_r.tolist(), "sum_r": c.sum_r.tolist(),
                                    "count_p": c.count_p.tolist(), "sum_p": c.sum_p.tolist()}
        raw.append(item)
    return {
        "kind": KIND, "version": VERSION,
        "shard": shard.as_dict() if shard is not None else None,
        "settings": settings, "pairs_total": n_planned,
        "pred": result["pred"], "gt": result["gt"],
        "images": [{**pub, **priv} for pub, priv in zip(result["images"], raw, strict=True)],
        "errors": [{"name": n, "error": m, "order": o} for n, m, o in errors],
        "summary": result["summary"], "timings": timings,
    }


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ValueError(f"{path}: not a tvcli eval part file (write them with "
                         "`tvcli eval PRED GT --summary FILE.json`)")
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: part file version {data.get('version')}, this tvcli "
                         f"reads version {VERSION}")
    return data


def _check_cover(parts: list[tuple[Path, dict]]) -> None:
    """Every shard 0..N-1 exactly once (or one unsharded part)."""
    shards = [(p, d["shard"]) for p, d in parts]
    whole = [p for p, s in shards if s is None or s["count"] == 1]
    if whole:
        if len(parts) > 1:
            raise ValueError(f"{whole[0]} covers the whole data set; merge it alone")
        return
    counts = {s["count"] for _, s in shards}
    if len(counts) > 1:
        raise ValueError(f"the parts come from different shard counts: {sorted(counts)}")
    n = counts.pop()
    seen: dict[int, Path] = {}
    for p, s in shards:
        if s["index"] in seen:
            raise ValueError(f"shard {s['index']}/{n} appears twice: {seen[s['index']]} and {p}")
        seen[s["index"]] = p
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        listed = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise ValueError(f"missing shard(s) {listed} of {n}; merge needs all of them")


def merge_parts(paths: list[Path]) -> tuple[dict, list[tuple[str, str]]]:
    """Merges part files into the report of the whole data set.

    Returns:
        ``(result, errors)``: the report as ``tvcli eval --json`` prints it and the
        ``(name, message)`` errors in the unsharded order.

    Raises:
        ValueError: a file is unreadable or not a part file, the parts disagree on
            the settings, a shard is missing or repeated, an image appears twice.
    """
    from tvcli.cli.eval_report import build_report
    from tvcli.metrics import EdgeCounts

    if not paths:
        raise ValueError("--merge needs the part files")
    parts = [(Path(p), _load(Path(p))) for p in paths]
    first_path, first = parts[0]
    for p, d in parts[1:]:
        for key in _SETTINGS:
            if d["settings"].get(key) != first["settings"].get(key):
                raise ValueError(f"{p} and {first_path} differ in {key}: "
                                 f"{d['settings'].get(key)!r} vs {first['settings'].get(key)!r}")
        if d["pairs_total"] != first["pairs_total"]:
            raise ValueError(f"{p} and {first_path} saw different data sets "
                             f"({d['pairs_total']} vs {first['pairs_total']} pairs)")
    _check_cover(parts)
    rows: list[dict] = []
    errors: list[tuple] = []
    owner: dict[str, Path] = {}
    for p, d in parts:
        for r in d["images"]:
            if r["name"] in owner:
                raise ValueError(f"image {r['name']!r} is in {owner[r['name']]} and in {p}")
            owner[r["name"]] = p
            r = dict(r)
            if "psnr" in r and r["psnr"] is None:
                r["psnr"] = math.inf  # strict JSON wrote an infinite PSNR as null
            c = r.get("_edge_counts")
            if c is not None:
                r["_edge_counts"] = EdgeCounts(*(np.asarray(c[k], dtype=float) for k in
                                                 ("count_r", "sum_r", "count_p", "sum_p")))
            rows.append(r)
        errors.extend((e["name"], e["error"], e["order"]) for e in d["errors"])
    rows.sort(key=lambda r: r["_index"])
    errors.sort(key=lambda e: tuple(e[2]))
    counts = [r["_edge_counts"] for r in rows if r.get("_edge_counts") is not None]
    result = build_report(first["pred"], first["gt"], first["settings"], rows, counts, errors)
    return result, [(n, m) for n, m, _ in errors]
