"""Canny baseline edge maps for the BSDS500 benchmark (OpenCV's Canny).

The maps come from ``edges_common.canny_soft`` (shared with ``edges_figure.py``):

A single Canny map is binary (one precision/recall point, no AP). The baseline
here sweeps Canny's hysteresis thresholds: the soft map is the fraction of the
``--levels`` settings (high threshold = the q-quantile of the gradient
magnitude, q from 0.70 to 0.995, low = 0.4 x high) at which a pixel is an
edge, so the benchmark's 99 thresholds trace Canny's precision/recall curve.
OpenCV's ``cv2.Canny`` (L2 gradient norm, 3x3 Sobel) on the 8-bit grey image
blurred by a Gaussian of ``--sigma`` (default 2); scikit-image's Canny (the
same algorithm, about 20x slower here) when OpenCV is not installed.

    python benchmarks/edges_canny.py ../shared/data/bsds500/images/test OUT/

writes OUT/<stem>.png (16-bit). Then: ``tvcli eval OUT ../shared/data/bsds500/
groundTruth/test --metric ods,ois,ap``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, when imported
from edges_common import canny_soft, photos, read_photo, write_map  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path, help="folder of BSDS500 photos (*.jpg)")
    ap.add_argument("out", type=Path, help="folder for the 16-bit PNG maps")
    ap.add_argument("--sigma", type=float, default=2.0, help="Gaussian blur before Canny")
    ap.add_argument("--levels", type=int, default=24, help="hysteresis settings averaged")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for p in photos(a.images):
        write_map(canny_soft(read_photo(p, gray=True), a.sigma, a.levels), a.out, p.stem)


if __name__ == "__main__":
    main()
