"""3-D TV on a float32 volume: tvcli.prox_tv(dims=(0, 1, 2)) iso and aniso against
scikit-image's n-D denoise_tv_chambolle (iso), one thread each, every method in
its own subprocess so that its peak memory (max RSS) is its own
(docs/tv_variants.md).

Volume: a sphere in a box (0.2 / 0.8) plus Gaussian noise 0.1 (seed 0), float32,
--size^3. scikit-image's eps is calibrated on a --cal-size^3 volume of the same
kind (its largest eps whose result is within --target RMS of the exact prox, the
reference certified to --ref-tol), then every method runs once per --repeat,
interleaved, at --size^3; time is the median, memory the largest max RSS.

Usage: python benchmarks/tv_variants_volume.py [--size 256] [--cal-size 96]
       [--lam 0.1] [--target 1e-3] [--repeat 2] [--skimage-eps EPS (no calibration)]
       python benchmarks/tv_variants_volume.py --one METHOD --size N ...  (internal)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

EPS_LADDER = (2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6, 5e-7, 2e-7, 1e-7, 5e-8, 2e-8, 1e-8)


def volume(n: int) -> np.ndarray:
    """(n, n, n) float32: a sphere in a box plus noise 0.1 (seed 0)."""
    idx = np.indices((n, n, n), dtype=np.float32)
    ball = ((idx - n / 2) ** 2).sum(0) < (n / 3) ** 2
    rng = np.random.default_rng(0)
    return (0.2 + 0.6 * ball + 0.1 * rng.standard_normal((n, n, n))).astype(np.float32)


def run_one(method: str, n: int, lam: float, arg: float) -> dict:
    """Runs one method in this process; returns seconds, max RSS and a checksum."""
    from skimage.restoration import denoise_tv_chambolle

    import tvcli

    torch.set_num_threads(1)
    x = volume(n)
    t = time.perf_counter()
    info = None
    if method == "none":  # the interpreter, torch, scikit-image and the volume alone
        y = x
    elif method in ("iso", "aniso"):
        y, info = tvcli.prox_tv(torch.from_numpy(x), lam, dims=(0, 1, 2), norm=method, tol=arg,
                                max_iter=100000, return_info=True)
        y = y.numpy()
    else:
        y = denoise_tv_chambolle(x, weight=lam, eps=arg, max_num_iter=100000 if arg < 2e-4
                                 else 200)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # MiB
    out = {"seconds": dt, "max_rss_mib": rss, "dtype": str(y.dtype),
           "input_mib": x.nbytes / 2**20}
    if info is not None:
        out["iterations"] = int(info.iterations)
        out["bound"] = float(info.error_bound)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cal-size", type=int, default=96)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--target", type=float, default=1e-3)
    ap.add_argument("--ref-tol", type=float, default=1e-4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--one", default=None)
    ap.add_argument("--arg", type=float, default=0.0)
    ap.add_argument("--skimage-eps", type=float, default=None,
                    help="time scikit-image at this eps instead of calibrating it")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.lam, args.arg)))
        return
    from skimage.restoration import denoise_tv_chambolle

    import tvcli

    torch.set_num_threads(1)
    print(subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip(),
          subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    xc = volume(args.cal_size)
    ref = tvcli.prox_tv(torch.from_numpy(xc).double(), args.lam, dims=(0, 1, 2), norm="iso",
                        tol=args.ref_tol, max_iter=200000).numpy()
    cal_eps = args.skimage_eps
    for eps in EPS_LADDER if cal_eps is None else ():
        y = denoise_tv_chambolle(xc, weight=args.lam, eps=eps, max_num_iter=100000)
        err = float(np.sqrt(np.mean((y.astype(np.float64) - ref) ** 2)))
        print(f"calibration {args.cal_size}^3: scikit-image eps {eps:g}: RMS {err:.2e}",
              flush=True)
        if err <= args.target:
            cal_eps = eps
            break
    y = tvcli.prox_tv(torch.from_numpy(xc), args.lam, dims=(0, 1, 2), norm="iso",
                      tol=args.target).numpy()
    err = float(np.sqrt(np.mean((y.astype(np.float64) - ref) ** 2)))
    print(f"calibration {args.cal_size}^3: tvcli iso tol {args.target:g}: RMS {err:.2e}",
          flush=True)
    arms = [("baseline (imports + the volume)", "none", 0.0),
            ("tvcli iso", "iso", args.target), ("tvcli aniso", "aniso", args.target),
            ("scikit-image defaults (eps 2e-4, 200 it)", "skimage", 2e-4)]
    if cal_eps is not None:
        arms.append((f"scikit-image eps {cal_eps:g}", "skimage", cal_eps))
    res = {name: [] for name, _, _ in arms}
    for _ in range(args.repeat):  # interleaved, a fresh process each
        for name, method, arg in arms:
            cmd = [sys.executable, __file__, "--one", method, "--size", str(args.size),
                   "--lam", str(args.lam), "--arg", str(arg)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            res[name].append(json.loads(out.strip().splitlines()[-1]))
            print(name, res[name][-1], flush=True)
    print(f"\n| method ({args.size}^3 float32, lam {args.lam:g}) | median time | peak RSS |")
    print("|---|---|---|")
    for name, _, _ in arms:
        med = statistics.median(r["seconds"] for r in res[name])
        rss = max(r["max_rss_mib"] for r in res[name])
        print(f"| {name} | {med:.1f} s | {rss:.0f} MiB |")
    print(subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip(),
          subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
