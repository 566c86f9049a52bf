"""``tvcli eval PRED GT``: image-quality and edge metrics over files or folders.

Pairing
  * PRED and GT are both files: one pair.
  * Both folders: every image under PRED (recursively) is paired with the
    ground truth of the same relative path without extension, so
    ``pred/sub/a.png`` pairs with ``gt/sub/a.png``, ``gt/sub/a.tif`` or the
    multi-ground-truth folder ``gt/sub/a/`` (below). A prediction with no
    counterpart, a ground truth with no prediction, two candidate files for one
    stem, unreadable files and size mismatches are reported on stderr, one line
    each; the other images are still evaluated and the exit status is then 1.

Several ground truths per image (WRMSE / WMAE, BSDS-style edge sets)
  ``gt/<stem>/`` holds the K ground-truth images of ``pred/<stem>.<ext>``
  (any names), optionally with ``gt/<stem>/weights.json``, a JSON object
  mapping file names in that folder to annotator votes (numbers >= 0), e.g.
  ``{"gt_0.png": 3, "gt_1.png": 1}``. With weights.json exactly the files it
  names are used; without it every image in the folder, with equal votes.
  Votes are normalised to sum 1 per image (see :mod:`tvcli.metrics`). PSNR and
  SSIM against several ground truths are the weighted means over them. The
  data-set WRMSE / WMAE pool the weighted errors over all pixels of all images
  (Zhu et al.'s evaluation script), so images of different sizes weigh by
  their pixel counts. The EPS substitute benchmark (``tvcli data eps``) writes
  this layout: ``gt/<stem>/<filter>.png``.

BSDS ground truths (edge metrics)
  A ground truth ``gt/<stem>.mat`` in the BSDS300/500 layout (a cell
  ``groundTruth`` of structs with ``Boundaries``, read with SciPy) counts as
  its K annotators' boundary maps, each a ground truth, as the BSDS benchmark
  does: ``tvcli eval edges/ BSDS500/groundTruth/test -m ods,ois,ap``. Edge maps
  are thinned at every threshold; ``--nms`` first applies non-maximum
  suppression (for dense maps; :func:`tvcli.edge_eval.nms`). The benchmark is
  tvcli's own (:mod:`tvcli.edge_eval`); ``--jobs`` evaluates images in parallel.

Units
  Images are read into [0, 1] (8-bit / 255, 16-bit / 65535; float files as
  stored). ``--data-range`` is the range of the data as read (1 unless float
  files hold other values); PSNR is in dB, SSIM unitless, WRMSE / WMAE in 8-bit
  grey levels (x 255 / data range, as in Zhu et al. 2019 and the paper's
  Table 5), ODS / OIS / AP unitless. Edge maps with several channels are
  averaged to one; ground-truth edge maps count every non-zero pixel.
"""

from __future__ import annotations

import csv
import glob
import io as _io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from tvcli.cli._app import CLIError, app
from tvcli.cli._jsonout import dumps
from tvcli.cli.eval_report import EDGE_METRICS as _EDGE
from tvcli.cli.eval_report import build_report
from tvcli.cli.shard import SHARD_HELP
from tvcli.formats import IMAGE_EXTENSIONS

METRICS = ("psnr", "ssim", "wrmse", "wmae", "ods", "ois", "ap")
_DEFAULT = "psnr,ssim"


@dataclass
class Pair:
    """One prediction and its ground truths (paths) with votes."""

    name: str
    pred: Path
    gts: list[Path] = field(default_factory=list)
    votes: list[float] = field(default_factory=list)


_GT_EXTENSIONS = tuple(IMAGE_EXTENSIONS) + (".mat",)


def _images_under(root: Path, exts=IMAGE_EXTENSIONS) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and p.suffix.lower() in exts)


