"""Which TV should ``tvcli smooth`` use by default? Colour denoising with the three
variants of ``--tv`` / ``--color`` and scikit-image as the classical baseline
(docs/tv_variants.md, "Choosing the defaults").

    python benchmarks/tv_variants_defaults.py --data ../shared/data/denoise     # full run
    python benchmarks/tv_variants_defaults.py --crop 128 --limit 4 --tune 2      # a small run
    python benchmarks/tv_variants_defaults.py --picture docs/img/tv_variants_compare.png

Protocol (the Table 6 one of benchmarks/denoise_table6.py, at three noise levels):
Kodak24 and CBSD68, colour AWGN of std sigma/255 (sigma 15, 25, 50) added in float64
to the clean 8-bit image scaled to [0, 1] (unclipped; seed ``1000 * sigma + index``
plus the set's offset, :func:`tvcli.learning.tasks.denoise.add_noise`), every output
clipped to [0, 1], PSNR and SSIM (:mod:`tvcli.metrics`, data range 1, on RGB). With
``--crop S`` the centre S x S window of each clean image is used (noise drawn on the
crop: a different draw from the full image's, same seed).

Methods, each exactly as the command line runs it (:func:`tvcli.cli.tvfilter.
filter_image`, the defaults of 8-bit outputs, ``--tol 5e-4`` and ``--max-iter`` 200
for aniso, 500 for iso; the runs recorded in docs/tv_variants.md used the earlier
defaults, 1e-3 and 200):

* ``aniso-separate``: ``--tv aniso`` (today's default; the compiled 2-D engine);
* ``iso-separate``: ``--tv iso``;
* ``iso-joint``: ``--tv iso --color joint`` (colour TV);
* ``skimage``: scikit-image ``denoise_tv_chambolle(weight, channel_axis=-1)`` at its
  defaults (eps 2e-4, 200 iterations; isotropic, each channel separately).

The lam of each method and sigma is **chosen on a held-out tuning subset** (the
first ``--tune`` images of each set, never scored): the mean PSNR over those
images is maximised over ``lam = f * sigma / 255`` by a coarse grid in steps of
sqrt(2) in ``f`` (extended while the best sits at an edge), refined by a step of
2^(1/4) on each side of the best. The other images are scored at that lam. The
JSON keeps every tuning score, so a reader can see how flat the optimum is.

Writes ``--out-json`` (everything) and ``--out-md`` (the tables).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tvcli import io
from tvcli.cli.tvfilter import FilterSettings, filter_image
from tvcli.learning.tasks.base import crop_center
from tvcli.learning.tasks.denoise import SEED_OFFSET
from tvcli.metrics import psnr, ssim

METHODS = ("aniso-separate", "iso-separate", "iso-joint", "skimage")
SETS = ("Kodak24", "CBSD68")
# Where the coarse search starts (f in lam = f * sigma / 255): near the best lam of
# aniso TV on photos (docs/denoising.md: ~0.07 at sigma 25); the search moves on
# from there when the best is at an edge.
GRID0 = (0.5, 0.7, 1.0, 1.4)
F_MIN, F_MAX = 0.1, 8.0


def log(msg: str) -> None:
    """A progress line on stderr."""
    print(f"[defaults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_set(folder: Path, crop: int, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """(name, clean float64 (H, W, 3) in [0, 1]) of the PNGs of ``folder``, sorted;
    the centre ``crop`` x ``crop`` window when ``crop`` > 0; the first ``limit``."""
    paths = sorted(folder.glob("*.png"))[:limit]
    if not paths:
        raise SystemExit(f"tv_variants_defaults: no PNG images in {folder}")
    out = []
    for p in paths:
        img = io.read_image(p)[0][:, :, :3].astype(np.float64)
        chw = crop_center(torch.from_numpy(img).permute(2, 0, 1), crop or None)
        out.append((p.stem, chw.permute(1, 2, 0).contiguous().numpy()))
    return out


def noisy_of(clean: np.ndarray, sigma: int, idx: int, set_name: str) -> np.ndarray:
    """``clean`` + seeded AWGN (the seed of :func:`tvcli.learning.tasks.denoise.add_noise`,
    drawn in the (C, H, W) layout as there); float32 (H, W, 3), not clipped."""
    seed = 1000 * int(sigma) + idx + SEED_OFFSET.get(set_name, 0)
    gen = torch.Generator().manual_seed(seed)
    chw = torch.from_numpy(clean).permute(2, 0, 1)
    noise = sigma / 255.0 * torch.randn(chw.shape, generator=gen, dtype=torch.float64)
    return (chw + noise).permute(1, 2, 0).numpy().astype(np.float32)


def denoise(method: str, noisy: np.ndarray, lam: float) -> tuple[np.ndarray, dict]:
    """One method on a float32 (H, W, 3) image; (float32 result, facts)."""
    if method == "skimage":
        from skimage.restoration import denoise_tv_chambolle

        return denoise_tv_chambolle(noisy, weight=lam, channel_axis=-1).astype(np.float32), {}
    tv, color = {"aniso-separate": ("aniso", "separate"), "iso-separate": ("iso", "separate"),
                 "iso-joint": ("iso", "joint")}[method]
    # The command line's defaults for 8-bit outputs (tvcli.cli.smooth; the recorded
    # runs of docs/tv_variants.md used the then-default tol 1e-3, max_iter 200).
    from tvcli.cli.smooth import default_max_iter, default_tol

    settings = FilterSettings("smooth", lam, "2d", None, default_tol("uint8"),
                              default_max_iter("uint8", tv), "direct", "cpu", tv, color)
    return filter_image(noisy, settings)


def scores(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``out`` clipped to [0, 1] against ``clean``."""
    p = torch.from_numpy(np.clip(out, 0, 1).astype(np.float64)).permute(2, 0, 1)
    c = torch.from_numpy(clean).permute(2, 0, 1)
    return float(psnr(p, c, data_range=1.0)), float(ssim(p, c, data_range=1.0))


