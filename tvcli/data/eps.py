"""A substitute for Zhu et al.'s edge-preserving-smoothing benchmark (BenchmarkEPS).

**This is a substitute, not the real benchmark.** Zhu et al. (TIP 2019) give
each of their 500 photos several ground truths that human voters picked among
the outputs of classical edge-preserving filters, weighted by the votes. That
set is not available here. ``tvcli data eps OUT --bsds500 PATH`` builds the
closest stand-in: every BSDS500 photo gets K ground truths, the outputs of
well-maintained classical filters from OpenCV's contrib module
(``cv2.ximgproc``) at the fixed settings of :data:`FILTERS`, with **uniform
weights** (each of the K filters counts 1/K; no votes exist). Two of the five
(the weighted median and the domain transform) do not look like TV at all, so
a TV layer is not favoured by construction.

Generation needs the optional extra ``pip install 'tvcli[eps-data]'``
(``opencv-contrib-python-headless``); nothing else in tvcli imports OpenCV.

Layout (the multi-ground-truth layout of ``tvcli eval``)::

    OUT/manifest.json                    sources, filter settings, sha256 of every file
    OUT/<split>/input/<stem>.png         the BSDS photo, decoded once (Pillow) to PNG
    OUT/<split>/gt/<stem>/<filter>.png   one 8-bit ground truth per filter

Splits: ``train`` and ``val`` from BSDS500's train and val photos, ``test`` from
its test photos. Measured traps that the settings avoid: ``l0Smooth`` on float32
input overwrites its input and overshoots to [-0.59, 1.62], so it is fed uint8;
``weightedMedianFilter`` is randomised and differs per call unless
``cv2.setRNGSeed(0)`` precedes each call (done here). All filters run with one
OpenCV thread, so the outputs do not depend on the machine's core count.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvcli._hashing import sha256_file

__all__ = ["FILTERS", "EpsFilter", "apply_filter", "build_eps", "load_eps_split",
           "manifest_digest", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EpsFilter:
    """One classical edge-preserving filter at fixed settings (8-bit RGB in and out)."""

    name: str
    description: str
    settings: dict
    tv_like: bool  # piecewise-constant outputs, as a TV prox gives


FILTERS: tuple[EpsFilter, ...] = (
    EpsFilter("l0", "L0 gradient minimisation (Xu et al. 2011), cv2.ximgproc.l0Smooth on "
              "uint8 input", {"lambda": 0.01, "kappa": 2.0}, True),
    EpsFilter("fgs", "fast global smoother (Min et al. 2014), "
              "cv2.ximgproc.fastGlobalSmootherFilter guided by the photo itself",
              {"lambda": 400.0, "sigma_color": 10.0, "lambda_attenuation": 0.25,
               "num_iter": 3}, False),
    EpsFilter("rgf", "rolling guidance filter (Zhang et al. 2014), "
              "cv2.ximgproc.rollingGuidanceFilter",
              {"d": -1, "sigma_color": 25.0, "sigma_space": 4.0, "num_iter": 4}, False),
    EpsFilter("wmf", "weighted median filter (Zhang et al. 2014), "
              "cv2.ximgproc.weightedMedianFilter guided by the photo, cv2.setRNGSeed(0) "
              "before each call", {"r": 7, "sigma": 25.5, "weight_type": "WMF_EXP"}, False),
    EpsFilter("dt", "domain transform (Gastal & Oliveira 2011), cv2.ximgproc.dtFilter, "
              "normalised convolution, guided by the photo",
              {"sigma_spatial": 15.0, "sigma_color": 40.0, "mode": "DTF_NC",
               "num_iters": 3}, False),
)


def _cv2():
    try:
        import cv2  # type: ignore
    except ImportError:
        raise ImportError("building the EPS benchmark needs OpenCV's contrib module: "
                          "pip install 'tvcli[eps-data]'") from None
    if not hasattr(cv2, "ximgproc"):
        raise ImportError("this OpenCV has no ximgproc (contrib) module: pip install "
                          "'tvcli[eps-data]' (opencv-contrib-python-headless) and remove "
                          "other opencv-python packages")
    return cv2


def apply_filter(f: EpsFilter, rgb: np.ndarray) -> np.ndarray:
    """Runs filter ``f`` on an 8-bit RGB photo.

    Args:
        f: one of :data:`FILTERS`.
        rgb: (H, W, 3) uint8.
    Returns:
        (H, W, 3) uint8, the filter's output rounded and clipped to 0...255.
    """
    cv2 = _cv2()
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"need (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    cv2.setNumThreads(1)
    src = np.ascontiguousarray(rgb)
    s = f.settings
    x = cv2.ximgproc
    if f.name == "l0":
        # uint8 in: on float32 input l0Smooth overwrites src and overshoots [0, 1].
        out = x.l0Smooth(src.copy(), None, s["lambda"], s["kappa"])
    elif f.name == "fgs":
        out = x.fastGlobalSmootherFilter(src, src, s["lambda"], s["sigma_color"], None,
                                         s["lambda_attenuation"], s["num_iter"])
    elif f.name == "rgf":
        out = x.rollingGuidanceFilter(src, None, s["d"], s["sigma_color"], s["sigma_space"],
                                      s["num_iter"])
    elif f.name == "wmf":
        cv2.setRNGSeed(0)  # the filter is randomised: same seed, same output
        out = x.weightedMedianFilter(src, src, s["r"], None, s["sigma"],
                                     getattr(x, s["weight_type"]))
    elif f.name == "dt":
        out = x.dtFilter(src, src, s["sigma_spatial"], s["sigma_color"], None,
                         getattr(x, s["mode"]), s["num_iters"])
    else:
        raise ValueError(f"unknown filter {f.name!r}")
    out = np.asarray(out)
    if out.dtype != np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out


def manifest_digest(images: list[dict]) -> str:
    """sha256 over the sorted per-image records (inputs and ground-truth digests):
    one id for the exact data a model was trained or scored on."""
    blob = json.dumps(sorted(images, key=lambda e: (e["split"], e["stem"])), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)


def build_eps(
    out: Path,
    bsds500: Path,
    limits: dict[str, int | None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Builds (or completes) the substitute benchmark in ``out``.

    Args:
        out: destination folder (see the module docstring for the layout).
        bsds500: the BSDS500 folder holding ``images/{train,val,test}/*.jpg``.
        limits: per split, use only the first N photos in sorted order (None:
            all). Files already present are reused (their digests are recorded
            again), so an interrupted build resumes.
        log: progress messages.
    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    from PIL import Image

    cv2 = _cv2()
    limits = limits or {}
    out = Path(out)
    records: list[dict] = []
    for split in SPLITS:
        if limits.get(split, None) == 0:
            continue
        src_dir = Path(bsds500) / "images" / split
        photos = sorted(src_dir.glob("*.jpg"))
        if not photos:
            raise FileNotFoundError(f"no BSDS500 photos in {src_dir}")
        n = limits.get(split)
        photos = photos[:n] if n else photos
        for i, jpg in enumerate(photos):
            stem = jpg.stem
            inp = out / split / "input" / f"{stem}.png"
            gt_dir = out / split / "gt" / stem
            gts = {f.name: gt_dir / f"{f.name}.png" for f in FILTERS}
            rgb = None
            if not inp.exists():
                rgb = np.asarray(Image.open(jpg).convert("RGB"))
                _write_png(inp, rgb)
            for f in FILTERS:
                if not gts[f.name].exists():
                    if rgb is None:
                        rgb = np.asarray(Image.open(inp).convert("RGB"))
                    _write_png(gts[f.name], apply_filter(f, rgb))
            records.append({"split": split, "stem": stem, "source": f"images/{split}/{jpg.name}",
                            "source_sha256": sha256_file(jpg), "input_sha256": sha256_file(inp),
                            "gt_sha256": {k: sha256_file(p) for k, p in gts.items()}})
            if (i + 1) % 20 == 0 or i + 1 == len(photos):
                log(f"{split}: {i + 1}/{len(photos)}")
    manifest = {
        "benchmark": "SUBSTITUTE for Zhu et al. 2019 BenchmarkEPS (not the real benchmark): "
                     "BSDS500 photos, ground truths from classical OpenCV filters, "
                     "uniform weights",
        "source": "BSDS500 (Arbelaez et al., TPAMI 2011), research use; not redistributable "
                  "with tvcli",
        "weights": "uniform: every filter's ground truth has vote 1",
        "filters": {f.name: {"description": f.description, "settings": f.settings,
                             "tv_like": f.tv_like} for f in FILTERS},
        "opencv": cv2.__version__, "numpy": np.__version__,
        "python": platform.python_version(),
        "limits": {s: limits.get(s) for s in SPLITS},
        "images": records,
        "digest": manifest_digest(records),
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def load_eps_split(root: Path, split: str, limit: int | None = None
                   ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The photos of one split with their ground truths.

    Returns:
        ``[(stem, input (3, H, W) float32 in [0, 1], gts (K, 3, H, W) float32)]``,
        the K filters in the order of :data:`FILTERS` (uniform weights).
    """
    from PIL import Image

    folder = Path(root) / split / "input"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no photos in {folder} (run `tvcli data eps` first)")
    paths = paths[:limit] if limit else paths
    out = []
    for p in paths:
        x = np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0
        g = np.stack([np.asarray(Image.open(Path(root) / split / "gt" / p.stem / f"{f.name}.png")
                                 .convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0
                      for f in FILTERS])
        out.append((p.stem, np.ascontiguousarray(x), np.ascontiguousarray(g)))
    return out
