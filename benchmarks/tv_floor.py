"""Scores every weights file against plain TV under one validation protocol.

    python benchmarks/tv_floor.py --data DATA [--weights weights] [--run RUN_DIR ...]

Writes ``val_full = {sigma: {psnr, tv_psnr, tv_lam}}`` into each entry of
``WEIGHTS/manifest.json`` (see :mod:`tvcli.learning.tasks.denoise`); with ``--run`` it
also scores training runs' checkpoints (not shipped) and prints them next to the
shipped model of the same name, to decide whether to export. A model below TV
makes ``tests/test_weights_floor.py`` fail.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from tvcli.learning.tasks.denoise import PROTOCOL, load_val, model_psnr, tv_best, val_sigmas
from tvcli.models import build_model, load_pretrained

ROOT = Path(__file__).resolve().parents[1]


def _run_model(run: Path) -> tuple[torch.nn.Module, dict]:
    from tvcli.learning.train.checkpoint import load_model_state

    meta = json.loads((run / "ckpt.json").read_text())
    cfg = meta["config"]
    model = build_model(cfg["model"], **meta["model_config"])
    model.load_state_dict(load_model_state(run))
    entry = {"sigma": None if cfg.get("sigma_range") else cfg["sigma"],
             "sigma_range": cfg.get("sigma_range"), "model": cfg["model"]}
    return model.eval(), {**entry, "steps": meta["step"]}


def reused_psnr(old: dict | None, label: str, sigma: float,
                sha256: str | None = None) -> float | None:
    """Mean PSNR (dB) of row ``label`` at ``sigma`` in a denoise_eval JSON (``old``),
    or None when it cannot be reused. "TV" takes the best-lam TV prox row. A model's
    row is reused only when it records the sha256 of the very weights file being
    scored (``weights_sha256``): after a re-export the old row is another model's."""
    rows = (old or {}).get("methods", {}).get(f"{sigma:g}", {})
    hit = [k for k in rows if k == label or (label == "TV" and k.startswith("TV prox"))]
    if not hit:
        return None
    row = rows[hit[0]]
    if label != "TV" and (sha256 is None or row.get("weights_sha256") != sha256):
        return None
    sc = row["scores"]
    return sum(a for a, _ in sc) / len(sc)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=ROOT / "weights")
    ap.add_argument("--run", type=Path, nargs="*", default=[])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--reuse-json", type=Path, default=None,
                    help="take the numbers of models (and TV) already scored under the same "
                    "protocol from this denoise_eval JSON (docs/denoising_val.json)")
    ap.add_argument("--models", nargs="*", default=None,
                    help="score only these weights files (others keep their val_full)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    images = load_val(args.data)
    man_path = args.weights / "manifest.json"
    man = json.loads(man_path.read_text())
    tv: dict[float, tuple[float, float]] = {}
    old = json.loads(args.reuse_json.read_text()) if args.reuse_json else None

    def floor(s: float) -> tuple[float, float]:
        reused = reused_psnr(old, "TV", s) if s not in tv else None
        if reused is not None:
            k = next(k for k in old["methods"][f"{s:g}"] if k.startswith("TV prox"))
            tv[s] = (reused, float(k.split("lam ")[1].rstrip(")")))
        if s not in tv:
            tv[s] = tv_best(images, s)
            print(f"TV sigma {s:g}: {tv[s][0]:.2f} dB (lam {tv[s][1]:g})", flush=True)
        return tv[s]

    for e in man["weights"]:
        if args.models is not None and e["file"] not in args.models:
            continue
        model, _ = load_pretrained(e["model"], val_sigmas(e)[0], weights_dir=args.weights)
        res = {}
        for s in val_sigmas(e):
            p = reused_psnr(old, f"tvcli {e['model']}", s, e.get("sha256"))
            if p is None:
                p = model_psnr(model, images, s)
            t, lam = floor(s)
            res[f"{s:g}"] = {"psnr": round(p, 3), "tv_psnr": round(t, 3), "tv_lam": lam}
            print(f"{e['file']:32s} sigma {s:g}: {p:.2f} dB (TV {t:.2f})", flush=True)
        e["val_full"] = res
        e["val_protocol"] = PROTOCOL
    for run in args.run:
        model, info = _run_model(run)
        for s in val_sigmas(info):
            p = model_psnr(model, images, s)
            shipped = [e for e in man["weights"] if e["model"] == info["model"]
                       and f"{s:g}" in e.get("val_full", {})]
            ref = shipped[0]["val_full"][f"{s:g}"]["psnr"] if shipped else float("nan")
            print(f"run {run} (step {info['steps']}) sigma {s:g}: {p:.2f} dB "
                  f"(shipped {ref:.2f}, TV {floor(s)[0]:.2f})", flush=True)
    if not args.no_write:
        tmp = man_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(man, indent=1) + "\n")
        os.replace(tmp, man_path)
        print(f"wrote {man_path}")


if __name__ == "__main__":
    main()
