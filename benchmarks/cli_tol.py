"""How tight must `tvcli smooth`'s converged 2-D solve be? Output levels vs tol.

For real photographs (Kodak24, CBSD68 and BSDS500 photos not in CBSD68, from
``../shared/data``; ``--sets`` picks them), each colour channel in [0, 1] is
smoothed with ``prox_tv2d`` at several ``tol`` (float32, what the CLI runs) and
compared with a float64 reference solved to ``--ref-tol`` (default 1e-7: a
certified RMS error of 1/150 of a 16-bit level). Reported per tol: iterations,
solve seconds per megapixel (colour samples / 3), PSNR of the float result against
the reference, and what a user sees: the largest difference of the 8-bit and
16-bit outputs from the reference's, in levels, and the share of samples that
differ (issue 28 item 4: the CLI's default is the loosest tol whose outputs differ
by at most one level).

    OMP_NUM_THREADS=1 python benchmarks/cli_tol.py --threads 1 --limit 3 --crop 256 \
        --lams 0.02,0.05,0.1,0.2,0.5 --out /tmp/a.json
    python benchmarks/cli_tol.py --summary /tmp/a.json      # the table in docs/cli.md
    OMP_NUM_THREADS=1 python benchmarks/cli_tol.py --threads 1 --mosaic 4 --lams 0.1,0.5 \
        --tols 1e-3,1e-4 --out /tmp/b.json    # one 4x4-Kodak photo: time per megapixel
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import tvcli
from tvcli import io

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TOLS = (3e-3, 1e-3, 5e-4, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6)
SETS = ("kodak24", "cbsd68", "bsds500")


def _images(limit: int, sets: list[str]) -> list[Path]:
    """The first ``limit`` photos of each set (BSDS500: train photos, none of CBSD68's)."""
    cbsd68 = sorted((DATA / "denoise" / "CBSD68").glob("*.png"))
    stems = {p.stem for p in cbsd68}
    found = {
        "kodak24": sorted((DATA / "denoise" / "Kodak24").glob("*.png")),
        "cbsd68": cbsd68,
        "bsds500": [p for p in sorted((DATA / "bsds500" / "images" / "train").glob("*.jpg"))
                    if p.stem not in stems],
        "examples": [ROOT / "examples" / "images" / n for n in ("astronaut.png", "coffee.png")],
    }
    return [p for s in sets for p in found[s][:limit] if p.is_file()]


def _inputs(args):
    """(name, float32 (H, W, C) image) pairs to measure on."""
    if args.mosaic:
        kodak = [io.read_image(p)[0] for p in sorted((DATA / "denoise" / "Kodak24").glob("*.png"))]
        # landscape (768x512) tiles: portrait photos are turned on their side
        wide = [k[:, :, :3] if k.shape[1] > k.shape[0] else np.rot90(k[:, :, :3])
                for k in kodak][:args.mosaic ** 2]
        if len(wide) < args.mosaic ** 2:
            raise SystemExit(f"need {args.mosaic ** 2} landscape Kodak photos in {DATA}")
        k = args.mosaic
        rows = [np.concatenate(wide[i * k:(i + 1) * k], axis=1) for i in range(k)]
        yield f"kodak-mosaic-{k}x{k}", np.concatenate(rows, axis=0)
        return
    for path in _images(args.limit, args.sets.split(",")):
        img, _ = io.read_image(path)
        yield path.name, img


def _solve(x: torch.Tensor, lam: float, tol: float, max_iter: int, tv: str):
    """What ``tvcli smooth`` runs on a (3, H, W) photo: ``--tv aniso`` (prox_tv2d per
    channel), ``iso`` (per channel) or ``iso-joint`` (colour TV); returns (y, info)."""
    if tv == "aniso":
        return tvcli.prox_tv2d(x, lam, tol=tol, max_iter=max_iter, return_info=True)
    return tvcli.prox_tv(x, lam, norm="iso", channel_dim=0 if tv == "iso-joint" else None,
                         tol=tol, max_iter=max_iter, return_info=True)


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=3, help="photos per data set")
    parser.add_argument("--lams", default="0.02,0.05,0.1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="/tmp/cli_tol.json")
    parser.add_argument("--tols", default=",".join(map(str, TOLS)))
    parser.add_argument("--mosaic", type=int, default=0, metavar="K",
                        help="instead: one large photo, K x K Kodak photos side by side "
                             "(768x512 each, portrait ones turned), timed without a "
                             "reference")
    parser.add_argument("--crop", type=int, default=0,
                        help="use the central CROP x CROP pixels (0: whole photo)")
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"comma-separated, from {SETS + ('examples',)}")
    parser.add_argument("--ref-tol", type=float, default=1e-7,
                        help="certified RMS error of the float64 reference")
    parser.add_argument("--tv", choices=("aniso", "iso", "iso-joint"), default="aniso",
                        help="the TV model: tvcli smooth's --tv aniso, --tv iso, or --tv iso "
                             "--color joint")
    parser.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                        help="add colour AWGN of SIGMA 8-bit levels (seed 0, as "
                             "tv_variants_bench.py --cli-default) before smoothing")
    parser.add_argument("--summary", metavar="JSON",
                        help="instead: print the per-tol table of a finished run's JSON")
    args = parser.parse_args()
    if args.summary:
        print(summarize(json.loads(Path(args.summary).read_text())))
        return
    torch.set_num_threads(args.threads)
    rows = []
    tols = [float(t) for t in args.tols.split(",")]
    for path, img in _inputs(args):
        if args.crop:
            top, left = (max(0, (n - args.crop) // 2) for n in img.shape[:2])
            img = img[top:top + args.crop, left:left + args.crop]
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, :3].transpose(2, 0, 1)))
        if args.noise:
            g = torch.Generator().manual_seed(0)
            x = (x.double() + args.noise / 255 * torch.randn(
                x.shape, generator=g, dtype=torch.float64)).float()
        mp = img.shape[0] * img.shape[1] / 1e6
        for lam in map(float, args.lams.split(",")):
            ref, ref_bound = None, None
            if not args.mosaic:
                ref, ref_info = _solve(x.double(), lam, args.ref_tol, 50000, args.tv)
                # what the reference reached: the iso solver's tail can stop on the cap
                ref, ref_bound = ref.numpy(), float(ref_info.error_bound.max())
            for tol in tols:
                t0, c0 = time.perf_counter(), time.process_time()
                y, info = _solve(x, lam, tol, 20000, args.tv)
                sec, cpu = time.perf_counter() - t0, time.process_time() - c0
                row = {
                    "image": path, "megapixels": round(mp, 3), "lam": lam, "tol": tol,
                    "iterations": int(info.iterations.max()),
                    "seconds_per_mp": round(sec / mp, 3),
                    "cpu_seconds_per_mp": round(cpu / mp, 3),
                    "bound_psnr_floor": round(-20 * math.log10(tol), 1),
                }
                if ref is not None:
                    y = y.numpy()
                    row.update(psnr_float=round(_psnr(y, ref), 2), ref_bound=ref_bound)
                    for bits in (8, 16):
                        top = 2.0 ** bits - 1
                        # what the CLI writes: clip to [0, 1], scale, round to nearest
                        yq, rq = (np.rint(np.clip(v, 0, 1) * top) for v in (y, ref))
                        row[f"max_diff_{bits}bit"] = int(np.abs(yq - rq).max())
                        row[f"frac_{bits}bit_changed"] = float(np.mean(yq != rq))
                rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
            _write(args, rows)  # after each photo and lam: a long run can be read early
    _write(args, rows)


