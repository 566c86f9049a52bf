"""Canny baseline edge maps for the BSDS500 benchmark (OpenCV's Canny).

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
import os
from pathlib import Path

import numpy as np


def canny_soft(gray: np.ndarray, sigma: float = 2.0, levels: int = 24) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W) float in [0, 1]: mean of Canny maps over
    a sweep of hysteresis thresholds (see the module docstring)."""
    qs = np.linspace(0.70, 0.995, levels)
    acc = np.zeros(gray.shape)
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        g8 = np.round(gray * 255).astype(np.uint8)
        blur = cv2.GaussianBlur(g8, (0, 0), sigma)
        dx = cv2.Sobel(blur, cv2.CV_32F, 1, 0, ksize=3)
        dy = cv2.Sobel(blur, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.hypot(dx, dy)
        for hi in np.quantile(mag, qs):
            acc += cv2.Canny(blur, 0.4 * float(hi), float(hi), L2gradient=True) > 0
        return acc / levels
    from scipy import ndimage as ndi
    from skimage.feature import canny

    smooth = ndi.gaussian_filter(gray, sigma)
    mag = np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1))
    for hi in np.quantile(mag, qs):
        acc += canny(gray, sigma=sigma, low_threshold=0.4 * float(hi),
                     high_threshold=float(hi), use_quantiles=False)
    return acc / levels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sigma", type=float, default=2.0)
    ap.add_argument("--levels", type=int, default=24)
    a = ap.parse_args()
    from PIL import Image

    a.out.mkdir(parents=True, exist_ok=True)
    for p in sorted(a.images.glob("*.jpg")):
        g = np.asarray(Image.open(p).convert("L"), np.float64) / 255.0
        e = canny_soft(g, a.sigma, a.levels)
        tmp = a.out / f".{p.stem}.png.tmp"
        Image.fromarray(np.round(e * 65535).astype(np.uint16)).save(tmp, format="PNG")
        os.replace(tmp, a.out / f"{p.stem}.png")


if __name__ == "__main__":
    main()
