"""Before/after pictures for docs/eps.md, from examples/images only (never BSDS).

    python benchmarks/eps_pictures.py --run eps=runs/eps-eps --run eps-tv=runs/eps-tv-eps \\
        --lam 0.02 --out docs/img/eps_coffee.png

One strip per example photo crop: input | l0Smooth (one of the substitute
benchmark's ground-truth filters, needs ``tvcli[eps-data]``) | TV prox at the
given lam | ResNet | ResNet-TV, each labelled underneath.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, run: Path) -> torch.nn.Module:
    from tvcli.learning.train.checkpoint import load_model_state
    from tvcli.models import build_model

    meta = json.loads((run / "ckpt.json").read_text())
    m = build_model(name, **meta["model_config"])
    m.load_state_dict(load_model_state(run))
    return m.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="append", default=[], metavar="MODEL=RUN_DIR")
    ap.add_argument("--lam", type=float, required=True, help="TV prox lam, [0, 1] units")
    ap.add_argument("--image", default="coffee.png")
    ap.add_argument("--crop", default="100,40,180,150", help="x,y,w,h")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from tvcli.data.eps import FILTERS, apply_filter
    from tvcli.prox2d import prox_tv2d

    x0, y0, w, h = (int(v) for v in args.crop.split(","))
    rgb = np.asarray(Image.open(ROOT / "examples" / "images" / args.image).convert("RGB"))
    rgb = np.ascontiguousarray(rgb[y0:y0 + h, x0:x0 + w])
    x = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    panels = [("input", rgb)]
    l0 = next(f for f in FILTERS if f.name == "l0")
    panels.append(("l0Smooth", apply_filter(l0, rgb)))
    with torch.no_grad():
        tv = prox_tv2d(x, args.lam)[0]
        panels.append((f"TV prox lam {args.lam * 255:.1f}", tv))
        for spec in args.run:
            name, run = spec.split("=", 1)
            label = {"eps": "ResNet", "eps-tv": "ResNet-TV"}.get(name, name)
            panels.append((label, _load(name, Path(run))(x)[0]))
    tiles = []
    for label, p in panels:
        if isinstance(p, torch.Tensor):
            p = (p.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        tile = Image.new("RGB", (w, h + 16), "white")
        tile.paste(Image.fromarray(p), (0, 0))
        ImageDraw.Draw(tile).text((3, h + 2), label, fill="black")
        tiles.append(tile)
    gap = 4
    strip = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + 16), "white")
    for i, t in enumerate(tiles):
        strip.paste(t, (i * (w + gap), 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