def _write(args, rows: list[dict]) -> None:
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "load": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "crop": args.crop, "ref_tol": args.ref_tol, "noise": args.noise,
            "sets": args.sets, "tv": args.tv, "torch": torch.__version__}
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    tmp.replace(args.out)


def summarize(run: dict) -> str:
    """Markdown table per tol over all photos and lams: iterations (min-max), worst
    8-bit / 16-bit difference in levels, share of samples that differ (median (max)),
    CPU seconds per megapixel (median)."""
    rows = [r for r in run["rows"] if "max_diff_8bit" in r]
    if not rows:
        return "no rows with a reference"
    images = sorted({r["image"] for r in rows})
    lams = sorted({r["lam"] for r in rows})
    out = [f"{len(images)} photos x {len(lams)} lam ({', '.join(map(str, lams))}), "
           f"crop {run['meta'].get('crop') or 'none'}, TV {run['meta'].get('tv', 'aniso')}; "
           f"reference tol "
           f"{run['meta'].get('ref_tol', 1e-6)}"
           + (f" (reached: at most {max(r['ref_bound'] for r in rows):.2g})"
              if all("ref_bound" in r for r in rows) else "")
           + (f"; colour AWGN sigma {run['meta']['noise']:g}" if run["meta"].get("noise")
              else ""), "",
           "| tol | iterations | PSNR vs exact (float) | 8-bit: largest difference | "
           "8-bit: samples that differ | 16-bit: largest difference | "
           "16-bit: samples that differ | CPU s per MP (median) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for tol in sorted({r["tol"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["tol"] == tol]
        its = [r["iterations"] for r in sel]
        psnr = [r["psnr_float"] for r in sel]

        def share(key: str, sel: list[dict] = sel) -> str:
            v = [100 * r[key] for r in sel]
            return f"{np.median(v):.2g} % ({max(v):.2g} %)"

        out.append(
            f"| {tol:g} | {min(its)}-{max(its)} | {min(psnr):.1f}-{max(psnr):.1f} dB | "
            f"{max(r['max_diff_8bit'] for r in sel)} | {share('frac_8bit_changed')} | "
            f"{max(r['max_diff_16bit'] for r in sel)} | {share('frac_16bit_changed')} | "
            f"{np.median([r['cpu_seconds_per_mp'] for r in sel]):.2f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
