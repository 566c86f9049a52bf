"""What the BSDS500 edge reports share (a helper module, not a script): the test
photos, reading them, the soft Canny baseline, writing a 16-bit map, and scoring
maps with tvcli's BSDS benchmark (NMS, then ODS / OIS / AP as ``tvcli eval``).

Used by ``edges_canny.py`` (the Canny row of docs/edges.md), ``edges_eval_run.py``
(a training run's checkpoint) and ``edges_figure.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def photos(folder: Path) -> list[Path]:
    """The JPEG photos of a BSDS500 images folder (e.g. ``images/test``), by name."""
    return sorted(Path(folder).glob("*.jpg"))


def test_pairs(bsds: Path, n: int | None = None) -> list[tuple[Path, Path]]:
    """(photo, ground-truth .mat) of the first ``n`` BSDS500 test images."""
    from tvcli.data.bsds import bsds_split

    return bsds_split(bsds, "test")[:n]


def read_photo(path: Path, gray: bool = False) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1], or (H, W) float64 grey with ``gray``."""
    from PIL import Image

    im = Image.open(path)
    if gray:
        return np.asarray(im.convert("L"), np.float64) / 255.0
    return np.asarray(im.convert("RGB"), np.float32) / 255


def write_map(edges: np.ndarray, out: Path, stem: str) -> None:
    """``OUT/<stem>.png``, 16-bit, written under a temporary name and renamed."""
    from PIL import Image

    tmp = out / f".{stem}.png.tmp"
    Image.fromarray(np.round(edges * 65535).astype(np.uint16)).save(tmp, format="PNG")
    os.replace(tmp, out / f"{stem}.png")


def score(maps: list[np.ndarray], mats: list[Path]) -> dict:
    """ODS / OIS / AP (rounded to 4 digits) of soft edge maps in [0, 1] after NMS
    against the BSDS ground truths ``mats`` (99 thresholds, tolerance 0.0075)."""
    from tvcli import metrics as M
    from tvcli.data.bsds import read_bsds_boundaries
    from tvcli.edge_eval import nms

    r = M.edge_ods_ois_ap([nms(e) for e in maps], [read_bsds_boundaries(m) for m in mats])
    return {"ods": round(r.ods, 4), "ois": round(r.ois, 4), "ap": round(r.ap, 4)}


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