def run_one(method: str, image: tuple[str, np.ndarray, int, str], sigma: int,
            lam: float) -> dict:
    """Denoise one image; its scores and time."""
    name, clean, idx, set_name = image
    noisy = noisy_of(clean, sigma, idx, set_name)
    t0 = time.perf_counter()
    out, facts = denoise(method, noisy, lam)
    sec = time.perf_counter() - t0
    p, s = scores(out, clean)
    return {"image": f"{set_name}/{name}", "psnr": p, "ssim": s, "seconds": sec,
            "iterations": facts.get("iterations"), "error_bound": facts.get("error_bound")}


def tune(method: str, images: list, sigma: int) -> tuple[float, dict[str, float]]:
    """The lam maximising the mean PSNR over ``images`` (see the module doc); returns
    (lam, {f: mean PSNR} of every f tried)."""
    unit = sigma / 255.0
    tried: dict[float, float] = {}

    def mean_psnr(f: float) -> float:
        f = round(f, 4)
        if f not in tried:
            tried[f] = statistics.fmean(run_one(method, im, sigma, f * unit)["psnr"]
                                        for im in images)
            log(f"  tune {method} sigma {sigma}: f {f:g} (lam {f * unit:.4f}) -> "
                f"{tried[f]:.3f} dB")
        return tried[f]

    grid = list(GRID0)
    for f in grid:
        mean_psnr(f)
    while True:  # extend while the best is at an edge of what was tried
        fs = sorted(tried)
        best = max(fs, key=tried.__getitem__)
        if best == fs[0] and fs[0] / math.sqrt(2) >= F_MIN:
            mean_psnr(fs[0] / math.sqrt(2))
        elif best == fs[-1] and fs[-1] * math.sqrt(2) <= F_MAX:
            mean_psnr(fs[-1] * math.sqrt(2))
        else:
            break
    best = max(tried, key=tried.__getitem__)
    for step in (2 ** -0.25, 2 ** 0.25):
        mean_psnr(best * step)
    best = max(tried, key=tried.__getitem__)
    return best * unit, {f"{f:g}": v for f, v in sorted(tried.items())}


