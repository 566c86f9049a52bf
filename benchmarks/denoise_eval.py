"""Denoising evaluation: the paper's Table 6 (``--table6``) or the recipe's validation set.

    python benchmarks/denoise_eval.py --table6 ../shared/data/denoise [--scico-python PY]
        -> docs/denoising.md (see benchmarks/denoise_table6.py)
    python benchmarks/denoise_eval.py --data DATA_DIR [--scico-python PY] [--quick]
        -> docs/denoising_val.md
    python benchmarks/denoise_eval.py --data DATA_DIR --only ffdnet-tv ffdnet   # update

``--only`` re-runs just those tvcli models and merges their rows into the
existing docs/denoising_val.json (same images, sigmas and seeded noise); the report
lists every run that contributed rows, with its date and load.

For sigma = 15, 25, 50 (0-255 units; noise drawn with a fixed seed per image and
sigma) it compares: the noisy input; the converged 2-D TV prox with the best
single lam per sigma (chosen on these same images: an oracle upper bound for
plain TV); BM3D (PyPI ``bm3d``); scico's pretrained DnCNN (17 layers, trained
per channel at std 0.06 / 0.10 / 0.20, run in a separate Python that has scico,
since it needs jax and flax); tvcli's DnCNN and DnCNN-TV with the shipped
weights (the model of the nearest trained sigma) and its FFDNet-style models
(one blind-range model for sigma 0-55, given the true sigma as its noise map).
PSNR and SSIM (data range 1) per image and mean, and seconds per megapixel on
this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, when imported
import denoise_table6 as t6  # noqa: E402  (the methods and scoring; it imports nothing here)
from denoise_table6 import _tv, run_bm3d, run_ours, run_scico, score  # noqa: E402

from tvcli.learning.tasks.denoise import TV_LAMS, add_noise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PAPER_TABLE6 = """| Method (paper, Table 6) | CBSD68 σ=25 | CBSD68 σ=50 | Kodak24 σ=25 \
| Kodak24 σ=50 | McMaster σ=25 | McMaster σ=50 |
| --- | --- | --- | --- | --- | --- | --- |
| DnCNN | 31.24 | 27.95 | 32.14 | 28.95 | 31.52 | 28.62 |
| DnCNN-TV | 31.26 | 28.07 | 32.15 | 29.09 | 32.32 | 29.35 |"""

HAND_WRITTEN = "<!-- hand-written notes below: kept when this file is regenerated -->"

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_val(data: Path) -> list[tuple[str, torch.Tensor]]:
    """Validation images as (name, (C, H, W) float32 in [0, 1]); gray stays 1 channel
    (:func:`tvcli.learning.tasks.denoise.load_val`, with the file names)."""
    from tvcli.learning.tasks.denoise import load_val as task_load_val

    names = [p.stem for p in sorted((data / "val").glob("*.png"))]
    return list(zip(names, task_load_val(data), strict=True))


def run_tv(noisy: list[torch.Tensor], clean: list[torch.Tensor], sigma: float, quick: bool):
    """Best single lam on these images; returns (lam, outputs, seconds)."""
    grid = list(TV_LAMS.get(int(sigma), (0.05, 0.1)))
    if quick:
        grid = grid[:1]
    best = None
    for lam in grid:
        outs, secs = _tv(lam)(noisy, sigma)
        m = np.mean([score(o, c)[0] for o, c in zip(outs, clean, strict=True)])
        if best is None or m > best[0]:
            best = (m, lam, outs, secs)
    return best[1], best[2], best[3]


OURS = ("dncnn", "dncnn-tv", "ffdnet", "ffdnet-tv")


def run_models(names: list[str], noisy: list[torch.Tensor], clean: list[torch.Tensor],
               mp: list[float], sigma: float, rows: dict, notes: dict) -> None:
    """Adds a row per tvcli model in ``names`` (skipped with a note when it fails)."""
    from tvcli.models import load_pretrained

    for name in names:
        log(f"sigma {sigma:g}: {name}")
        try:
            model, entry = load_pretrained(name, sigma)  # once per model and sigma
            res = [run_ours(model, n, sigma) for n in noisy]
        except Exception as exc:
            notes[name] = f"not run: {exc}"
            continue
        trained = entry["sigma"] if entry["sigma"] is not None else sigma
        label = f"tvcli {name}" + (f" (σ={trained:g} weights)" if trained != sigma else "")
        rows[label] = {"scores": [score(o, c) for (o, _), c in zip(res, clean, strict=True)],
                       "s_per_mp": float(np.median([s / m for (_, s), m in
                                                    zip(res, mp, strict=True)])),
                       # which weights file made the row (tv_floor --reuse-json checks it)
                       "weights_sha256": entry.get("sha256")}


def update_models(previous: dict, data: Path, names: list[str]) -> dict:
    """Re-runs the tvcli models ``names`` and merges their rows into ``previous``."""
    val = load_val(data)
    if [n for n, _ in val] != previous["images"]:
        raise SystemExit("the validation images differ from the previous run's: run all")
    clean = [im for _, im in val]
    mp = [im.shape[-1] * im.shape[-2] / 1e6 for im in clean]
    for name in names:
        previous["notes"].pop(name, None)
    for sigma in previous["sigmas"]:
        noisy = [add_noise(c, sigma, i) for i, c in enumerate(clean)]
        rows = previous["methods"][str(int(sigma))]
        for label in [k for k in rows if any(k == f"tvcli {n}" or k.startswith(f"tvcli {n} (")
                                             for n in names)]:
            del rows[label]
        run_models(names, noisy, clean, mp, sigma, rows, previous["notes"])
    return previous


def evaluate(data: Path, sigmas: list[float], scico_py: str | None, quick: bool) -> dict:
    val = load_val(data)
    if quick:
        val = [(n, im[:, :96, :96]) for n, im in val[:2]]
    names = [n for n, _ in val]
    clean = [im for _, im in val]
    mp = [im.shape[-1] * im.shape[-2] / 1e6 for im in clean]
    result: dict = {"images": names, "sigmas": sigmas, "methods": {}, "notes": {}}
    for sigma in sigmas:
        noisy = [add_noise(c, sigma, i) for i, c in enumerate(clean)]
        rows: dict[str, dict] = {}
        rows["noisy"] = {"scores": [score(n, c) for n, c in zip(noisy, clean, strict=True)],
                         "s_per_mp": None}
        log(f"sigma {sigma:g}: TV grid")
        lam, outs, secs = run_tv(noisy, clean, sigma, quick)
        rows[f"TV prox (best lam {lam:g})"] = {
            "scores": [score(o, c) for o, c in zip(outs, clean, strict=True)],
            "s_per_mp": float(np.median([s / m for s, m in zip(secs, mp, strict=True)]))}
        log(f"sigma {sigma:g}: BM3D")
        try:
            bm = [run_bm3d(n, sigma) for n in noisy]
            rows["BM3D"] = {"scores": [score(o, c) for (o, _), c in zip(bm, clean, strict=True)],
                            "s_per_mp": float(np.median([s / m for (_, s), m in
                                                         zip(bm, mp, strict=True)]))}
        except Exception as exc:  # not installed / failed: say so in the report
            result["notes"]["BM3D"] = f"not run: {exc}"
        if scico_py:
            log(f"sigma {sigma:g}: scico")
            try:
                outs, secs, variant = run_scico(scico_py, noisy, sigma)
                rows[f"scico DnCNN {variant}"] = {
                    "scores": [score(o, c) for o, c in zip(outs, clean, strict=True)],
                    "s_per_mp": float(np.median([s / m for s, m in zip(secs, mp, strict=True)]))}
            except Exception as exc:
                result["notes"]["scico"] = f"not run: {exc}"
        else:
            result["notes"]["scico"] = "not run: no --scico-python given"
        run_models(list(OURS), noisy, clean, mp, sigma, rows, result["notes"])
        result["methods"][str(int(sigma))] = rows
    return result


def to_markdown(res: dict, machine: str) -> str:
    runs = res.get("runs") or [{"machine": machine, "methods": "all"}]
    lines = ["# Denoising results", "",
             "Made by `python benchmarks/denoise_eval.py`: "
             + "; ".join(f"{r['methods']} on {r['machine']}" for r in runs) + ".", "",
             "Validation set of the data recipe (`tvcli data fetch`; never trained on): "
             + ", ".join(res["images"]) + ". Additive white Gaussian noise with a fixed seed "
             "per image and σ; PSNR (dB) and SSIM on [0, 1] images, outputs clipped to [0, 1]. "
             "Gray images go through the colour networks as three equal channels.", ""]
    for sigma, rows in res["methods"].items():
        lines += [f"## σ = {sigma}", "", "| method | mean PSNR | mean SSIM | s / MP |",
                  "| --- | --- | --- | --- |"]
        for name, r in rows.items():
            p = np.mean([s[0] for s in r["scores"]])
            s = np.mean([s[1] for s in r["scores"]])
            t = "-" if r["s_per_mp"] is None else f"{r['s_per_mp']:.2f}"
            lines.append(f"| {name} | {p:.2f} | {s:.4f} | {t} |")
        lines += ["", "<details><summary>per image (PSNR / SSIM)</summary>", "",
                  "| method | " + " | ".join(res["images"]) + " |",
                  "| --- |" + " --- |" * len(res["images"])]
        for name, r in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{a:.2f} / {b:.3f}"
                                                     for a, b in r["scores"]) + " |")
        lines += ["", "</details>", ""]
    if res["notes"]:
        lines += ["## Not run", ""] + [f"* {k}: {v}" for k, v in res["notes"].items()] + [""]
    lines += ["## The paper's Table 6, for reference", "",
              "Different test sets (CBSD68, Kodak24, McMaster) and a far larger training "
              "budget (KAIR, GPU): not comparable number for number.", "", PAPER_TABLE6, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[15, 25, 50])
    ap.add_argument("--scico-python", default=None, help="a python that can import scico")
    ap.add_argument("--out", type=Path, default=None,
                    help="default docs/denoising.md (--table6) or docs/denoising_val.md")
    ap.add_argument("--table6", type=Path, default=None, metavar="DIR",
                    help="folder with CBSD68/ and Kodak24/: the paper's Table 6 protocol")
    ap.add_argument("--merge", type=Path, default=None, metavar="JSON",
                    help="--table6: first merge the rows of another run's JSON (e.g. scico "
                    "run separately) into the report's")
    ap.add_argument("--methods", nargs="*", default=["noisy", "tv", "bm3d", "scico", "ffdnet",
                                                     "ffdnet-tv", "dncnn", "dncnn-tv"],
                    help="--table6: methods to run (results already stored are kept)")
    ap.add_argument("--t6-sigmas", type=int, nargs="+", default=[25, 50])
    ap.add_argument("--t6-clips", nargs="+", default=["unclipped", "clipped"],
                    choices=["unclipped", "clipped"])
    ap.add_argument("--t6-sets", nargs="+", default=["CBSD68", "Kodak24"],
                    choices=["CBSD68", "Kodak24"])
    ap.add_argument("--redo", nargs="*", default=[],
                    help="--table6: re-run rows whose label contains one of these")
    ap.add_argument("--dncnn-full", action="store_true",
                    help="--table6: the tvcli DnCNN pair on every image, not the subset")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=OURS, default=None,
                    help="re-run only these tvcli models, merging into the existing JSON")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.table6 is not None:
        return run_table6(args)
    args.out = args.out or ROOT / "docs" / "denoising_val.md"
    cpu = platform.processor() or platform.machine()
    load0 = os.getloadavg()[0]
    json_path = args.out.with_suffix(".json")
    if args.only:
        if not json_path.exists():
            raise SystemExit(f"--only needs a previous full run ({json_path} is missing)")
        previous = json.loads(json_path.read_text())
        runs = previous.get("runs")
        if not runs:  # a report from before runs were recorded: take its header line
            head = args.out.read_text().splitlines()[2] if args.out.exists() else ""
            was = head.split(" on ", 1)[1].rstrip(".") if " on " in head else "an earlier run"
            runs = [{"machine": was, "methods": "all"}]
        res = update_models(previous, args.data, args.only)
    else:
        runs = []
        res = evaluate(args.data, args.sigmas, args.scico_python, args.quick)
    machine = (f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, "
               f"{os.cpu_count()} cores, torch {torch.__version__}, load "
               f"{load0:.1f}-{os.getloadavg()[0]:.1f}")
    if args.only:  # earlier runs whose rows have all been replaced are no longer cited
        runs = [r for r in runs if r["methods"] == "all"
                or not set(r["methods"].split(", ")) <= set(args.only)]
    res["runs"] = runs + [{"machine": machine,
                           "methods": ", ".join(args.only) if args.only else "all"}]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keep = ""  # hand-written notes below the marker survive regeneration
    if args.out.exists() and HAND_WRITTEN in args.out.read_text():
        keep = args.out.read_text().split(HAND_WRITTEN, 1)[1]
    args.out.write_text(to_markdown(res, machine) + "\n" + HAND_WRITTEN + keep)
    json_path.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


def _budgets() -> dict[str, str]:
    """Row label prefix -> the training budget behind the shipped weights."""
    from tvcli.models import list_weights

    out = {}
    for e in list_weights():
        if e.get("sigma") is None and not e.get("sigma_range"):
            continue  # not a denoiser (classifiers, edge detectors, eps share the folder)
        tag = "blind" if e.get("sigma_range") else f"σ={e['sigma']:g}"
        data = e.get("data_name", "registry recipe, 75 photos" if e["data_digest"].startswith(
            "bbbde10d") else e["data_digest"][:12])
        warm = f", warm start from {e['init_from']}" if e.get("init_from") else ""
        out[f"tvcli {e['model']} ({tag})"] = e.get("budget_note") or (
            f"{e['steps']} steps x {e['batch']} x {e['patch']}², {e['wall_s'] / 60:.0f} min "
            f"{e.get('device', 'cpu')} ({data}{warm})")
    out["BM3D"] = "no training"
    out["TV prox"] = "no training"
    out["scico"] = "pretrained (scico's weights)"
    return out


def run_table6(args) -> None:
    out = args.out or ROOT / "docs" / "denoising.md"
    json_path = out.with_suffix(".json")
    load0 = os.getloadavg()[0]
    if args.merge is not None:
        other = json.loads(args.merge.read_text())
        mine = json.loads(json_path.read_text()) if json_path.exists() else {}
        for k in ("rows", "notes", "budget"):
            mine.setdefault(k, {}).update(other.get(k, {}))
        mine.setdefault("runs", []).extend(other.get("runs", []))
        json_path.write_text(json.dumps(mine, indent=1))
    res = t6.evaluate(args.table6, json_path, args.methods, args.redo, args.scico_python,
                      tuple(args.t6_sigmas), tuple(args.t6_clips), tuple(args.t6_sets),
                      dncnn_full=args.dncnn_full)
    cpu = platform.processor() or platform.machine()
    run = (f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, "
           f"{os.cpu_count()} cores, torch {torch.__version__}, load "
           f"{load0:.1f}-{os.getloadavg()[0]:.1f}; methods {', '.join(args.methods)}")
    if args.methods:  # a regeneration (--methods with nothing) is not a run
        res.setdefault("runs", []).append(run)
    json_path.write_text(json.dumps(res, indent=1))
    keep = ""
    if out.exists() and HAND_WRITTEN in out.read_text():
        keep = out.read_text().split(HAND_WRITTEN, 1)[1]
    machine = "runs: " + "; ".join(res.get("runs", []))
    out.write_text(t6.to_markdown(res, machine, _budgets()) + "\n" + HAND_WRITTEN + keep)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
