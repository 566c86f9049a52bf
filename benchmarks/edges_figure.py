"""docs/img/edges_<name>.png: a photo from examples/images and its edge maps.

Panels: the photo | the Canny baseline (threshold-swept, benchmarks/
edges_canny.py) | the same after NMS | DexiNed and DexiNed-TV maps when their
weights are shipped (skipped otherwise). Edge maps shown inverted (dark =
edge). Never made from BSDS500 photos (they are not ours to publish).

    python benchmarks/edges_figure.py examples/images/coffee.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from edges_common import canny_soft

    from tvcli import io
    from tvcli.edge_eval import nms
    from tvcli.models import WeightsError, load_pretrained

    img, meta = io.read_image(a.image)
    rgb = img[:, :, :3] if img.shape[2] >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    canny = canny_soft(gray.astype(np.float64))
    panels = [rgb, canny, nms(canny)]
    labels = ["photo", "Canny (swept)", "Canny + NMS"]
    from tvcli.cli.run import edge_map_array
    from tvcli.models.inference import EdgeProbability

    for name in ("dexined", "dexined-tv"):
        try:
            model, _ = load_pretrained(name)
        except WeightsError:
            print(f"{name}: no shipped weights, panel skipped")
            continue
        panels.append(edge_map_array(EdgeProbability(model).eval(), rgb, device="cpu",
                                     tile=None, overlap=0))
        labels.append(name)
    h = rgb.shape[0]
    gap = np.ones((h, 6, 3), np.float32)
    row = []
    for p in panels:
        p = np.asarray(p, np.float32)
        row += [np.repeat(1 - p[:, :, None], 3, axis=2) if p.ndim == 2 else p, gap]
    out = a.out or Path("docs/img") / f"edges_{a.image.stem}.png"
    io.write_image(out, np.clip(np.concatenate(row[:-1], axis=1), 0, 1), dtype="uint8")
    print(out, "panels:", ", ".join(labels))


if __name__ == "__main__":
    main()