def machine() -> dict:
    """Where and when: CPU, cores, load, versions, threads."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        up = ""
    import skimage

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpu": cpu,
            "cores": os.cpu_count(), "uptime": up, "torch": torch.__version__,
            "skimage": skimage.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads()}


def to_markdown(res: dict) -> str:
    """The tables of docs/tv_variants.md from a result dict."""
    a = res["args"]
    m = res["machine"]
    scale = "full images" if not a["crop"] else f"centre {a['crop']}x{a['crop']} crops"
    lines = [
        f"Generated by `python benchmarks/tv_variants_defaults.py {res['command']}` "
        f"({m['date']} -> {res['end']['date']}; {m['cpu']}, {m['cores']} cores, torch "
        f"threads {m['torch_threads']}; `uptime` at the start: {m['uptime']}; at the "
        f"end: {res['end']['uptime']}).",
        "",
        f"Scale: {scale}; tuning subset (lam chosen here, not scored): "
        f"{', '.join(res['tune_images'])}; "
        f"scored: {len(res['eval_images'])} images "
        f"({', '.join(f'{k} {v}' for k, v in res['eval_counts'].items())}).",
        "",
        "| method | sigma | lam (tuned) | PSNR dB | SSIM | s / image (median) |",
        "|---|---|---|---|---|---|",
    ]
    for sigma in a["sigmas"]:
        best = max(res["results"][str(sigma)].values(), key=lambda r: r["psnr"])["psnr"]
        for meth in a["methods"]:
            r = res["results"][str(sigma)][meth]
            mark = "**" if r["psnr"] == best else ""
            lines.append(f"| {meth} | {sigma} | {r['lam']:.4f} | {mark}{r['psnr']:.2f}{mark} | "
                         f"{r['ssim']:.4f} | {r['seconds']:.2f} |")
    lines += ["", "Per set (PSNR dB / SSIM):", "",
              "| method | sigma | " + " | ".join(res["eval_counts"]) + " |",
              "|---|---|" + "---|" * len(res["eval_counts"])]
    for sigma in a["sigmas"]:
        for meth in a["methods"]:
            per = res["results"][str(sigma)][meth]["per_set"]
            cells = [f"{per[s]['psnr']:.2f} / {per[s]['ssim']:.4f}" if s in per else "-"
                     for s in res["eval_counts"]]
            lines.append(f"| {meth} | {sigma} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences on the scored images (PSNR dB, mean and how many "
              "images the first one wins):", "",
              "| pair | sigma | mean difference | wins |", "|---|---|---|---|"]
    for sigma in a["sigmas"]:
        for pair, d in res["paired"][str(sigma)].items():
            lines.append(f"| {pair} | {sigma} | {d['mean_db']:+.3f} | {d['wins']}/{d['n']} |")
    return "\n".join(lines) + "\n"


def study(args: argparse.Namespace) -> dict:
    """Tunes and scores every method at every sigma; returns the result dict."""
    root = Path(args.data)
    tune_imgs, eval_imgs = [], []
    for set_name in args.sets:
        limit = None if args.limit is None else args.limit + args.tune
        imgs = load_set(root / set_name, args.crop, limit)
        items = [(name, img, i, set_name) for i, (name, img) in enumerate(imgs)]
        tune_imgs += items[:args.tune]
        eval_imgs += items[args.tune:]
    if not tune_imgs or not eval_imgs:
        raise SystemExit("tv_variants_defaults: need --tune >= 1 and at least one image "
                         "left to score")
    log(f"{len(tune_imgs)} tuning and {len(eval_imgs)} scored images, crop {args.crop}")
    res: dict = {"args": vars(args), "machine": machine(),
                 "command": " ".join(sys.argv[1:]),
                 "tune_images": [f"{s}/{n}" for n, _, _, s in tune_imgs],
                 "eval_images": [f"{s}/{n}" for n, _, _, s in eval_imgs],
                 "eval_counts": {s: sum(1 for *_, t in eval_imgs if t == s)
                                 for s in args.sets},
                 "results": {}, "paired": {}}
    for sigma in args.sigmas:
        per_sigma: dict = {}
        for meth in args.methods:
            lam, tried = tune(meth, tune_imgs, sigma)
            rows = [run_one(meth, im, sigma, lam) for im in eval_imgs]
            per_set = {}
            for s in args.sets:
                sel = [r for r in rows if r["image"].startswith(s + "/")]
                if sel:
                    per_set[s] = {"psnr": statistics.fmean(r["psnr"] for r in sel),
                                  "ssim": statistics.fmean(r["ssim"] for r in sel)}
            per_sigma[meth] = {
                "lam": lam, "tuning_psnr_by_f": tried,
                "psnr": statistics.fmean(r["psnr"] for r in rows),
                "ssim": statistics.fmean(r["ssim"] for r in rows),
                "seconds": statistics.median(r["seconds"] for r in rows),
                "per_set": per_set, "per_image": rows}
            log(f"sigma {sigma} {meth}: lam {lam:.4f} PSNR {per_sigma[meth]['psnr']:.3f} "
                f"SSIM {per_sigma[meth]['ssim']:.4f}")
        res["results"][str(sigma)] = per_sigma
        paired = {}
        names = list(per_sigma)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                d = [ra["psnr"] - rb["psnr"] for ra, rb in
                     zip(per_sigma[a]["per_image"], per_sigma[b]["per_image"], strict=True)]
                paired[f"{a} - {b}"] = {"mean_db": statistics.fmean(d),
                                        "wins": sum(v > 0 for v in d), "n": len(d)}
        res["paired"][str(sigma)] = paired
        write(res, args)  # partial results survive an interruption
    return res


def write(res: dict, args: argparse.Namespace) -> None:
    """The JSON and, once every sigma is done, the Markdown."""
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    res["end"] = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "uptime": up}
    Path(args.out_json).write_text(json.dumps(res, indent=1) + "\n")
    if len(res["results"]) == len(args.sigmas):
        Path(args.out_md).write_text(to_markdown(res))


def picture(path: str, lam: float, size: int) -> None:
    """input | aniso | iso | iso-joint, each at ``lam``, from examples/images/astronaut.png
    (a scikit-image public-domain photo: round shapes, a face and a helmet)."""
    from PIL import Image, ImageDraw

    img = io.read_image("examples/images/astronaut.png")[0][:, :, :3]
    # The centre ``size`` x ``size`` (the whole 256 x 256 photo by default): the face,
    # the suit's neck ring and the helmet, round shapes where anisotropic TV makes blocks.
    h, w = img.shape[:2]
    size = min(size, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    crop = np.ascontiguousarray(img[top:top + size, left:left + size])
    panels = [("input", crop)]
    for meth in ("aniso-separate", "iso-separate", "iso-joint"):
        out, _ = denoise(meth, crop, lam)
        panels.append((meth.replace("-separate", ""), np.clip(out, 0, 1)))
    gap = 4
    h = size + 18
    canvas = Image.new("RGB", (len(panels) * (size + gap) - gap, h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, arr) in enumerate(panels):
        x0 = i * (size + gap)
        canvas.paste(Image.fromarray((arr * 255 + 0.5).astype(np.uint8)), (x0, 18))
        text = label if label == "input" else f"{label}, lam {lam:g}"
        draw.text((x0 + 3, 3), text, fill="black")
    canvas.save(path, optimize=True)
    log(f"wrote {path} ({canvas.size[0]}x{canvas.size[1]})")


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module doc."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/denoise",
                    help="folder holding Kodak24/ and CBSD68/ (PNG)")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--sigmas", default="15,25,50")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--crop", type=int, default=0, help="centre crop size (0: full images)")
    ap.add_argument("--limit", type=int, default=None,
                    help="scored images per set (default: all but the tuning ones)")
    ap.add_argument("--tune", type=int, default=2,
                    help="first N images of each set: the held-out tuning subset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-json", default="docs/tv_variants_defaults.json")
    ap.add_argument("--out-md", default="docs/tv_variants_defaults.md")
    ap.add_argument("--picture", metavar="PNG", help="only write the side-by-side picture")
    ap.add_argument("--picture-lam", type=float, default=0.2)
    ap.add_argument("--picture-size", type=int, default=256)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.picture:
        picture(args.picture, args.picture_lam, args.picture_size)
        return 0
    args.sets = [s for s in args.sets.split(",") if s]
    args.sigmas = [int(s) for s in args.sigmas.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        raise SystemExit(f"tv_variants_defaults: unknown method {bad[0]!r}; choose from "
                         + ", ".join(METHODS))
    res = study(args)
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