def _gt_set(folder: Path) -> tuple[list[Path], list[float]]:
    """The ground truths and votes of a multi-ground-truth folder."""
    wfile = folder / "weights.json"
    if wfile.is_file():
        try:
            table = json.loads(wfile.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{wfile}: not valid JSON ({exc})") from None
        if not isinstance(table, dict) or not table:
            raise ValueError(f"{wfile}: expected an object mapping file names to votes")
        paths, votes = [], []
        for fname, vote in table.items():
            if not isinstance(vote, (int, float)) or isinstance(vote, bool) or vote < 0 \
                    or not math.isfinite(vote):
                raise ValueError(f"{wfile}: vote for {fname!r} must be a number >= 0")
            if not (folder / fname).is_file():
                raise ValueError(f"{wfile}: names {fname!r}, which is not in {folder}")
            paths.append(folder / fname)
            votes.append(float(vote))
        if sum(votes) <= 0:
            raise ValueError(f"{wfile}: all votes are 0")
        return paths, votes
    paths = sorted(p for p in folder.iterdir() if p.is_file()
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"{folder}: ground-truth folder holds no images")
    return paths, [1.0] * len(paths)


def pair_up(pred: Path, gt: Path) -> tuple[list[Pair], list[tuple[str, str]]]:
    """Pairs predictions with ground truths. Returns ``(pairs, errors)`` where
    errors are ``(name, message)`` for entries that cannot be evaluated."""
    if not pred.exists():
        raise CLIError(f"{pred}: no such file or folder", 2)
    if not gt.exists():
        raise CLIError(f"{gt}: no such file or folder", 2)
    errors: list[tuple[str, str]] = []
    if pred.is_file():
        if gt.is_dir():
            # One prediction against a multi-ground-truth folder.
            try:
                paths, votes = _gt_set(gt)
            except ValueError as exc:
                return [], [(pred.name, str(exc))]
            return [Pair(pred.name, pred, paths, votes)], []
        return [Pair(pred.name, pred, [gt], [1.0])], []
    if gt.is_file():
        raise CLIError(f"PRED {pred} is a folder but GT {gt} is a file; give two folders "
                       "or two files", 2)
    pairs: list[Pair] = []
    used_gt: set[Path] = set()
    for p in _images_under(pred):
        rel = p.relative_to(pred).with_suffix("")
        name = rel.as_posix()
        folder = gt / rel
        parent = gt / rel.parent
        cands = [c for c in parent.glob(f"{glob.escape(rel.name)}.*")
                 if c.is_file() and c.suffix.lower() in _GT_EXTENSIONS] \
            if parent.is_dir() else []
        if folder.is_dir():
            try:
                paths, votes = _gt_set(folder)
            except ValueError as exc:
                errors.append((name, str(exc)))
                used_gt.update(_images_under(folder))
                continue
            used_gt.update(_images_under(folder))
            pairs.append(Pair(name, p, paths, votes))
        elif len(cands) == 1:
            used_gt.add(cands[0])
            pairs.append(Pair(name, p, [cands[0]], [1.0]))
        elif len(cands) > 1:
            used_gt.update(cands)
            errors.append((name, "several ground truths with this name: "
                           + ", ".join(sorted(c.name for c in cands))))
        else:
            errors.append((name, f"no ground truth for {p} (looked for {gt / rel}.* and "
                           f"{gt / rel}/)"))
    pred_names = {e[0] for e in errors} | {q.name for q in pairs}
    for g in _images_under(gt, _GT_EXTENSIONS):
        if g in used_gt:
            continue
        rel = g.relative_to(gt).with_suffix("").as_posix()
        if rel not in pred_names:
            errors.append((rel, f"ground truth {g} has no prediction"))
    return pairs, errors


def _parse_metrics(spec: str) -> list[str]:
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    if not names:
        raise CLIError("--metric is empty; choose from " + ", ".join(METRICS), 2)
    bad = [m for m in names if m not in METRICS + ("edges",)]
    if bad:
        raise CLIError(f"unknown metric {bad[0]!r}; choose from " + ", ".join(METRICS)
                       + " (or 'edges' for ods,ois,ap)", 2)
    out: list[str] = []
    for m in names:
        for x in (_EDGE if m == "edges" else (m,)):
            if x not in out:
                out.append(x)
    return out


def evaluate_pair(pair: Pair, metrics: list[str], data_range: float, device: str,
                  thresholds: int, max_dist: float, nms: bool = False) -> tuple[dict, object]:
    """Metrics of one pair. Returns ``(row, edge_counts_or_None)``; raises
    ValueError with a one-line message for unreadable files or size mismatch."""
    import numpy as np
    import torch

    from tvcli import metrics as M
    from tvcli.io import read_image

    pred, _ = read_image(pair.pred)
    edges = any(m in _EDGE for m in metrics)
    gts, votes, labels = [], [], []
    for g, v in zip(pair.gts, pair.votes, strict=True):
        if g.suffix.lower() == ".mat":
            if any(m not in _EDGE for m in metrics):
                raise ValueError(f"{g.name}: a BSDS .mat ground truth serves only the edge "
                                 "metrics (ods, ois, ap)")
            from tvcli.data.bsds import read_bsds_boundaries

            maps = read_bsds_boundaries(g)  # K annotators, each one ground truth
            gts += [b[:, :, None].astype(np.float32) for b in maps]
            votes += [v] * len(maps)
            labels += [f"{g.name}[{k}]" for k in range(len(maps))]
        else:
            gts.append(read_image(g)[0])
            votes.append(v)
            labels.append(g.name)
    for g, label in zip(gts, labels, strict=True):
        if g.shape[:2] != pred.shape[:2]:
            raise ValueError(f"size mismatch: prediction {pred.shape[1]}x{pred.shape[0]} vs "
                             f"ground truth {label} {g.shape[1]}x{g.shape[0]} (W x H)")
        if g.shape[2] != pred.shape[2] and any(m not in _EDGE for m in metrics):
            raise ValueError(f"channel mismatch: prediction has {pred.shape[2]}, ground "
                             f"truth {label} has {g.shape[2]}")
    w = M.normalize_weights(torch.tensor(votes, dtype=torch.float64))
    row: dict = {}
    p_t = torch.from_numpy(pred).permute(2, 0, 1).to(device)
    g_t = torch.stack([torch.from_numpy(g).permute(2, 0, 1) for g in gts]).to(device) \
        if not edges or any(m not in _EDGE for m in metrics) else None
    if "psnr" in metrics:
        vals = M.psnr(p_t[None].expand_as(g_t), g_t, data_range).double().cpu()
        keep = w > 0  # a zero-vote ground truth must not turn inf * 0 into NaN
        row["psnr"] = float((w[keep] * vals[keep]).sum())
    if "ssim" in metrics:
        vals = M.ssim(p_t[None].expand_as(g_t), g_t, data_range).double().cpu()
        row["ssim"] = float((w * vals).sum())
    if "wrmse" in metrics or "wmae" in metrics:
        wmse_, wmae_ = M.weighted_errors(p_t, g_t, w)
        row["_wmse"] = float(wmse_)
        row["_wmae"] = float(wmae_)
        row["_npix"] = p_t.numel()  # C * H * W: the data-set values pool over pixels
        scale = 255.0 / data_range
        if "wrmse" in metrics:
            row["wrmse"] = math.sqrt(float(wmse_)) * scale
        if "wmae" in metrics:
            row["wmae"] = float(wmae_) * scale
    counts = None
    if edges:
        e = pred.mean(axis=2)
        if nms:
            from tvcli.edge_eval import nms as edge_nms

            e = edge_nms(e)
        counts = M.edge_counts(e, [np.asarray(g.max(axis=2)) for g in gts],
                               thresholds=thresholds, max_dist=max_dist)
        if "ois" in metrics:
            # This image's best F over thresholds (what OIS sums its counts at).
            row["ois"] = M.edge_aggregate([counts], thresholds).per_image[0]["f"]
    return row, counts


def _fmt(m: str, v: float | None) -> str:
    if v is None:
        return "-"
    if m == "psnr":
        return f"{v:.2f}" if math.isfinite(v) else "inf"
    return f"{v:.4f}" if m in ("ssim",) + _EDGE else f"{v:.3f}"


@app.command("eval")
def eval_cmd(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PRED GT", show_default=False,
        help="Prediction image or folder, then the ground-truth image or folder (same "
             "relative names). With --merge: the part files to merge.")],
    metric: str = typer.Option(_DEFAULT, "--metric", "-m",
                               help="Comma list from psnr, ssim, wrmse, wmae, ods, ois, ap "
                                    "('edges' = ods,ois,ap); or 'top1' alone: PRED = "
                                    "`tvcli run CLASSIFIER --json` output, GT = a "
                                    "stem,label CSV or class-named folders; or 'wsol' "
                                    "alone: PRED = a `tvcli run cam[-tv] -o` folder, GT "
                                    "= DATA/metadata/<split> (MaxBoxAccV2, PxAP, top-1 "
                                    "loc/cls)."),
    data_range: float = typer.Option(1.0, "--data-range",
                                     help="Range of the values as read (1 for 8/16-bit "
                                          "files, read into [0, 1])."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (one row per image, then "
                                                     "'mean')."),
    thresholds: int = typer.Option(99, "--thresholds",
                                   help="Edge metrics: number of thresholds (BSDS: 99)."),
    max_dist: float = typer.Option(0.0075, "--max-dist",
                                   help="Edge metrics: match tolerance, fraction of the "
                                        "image diagonal."),
    device: str = typer.Option("cpu", "--device", help="Torch device for the metrics."),
    shard: str = typer.Option(None, "--shard", metavar="K/N|auto", help=SHARD_HELP),
    summary: str = typer.Option(
        None, "--summary", metavar="FILE.json",
        help="Write this run's part file (results plus the raw per-image values a merge "
             "needs, and timings); {index} and {count} become the shard numbers."),
    merge: bool = typer.Option(
        False, "--merge", help="Merge part files written by --summary (one per shard) "
                               "into the report of the whole data set."),
    nms: bool = typer.Option(False, "--nms", help="Edge metrics: non-maximum suppression of "
                                                  "each edge map first (for dense maps, as "
                                                  "HED/RCF/DexiNed are evaluated)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                             help="Edge metrics: images evaluated in parallel processes."),
) -> None:
    """Evaluate predictions against ground truth: PSNR, SSIM, WRMSE/WMAE, edge ODS/OIS/AP.

    Files or folders (paired by relative path without extension). For several
    ground truths per image, GT/<name>/ holds them, with optional weights.json
    ({"file": votes}). Per-image problems are reported one per line on stderr;
    the rest is still evaluated and the exit status is 1.

    Sharded: `tvcli eval PRED GT --shard K/N --summary part-{index}.json` on each
    shard, then `tvcli eval --merge part-*.json` (the same report as unsharded).
    """
    if as_json and as_csv:
        raise CLIError("--json and --csv are exclusive", 2)
    if merge:
        if shard is not None:
            raise CLIError("--merge and --shard exclude each other", 2)
        if summary is not None:
            raise CLIError("--summary does not apply to --merge (use --json > FILE)", 2)
        from tvcli.cli.eval_merge import merge_parts

        try:
            result, errors = merge_parts(paths)
        except ValueError as exc:
            raise CLIError(str(exc), 2) from None
        _emit(result, errors, as_json, as_csv)
        return
    if len(paths) != 2:
        raise CLIError(f"give PRED and GT (got {len(paths)} paths); several part files "
                       "need --merge", 2)
    pred, gt = paths
    _evaluate_cmd(pred, gt, metric, data_range, as_json, as_csv, thresholds, max_dist, device,
                  shard, summary, nms, jobs)


def _evaluate_cmd(pred: Path, gt: Path, metric: str, data_range: float, as_json: bool,
                  as_csv: bool, thresholds: int, max_dist: float, device: str,
                  shard_text: str | None, summary: str | None, nms: bool = False,
                  jobs: int = 1) -> None:
    """``tvcli eval PRED GT``: checks the options, evaluates (this shard's share of)
    the pairs, prints the report and writes the ``--summary`` part file."""
    import time

    from tvcli.cli import shard as sh

    try:
        shard = sh.parse_shard(shard_text)
        part_path = sh.summary_path(summary, shard)
    except ValueError as exc:
        raise CLIError(str(exc), 2) from None
    if part_path is not None and part_path.suffix.lower() != ".json":
        raise CLIError(f"--summary {part_path}: the file name must end in .json", 2)
    if not (data_range > 0 and math.isfinite(data_range)):
        raise CLIError(f"--data-range must be a positive number, got {data_range}", 2)
    if thresholds < 1:
        raise CLIError("--thresholds must be >= 1", 2)
    if not max_dist > 0:
        raise CLIError("--max-dist must be > 0", 2)
    if metric.strip().lower() == "top1":  # classification (tvcli.cli.classify)
        from tvcli.cli.classify import eval_top1

        code = eval_top1(pred, gt, as_json=as_json, as_csv=as_csv)
        if code:
            raise typer.Exit(code)
        return
    if metric.strip().lower() == "wsol":  # localization (tvcli.cli.wsol)
        from tvcli.cli.wsol import eval_wsol

        code = eval_wsol(pred, gt, as_json=as_json, as_csv=as_csv)
        if code:
            raise typer.Exit(code)
        return
    metrics = _parse_metrics(metric)
    if device != "cpu":
        import torch

        try:
            torch.empty(1, device=device)
        except Exception as exc:
            raise CLIError(f"--device {device}: not available ({str(exc).splitlines()[0]})",
                           2) from None
    started = time.time()
    pairs, pair_errors = pair_up(pred, gt)
    if part_path is not None:
        for p in pairs:
            for f in (p.pred, *p.gts):
                if part_path.exists() and f.exists() and part_path.samefile(f):
                    raise CLIError(f"--summary {part_path} is an input of the evaluation", 2)
    n_planned = len(pairs)
    # Every shard pairs the whole data set (so it reports the same pairing
    # problems), then keeps what it owns: the key is the pairing name, the
    # order is the unsharded one (``order`` lets a merge restore it exactly).
    errors = [(n, m, [0, i]) for i, (n, m) in enumerate(pair_errors)]
    indexed = list(enumerate(pairs))
    if shard is not None and shard.count > 1:
        indexed = [(i, p) for i, p in indexed if sh.shard_of(p.name, shard.count) == shard.index]
        errors = [e for e in errors if sh.shard_of(e[0], shard.count) == shard.index]
    rows: list[dict] = []
    counts = []
    args = (metrics, data_range, device, thresholds, max_dist, nms)
    results = _map_pairs([p for _, p in indexed], args, jobs)
    for (i, pair), res in zip(indexed, results, strict=True):
        if isinstance(res, str):
            errors.append((pair.name, res, [1, i]))
            continue
        row, c = res
        rows.append({"name": pair.name, "pred": str(pair.pred),
                     "gt": [str(g) for g in pair.gts], **row})
        rows[-1]["_index"] = i
        if c is not None:
            rows[-1]["_edge_counts"] = c
            counts.append(c)
    settings = {"metrics": metrics, "data_range": data_range, "thresholds": thresholds,
                "max_dist": max_dist, "nms": nms}
    result = build_report(str(pred), str(gt), settings, rows, counts, errors)
    if part_path is not None:
        from tvcli.cli.eval_merge import part_file

        wall = time.time() - started
        try:
            sh.write_json_atomic(part_path, part_file(
                result, rows, errors, shard, n_planned, settings,
                timings={"wall_s": round(wall, 3),
                         "images_per_s": round(len(rows) / wall, 4) if wall > 0 else None}))
        except OSError as exc:
            raise CLIError(f"--summary {part_path}: {exc.strerror or exc}", 1) from None
    # A shard may own no image at all (small data set, many shards): not an error.
    _emit(result, [(n, m) for n, m, _ in errors], as_json, as_csv,
          empty_ok=shard is not None and not indexed)


def _emit(result: dict, errors: list[tuple[str, str]], as_json: bool, as_csv: bool,
          empty_ok: bool = False) -> None:
    """Prints the errors (stderr) and the report; raises the exit status."""
    for name, msg in errors:
        print(f"tvcli: error: {name}: {msg}", file=sys.stderr)
    rows, metrics, summary = result["images"], result["metrics"], result["summary"]
    data_range = result["data_range"]
    if as_json:
        # Infinite PSNR (identical images) becomes null: strict JSON for jq & co.
        print(dumps(result))
    elif as_csv:
        buf = _io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(["name", *metrics])
        for r in rows:
            wr.writerow([r["name"], *[_csv(r.get(m)) for m in metrics]])
        wr.writerow(["mean", *[_csv(summary.get(m)) for m in metrics]])
        sys.stdout.write(buf.getvalue())
    else:
        _print_table(rows, metrics, summary, data_range)
    if not rows and not empty_ok:
        raise CLIError("nothing could be evaluated", 1)
    if errors:
        raise typer.Exit(1)


def _eval_one(pair: Pair, args: tuple):
    """evaluate_pair, or the one-line message of its ValueError."""
    try:
        return evaluate_pair(pair, *args)
    except ValueError as exc:
        return str(exc).splitlines()[0]


def _map_pairs(pairs: list[Pair], args: tuple, jobs: int):
    """Results of :func:`_eval_one` in order; ``jobs`` > 1 uses forked worker
    processes (one torch thread each)."""
    if jobs <= 1 or len(pairs) < 2:
        yield from (_eval_one(p, args) for p in pairs)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(max_workers=min(jobs, len(pairs)), mp_context=mp.get_context("fork"),
                             initializer=_worker_init) as pool:
        yield from pool.map(partial(_eval_one, args=args), pairs, chunksize=1)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _csv(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _print_table(rows: list[dict], metrics: list[str], summary: dict,
                 data_range: float) -> None:
    from rich.console import Console
    from rich.table import Table

    units = {"psnr": "dB", "wrmse": "8-bit", "wmae": "8-bit"}
    table = Table(title=f"tvcli eval ({len(rows)} images, data range {data_range:g})")
    table.add_column("image")
    for m in metrics:
        table.add_column(f"{m} ({units[m]})" if m in units else m, justify="right")
    for r in rows:
        table.add_row(r["name"], *[_fmt(m, r.get(m)) for m in metrics])
    if rows:
        table.add_section()
        table.add_row("[bold]mean[/bold]", *[_fmt(m, summary.get(m)) for m in metrics])
    Console().print(table)
    notes = []
    if "wrmse" in metrics:
        notes.append("wrmse / wmae mean row: pooled over all pixels of all images (Zhu et al.)")
    if any(m in _EDGE for m in metrics):
        notes.append("per-image ois = that image's best F; ods/ap are data-set values "
                     f"(ODS threshold {summary.get('ods_threshold', float('nan')):.3f})")
    for note in notes:
        Console().print(f"[dim]{note}[/dim]")
