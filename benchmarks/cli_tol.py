"""How tight must `tvcli smooth`'s converged 2-D solve be? PSNR-to-converged vs tol.

For real photographs (Kodak24, BSDS500 from ``../shared/data``, and the example
images), each colour channel in [0, 1] is smoothed with ``prox_tv2d`` at several
``tol`` (float32, what the CLI runs) and compared with a float64 reference solved
to ``tol = 1e-6`` (a PSNR floor of 120 dB). Reported per tol: iterations, solve
seconds per megapixel (colour samples / 3), PSNR of the float result against the reference, PSNR and
largest difference of the 8-bit outputs (what a user sees), and the certified
bound's PSNR floor ``-20 log10(tol)``.

    OMP_NUM_THREADS=1 python benchmarks/cli_tol.py --threads 1 --crop 256 --out /tmp/a.json
    OMP_NUM_THREADS=1 python benchmarks/cli_tol.py --threads 1 --limit 1 --lams 0.05 \
        --out /tmp/b.json    # whole photos: time per megapixel
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
TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def _images(limit: int) -> list[Path]:
    kodak = sorted((DATA / "denoise" / "Kodak24").glob("*.png"))[:limit]
    bsds = sorted((DATA / "bsds500" / "images" / "test").glob("*.jpg"))[:limit]
    examples = [ROOT / "examples" / "images" / n for n in ("astronaut.png", "coffee.png")]
    return [p for p in (*kodak, *bsds, *examples) if p.is_file()]


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
    for path in _images(args.limit):
        img, _ = io.read_image(path)
        yield path.name, img


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    tols = [float(t) for t in args.tols.split(",")]
    for path, img in _inputs(args):
        if args.crop:
            top, left = (max(0, (n - args.crop) // 2) for n in img.shape[:2])
            img = img[top:top + args.crop, left:left + args.crop]
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, :3].transpose(2, 0, 1)))
        mp = img.shape[0] * img.shape[1] / 1e6
        for lam in map(float, args.lams.split(",")):
            ref = None if args.mosaic else \
                tvcli.prox_tv2d(x.double(), lam, tol=1e-6, max_iter=20000).numpy()
            for tol in tols:
                t0, c0 = time.perf_counter(), time.process_time()
                y, info = tvcli.prox_tv2d(x, lam, tol=tol, max_iter=20000, return_info=True)
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
                    y8, ref8 = (np.rint(np.clip(v, 0, 1) * 255) for v in (y, ref))
                    row.update(psnr_float=round(_psnr(y, ref), 2),
                               psnr_8bit=round(_psnr(y8, ref8, 255.0), 2),
                               max_diff_8bit=int(np.abs(y8 - ref8).max()),
                               frac_8bit_changed=float(np.mean(y8 != ref8)))
                rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "load": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "crop": args.crop,
            "torch": torch.__version__}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
