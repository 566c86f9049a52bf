"""tvcli.prox_tv (compiled engine) against scikit-image's denoise_tv_chambolle on
noisy colour photos, interleaved in one run, one thread each (docs/tv_variants.md).

For each photo and each model -- ``iso`` (isotropic TV per channel, the model
scikit-image solves) and ``colour`` (tvcli's joint colour TV; scikit-image has no
joint colour model, its colour mode is per channel) -- it

* computes a reference of each model (tvcli, float64, certified to --ref-tol);
* calibrates scikit-image: the largest eps of a ladder (max_num_iter 100000) whose
  result is within --target RMS of the exact per-channel prox (not timed);
* times, interleaved --repeat times (median): tvcli at tol --target (certified)
  and at tol 1e-2, scikit-image at its defaults and at the calibrated eps;
* prints time, RMS error against the reference of the method's own model,
  PSNR against the clean photo, and the speed ratio to calibrated scikit-image.

All methods get the same float32 noisy photo (colour AWGN, --sigma / 255, seed 0)
and weight = lam (same discretisation: forward differences, Neumann boundary).

Usage: python benchmarks/tv_variants_bench.py [photos ...] [--lam 0.1] [--sigma 25]
       [--repeat 3] [--target 1e-3] [--ref-tol 1e-4]

``--cli-default``: instead, each method at its own tuned lam (issue 25's first speed
goal): the CLI's default model and settings (colour TV, the 8-bit default --tol and
--max-iter, through ``tvcli.cli.fast_filter.apply_to_image`` as ``tvcli smooth`` runs
it: the torch-free tvcli._core where it applies)
at ``--cli-lam`` against scikit-image's defaults at ``--skimage-lam`` (the lams
tuned by benchmarks/tv_variants_defaults.py), interleaved; PSNR and median times.
``--threads N``: tvcli's threads (default 1; ``tvcli smooth`` runs on the physical
cores by default); scikit-image's solver runs on one thread either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

import tvcli
from tvcli.io import read_image

KODAK = Path(__file__).resolve().parents[1].parent / "shared/data/denoise/Kodak24"
EPS_LADDER = (2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6, 5e-7, 2e-7, 1e-7, 5e-8)


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def _psnr(a: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - clean) ** 2)))


def machine_line() -> str:
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    return (f"{date}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); uptime: {load}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", nargs="*")
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", type=float, default=1e-3)
    ap.add_argument("--ref-tol", type=float, default=1e-4)
    ap.add_argument("--count", type=int, default=1, help="Kodak photos when none given")
    ap.add_argument("--cli-default", action="store_true")
    ap.add_argument("--cli-lam", type=float, default=0.098)
    ap.add_argument("--skimage-lam", type=float, default=0.069)
    ap.add_argument("--threads", type=int, default=1,
                    help="tvcli's threads (scikit-image runs on one either way)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    photos = args.photos or [str(p) for p in sorted(KODAK.glob("*.png"))[: args.count]]
    if not photos:
        photos = ["examples/images/astronaut.png"]
    print(machine_line(), flush=True)
    if args.cli_default:
        cli_default_vs_skimage(photos, args)
        print(machine_line())
        return
    lam = args.lam
    for path in photos:
        clean = read_image(path)[0][..., :3].astype(np.float64)
        g = torch.Generator().manual_seed(0)
        noise = args.sigma / 255 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
        noisy = (torch.from_numpy(clean) + noise).float()  # (H, W, 3) float32
        x = noisy.permute(2, 0, 1).contiguous()  # (3, H, W)
        xn = noisy.numpy()
        print(f"\n## {Path(path).name} {tuple(clean.shape)} sigma {args.sigma:g} lam {lam:g}",
              flush=True)
        t = time.perf_counter()
        ref = {
            "iso": tvcli.prox_tv(x.double(), lam, norm="iso", tol=args.ref_tol,
                                 max_iter=200000).numpy(),
            "colour": tvcli.prox_tv(x.double(), lam, norm="iso", channel_dim=0,
                                    tol=args.ref_tol, max_iter=200000).numpy(),
        }
        print(f"references (certified {args.ref_tol:g}) in {time.perf_counter() - t:.1f} s",
              flush=True)

        def skimage(eps: float, max_num_iter: int, xn=xn):
            return lambda: np.moveaxis(denoise_tv_chambolle(
                xn, weight=lam, eps=eps, max_num_iter=max_num_iter, channel_axis=-1), -1, 0)

        cal_eps, cal_err = None, None
        for eps in EPS_LADDER:
            err = _rms(skimage(eps, 100000)(), ref["iso"])
            if err <= args.target:
                cal_eps, cal_err = eps, err
                break
        print(f"scikit-image calibration: eps {cal_eps} gives RMS {cal_err}", flush=True)

        def ours(tol: float, colour: bool, x=x):
            kw = {"channel_dim": 0} if colour else {}
            return lambda: tvcli.prox_tv(x, lam, norm="iso", tol=tol, **kw).numpy()

        arms = [
            (f"tvcli iso tol {args.target:g}", "iso", ours(args.target, False)),
            ("scikit-image defaults (eps 2e-4, 200 it)", "iso", skimage(2e-4, 200)),
            ("tvcli iso tol 1e-2", "iso", ours(1e-2, False)),
            (f"tvcli colour tol {args.target:g}", "colour", ours(args.target, True)),
            ("tvcli colour tol 1e-2", "colour", ours(1e-2, True)),
        ]
        if cal_eps is not None:
            arms.append((f"scikit-image eps {cal_eps:g} (calibrated)", "iso",
                         skimage(cal_eps, 100000)))
        times = {name: [] for name, _, _ in arms}
        out = {}
        for _ in range(args.repeat):  # interleaved
            for name, _, fn in arms:
                t = time.perf_counter()
                out[name] = fn()
                times[name].append(time.perf_counter() - t)
        cal = (statistics.median(times[arms[-1][0]]) if cal_eps is not None else None)
        print("| method | model | median time | RMS vs exact | PSNR | calibrated skimage / this |")
        print("|---|---|---|---|---|---|")
        for name, model, _ in arms:
            med = statistics.median(times[name])
            ratio = f"{cal / med:.2f}" if cal is not None else "-"
            print(f"| {name} | {model} | {med:.3f} s | {_rms(out[name], ref[model]):.1e} | "
                  f"{_psnr(np.moveaxis(out[name], 0, -1), clean):.2f} dB | {ratio} |",
                  flush=True)
        print(f"noisy PSNR {_psnr(xn, clean):.2f} dB; times: "
              + "; ".join(f"{k}: {[round(v, 3) for v in vs]}" for k, vs in times.items()))
    print(machine_line())


def cli_default_vs_skimage(photos: list[str], args: argparse.Namespace) -> None:
    """The CLI's default smoothing at ``--cli-lam`` against scikit-image's defaults at
    ``--skimage-lam``, each photo (float32, colour AWGN, seed 0) interleaved
    ``--repeat`` times; one table row per photo and a total."""
    from tvcli.cli.fast_filter import apply_to_image
    from tvcli.cli.smooth import DEFAULT_TV, default_max_iter, default_tol
    from tvcli.cli.tvfilter import FilterSettings

    # As `tvcli smooth --threads N` sets it up: cpu_threads selects the torch-free
    # path (tvcli._core) where it applies, as the command line does.
    settings = FilterSettings("smooth", args.cli_lam, "2d", None, default_tol("uint8", DEFAULT_TV),
                              default_max_iter("uint8", DEFAULT_TV), "direct", "cpu",
                              DEFAULT_TV, "joint", cpu_threads=torch.get_num_threads())
    print(f"\ntvcli: {settings.tv} {settings.color} lam {args.cli_lam:g} tol {settings.tol:g} "
          f"max_iter {settings.max_iter}; scikit-image defaults lam {args.skimage_lam:g}; "
          f"sigma {args.sigma:g}, {args.repeat} interleaved repeats, medians\n")
    print("| photo | tvcli CLI default: time / PSNR / iterations | scikit-image defaults: "
          "time / PSNR | time ratio tvcli / scikit-image | PSNR difference |")
    print("|---|---|---|---|---|")
    tot = {"ours": 0.0, "sk": 0.0, "dp": []}
    for path in photos:
        clean = read_image(path)[0][..., :3].astype(np.float64)
        g = torch.Generator().manual_seed(0)
        noise = args.sigma / 255 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
        xn = (torch.from_numpy(clean) + noise).float().numpy()
        times: dict[str, list[float]] = {"ours": [], "sk": []}
        for _ in range(args.repeat):
            t = time.perf_counter()
            ours, facts = apply_to_image(xn, settings)
            times["ours"].append(time.perf_counter() - t)
            t = time.perf_counter()
            sk = denoise_tv_chambolle(xn, weight=args.skimage_lam, channel_axis=-1)
            times["sk"].append(time.perf_counter() - t)
        mo, ms = statistics.median(times["ours"]), statistics.median(times["sk"])
        po, ps = _psnr(np.clip(ours, 0, 1), clean), _psnr(np.clip(sk, 0, 1), clean)
        tot["ours"] += mo
        tot["sk"] += ms
        tot["dp"].append(po - ps)
        print(f"| {Path(path).name} | {mo:.3f} s / {po:.2f} dB / {facts.get('iterations')} | "
              f"{ms:.3f} s / {ps:.2f} dB | {mo / ms:.2f} | {po - ps:+.2f} dB |", flush=True)
    print(f"| all {len(photos)} | {tot['ours']:.2f} s | {tot['sk']:.2f} s | "
          f"{tot['ours'] / tot['sk']:.2f} | {min(tot['dp']):+.2f} to {max(tot['dp']):+.2f} dB |")


if __name__ == "__main__":
    main()
