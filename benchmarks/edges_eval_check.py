"""tvcli's BSDS benchmark against pyEdgeEval (a port of the BSDS C++ matcher).

For the first N BSDS500 test images (or the given prediction folder), the
per-threshold counts of both implementations, their ODS / OIS / AP, and the
time each takes. Predictions: PNG edge maps from PRED (same stems), else a
Sobel-gradient map after NMS, quantised to 8 bits.

    python benchmarks/edges_eval_check.py ../shared/data/bsds500 --n 5 [--pred DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def gradient_edges(path: Path) -> np.ndarray:
    from PIL import Image
    from scipy import ndimage as ndi

    from tvcli.edge_eval import nms

    g = np.asarray(Image.open(path).convert("L"), float) / 255
    g = ndi.gaussian_filter(g, 2)
    e = np.hypot(ndi.sobel(g, 0), ndi.sobel(g, 1))
    e = nms(np.clip(e / np.quantile(e, 0.99), 0, 1))
    return np.round(e * 255) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bsds", type=Path)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--pred", type=Path, default=None)
    ap.add_argument("--thresholds", type=int, default=99)
    a = ap.parse_args()
    from tvcli import metrics as M
    from tvcli.data.bsds import bsds_split, read_bsds_boundaries
    from tvcli.io import read_image

    pairs = bsds_split(a.bsds, "test")[: a.n]
    preds, gts = [], []
    for img, mat in pairs:
        if a.pred:
            preds.append(read_image(a.pred / f"{img.stem}.png")[0].mean(axis=2))
        else:
            preds.append(gradient_edges(img))
        gts.append(read_bsds_boundaries(mat))
    out = {"n_images": len(pairs), "thresholds": a.thresholds,
           "prediction": str(a.pred) if a.pred else "sobel+nms"}
    counts = {}
    for backend in ("tvcli", "pyedgeeval"):
        t0 = time.perf_counter()
        c = [M.edge_counts(p, g, a.thresholds, backend=backend) for p, g in zip(preds, gts,
                                                                               strict=True)]
        dt = time.perf_counter() - t0
        r = M.edge_aggregate(c, a.thresholds)
        counts[backend] = c
        out[backend] = {"ods": r.ods, "ois": r.ois, "ap": r.ap, "seconds": dt}
        print(backend, json.dumps(out[backend]), flush=True)
    diffs = [float(np.max(np.abs(getattr(x, f) - getattr(y, f)) / np.maximum(getattr(y, f), 1)))
             for x, y in zip(counts["tvcli"], counts["pyedgeeval"], strict=True)
             for f in ("count_r", "count_p")]
    out["max_rel_count_diff"] = max(diffs)
    out["speedup"] = out["pyedgeeval"]["seconds"] / out["tvcli"]["seconds"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
