"""The paper's Table 6 protocol on CBSD68 and Kodak24 -> docs/denoising.md.

    python benchmarks/denoise_eval.py --table6 ../shared/data/denoise \\
        [--scico-python PY] [--methods ...] [--redo ffdnet-tv ...]

Also the denoising methods and the scoring that ``denoise_eval.py`` (the
validation report and the command line) shares with it: this module imports
nothing from ``denoise_eval.py``. Noise comes from
:func:`tvcli.learning.tasks.denoise.add_noise`, PSNR / SSIM from :mod:`tvcli.metrics`.

Protocol: colour AWGN of std sigma/255 (sigma 25, 50) added in float32 to the
clean 8-bit image scaled to [0, 1], seed ``1000 * sigma + index`` per image (+
100000 for Kodak24). Two input conventions: **unclipped** (the noisy float image
as drawn: the DnCNN/KAIR protocol) and **clipped** to [0, 1] (what an image file
can hold). Every output is clipped to [0, 1]; PSNR and SSIM (data range 1, on
RGB) per image, mean per set.

Cost control (2 shared CPU cores): every method's per-image scores are stored in
``docs/denoising.json`` as soon as a method finishes, so an interrupted run
resumes where it stopped (``--redo`` forces methods again). Slow methods run on a
stated subset (every ``SUBSET_STEP``-th image of each set); the report gives
full-set means for the methods that ran on every image and a second table, all
methods on the subset, for a like-for-like comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SETS = ("CBSD68", "Kodak24")
SIGMAS = (25, 50)
CLIPS = ("unclipped", "clipped")
SUBSET_STEP = 8  # BM3D, scico, the 17-layer tvcli DnCNN pair: images 0, 8, 16, ... of
# each set (9 of CBSD68, 3 of Kodak24). They run on the unclipped input only.
SUBSET_STEP_DNCNN = SUBSET_STEP
SLOW = ("bm3d", "scico", "dncnn", "dncnn-tv")

# The paper's figures (Yeh et al. 2022, Table 6; trained with KAIR on a GPU).
PAPER = {"DnCNN (paper, Table 6)": {("CBSD68", 25): 31.24, ("CBSD68", 50): 27.95,
                                    ("Kodak24", 25): 32.14, ("Kodak24", 50): 28.95},
         "DnCNN-TV (paper, Table 6)": {("CBSD68", 25): 31.26, ("CBSD68", 50): 28.07,
                                       ("Kodak24", 25): 32.15, ("Kodak24", 50): 29.09}}
# CBM3D as published (Zhang et al., "Plug-and-Play Image Restoration with Deep
# Denoiser Prior", TPAMI 2021, Table 3; same test sets, unclipped AWGN).
CBM3D_PUBLISHED = {("CBSD68", 25): 30.71, ("CBSD68", 50): 27.38,
                   ("Kodak24", 25): 31.68, ("Kodak24", 50): 28.46}

TV_GRID = {25: (0.05, 0.06, 0.07, 0.08, 0.09), 50: (0.1, 0.12, 0.14, 0.16, 0.18)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_set(root: Path, name: str) -> list[tuple[str, torch.Tensor]]:
    from PIL import Image

    out = []
    for p in sorted((root / name).iterdir()):
        if p.suffix.lower() in (".png", ".tif", ".bmp", ".jpg"):
            a = np.asarray(Image.open(p).convert("RGB")).astype(np.float32) / 255.0
            out.append((p.stem, torch.from_numpy(a).permute(2, 0, 1).contiguous()))
    if not out:
        raise SystemExit(f"no images in {root / name}")
    return out


def noisy_image(clean: torch.Tensor, set_name: str, sigma: int, idx: int,
                clip: str) -> torch.Tensor:
    """The task's seeded noise (:func:`tvcli.learning.tasks.denoise.add_noise`: seed
    ``1000 * sigma + idx``, + 100000 for Kodak24), clipped to [0, 1] when ``clip``
    is "clipped"."""
    from tvcli.learning.tasks.denoise import add_noise

    x = add_noise(clean, sigma, idx, set_name)
    return x.clamp(0, 1) if clip == "clipped" else x


def score(out: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``out`` clipped to [0, 1] against ``clean`` (data range 1,
    :mod:`tvcli.metrics`, in the images' dtype): every denoising report's scoring."""
    from tvcli.metrics import psnr, ssim

    out = out.clamp(0, 1)
    return float(psnr(out, clean, data_range=1.0)), float(ssim(out, clean, data_range=1.0))


# ------------------------------------------------------------------ the methods
# One image: run_* (x, sigma) -> (output, seconds). The Table 6 driver's methods
# map (list of noisy images, sigma) -> (list of outputs, seconds per image).

_SCICO_SCRIPT = r"""
import sys, numpy as np, time
from scico import denoiser
variant, paths = sys.argv[1], sys.argv[2:]
model = denoiser.DnCNN(variant)
for p in paths:
    x = np.load(p)
    t = time.perf_counter()
    y = np.stack([np.asarray(model(x[..., c])) for c in range(x.shape[-1])], -1)
    np.save(p.replace(".npy", ".out.npy"), y)
    print(time.perf_counter() - t, flush=True)
"""


def run_bm3d(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    """BM3D (PyPI ``bm3d``; CBM3D on colour) of one (C, H, W) image."""
    import bm3d

    a = x.permute(1, 2, 0).numpy().astype(np.float64)
    t = time.perf_counter()
    if a.shape[-1] == 3:
        y = bm3d.bm3d_rgb(a, sigma / 255.0)
    else:
        y = bm3d.bm3d(a[..., 0], sigma / 255.0)[..., None]
    return torch.from_numpy(np.asarray(y, dtype=np.float32)).permute(2, 0, 1), \
        time.perf_counter() - t


def run_scico(py: str, noisy: list[torch.Tensor], sigma: float):
    """scico's pretrained DnCNN (per channel) in the Python ``py`` (it needs jax and
    flax); returns (outputs, seconds per image, variant)."""
    variant = {15: "17L", 25: "17M", 50: "17H"}[int(sigma)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, x in enumerate(noisy):
            p = os.path.join(tmp, f"{i}.npy")
            np.save(p, x.permute(1, 2, 0).numpy())
            paths.append(p)
        res = subprocess.run([py, "-c", _SCICO_SCRIPT, variant, *paths], capture_output=True,
                             text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip().splitlines()[-1])
        secs = [float(s) for s in res.stdout.split()]
        outs = [torch.from_numpy(np.load(p.replace(".npy", ".out.npy")).astype(np.float32))
                .permute(2, 0, 1) for p in paths]
    return outs, secs, variant


def run_ours(model: torch.nn.Module, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    """Denoises one (C, H, W) image with a loaded tvcli model as ``tvcli run`` does
    (tiles of 512, overlap 48; gray through the colour networks as three equal
    channels); returns (output, seconds)."""
    from tvcli.models.inference import denoise

    inp = x.expand(3, -1, -1) if x.shape[0] == 1 else x
    t = time.perf_counter()
    y = denoise(model, inp, tile=512, overlap=48, sigma=sigma / 255.0)
    secs = time.perf_counter() - t
    if x.shape[0] == 1:
        y = y.mean(0, keepdim=True)
    return y, secs


def _each(fn: Callable) -> Callable:
    """A method over a list of images from a one-image ``fn(x, sigma)``."""
    def run(noisy, sigma):
        res = [fn(x, sigma) for x in noisy]
        return [y for y, _ in res], [s for _, s in res]
    return run


def _tv(lam: float):
    import tvcli

    def one(x, sigma):
        t = time.perf_counter()
        # a certified RMS error <= 1e-3 moves PSNR by < 0.05 dB at these noise levels
        y = tvcli.prox_tv2d(x, lam, tol=1e-3)
        return y, time.perf_counter() - t
    return _each(one)


_bm3d = _each(run_bm3d)


def _scico(py: str):
    def run(noisy, sigma):
        outs, secs, _ = run_scico(py, noisy, sigma)
        return outs, secs
    return run


def _ours(name: str):
    def run(noisy, sigma):
        from tvcli.models import load_pretrained

        model, _ = load_pretrained(name, sigma)
        return _each(lambda x, s: run_ours(model, x, s))(noisy, sigma)
    return run


def _ours_label(name: str, sigma: int) -> str | None:
    """Row label of a tvcli model at sigma; None when no weights fit sigma."""
    from tvcli.models import list_weights

    for e in list_weights():
        if e["model"] != name:
            continue
        if e.get("sigma_range") and e["sigma_range"][0] <= sigma <= e["sigma_range"][1]:
            return f"tvcli {name} (blind)"
        if e.get("sigma") == sigma:
            return f"tvcli {name} (σ={sigma})"
    return None


# ------------------------------------------------------------------- the driver


def evaluate(root: Path, json_path: Path, methods: list[str], redo: list[str],
             scico_py: str | None, sigmas: tuple[int, ...] = SIGMAS,
             clips: tuple[str, ...] = CLIPS, only_sets: tuple[str, ...] = SETS,
             dncnn_full: bool = False) -> dict:
    """Runs what is missing of ``methods`` x ``sigmas`` x ``clips`` (parts can run in
    separate processes with their own JSON, merged later with --merge).
    ``dncnn_full``: the tvcli DnCNN pair on every image (replacing its subset rows)
    rather than on the subset."""
    res = json.loads(json_path.read_text()) if json_path.exists() else {}
    res.setdefault("rows", {})
    res.setdefault("notes", {})
    res.setdefault("budget", {})
    res["protocol"] = __doc__.split("Protocol: ", 1)[1].split("\n\n")[0].replace("\n", " ")
    sets = {s: load_set(root, s) for s in SETS}
    res["images"] = {s: [n for n, _ in v] for s, v in sets.items()}

    def save() -> None:
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, json_path)

    def put(key: str, set_name: str, idx: list[int], fn: Callable, noisy_all, clean,
            sigma: int) -> None:
        outs, secs = fn([noisy_all[i] for i in idx], sigma)
        n = len(clean)
        ps, ss = [None] * n, [None] * n
        for i, o in zip(idx, outs, strict=True):
            ps[i], ss[i] = score(o, clean[i])
        mp = [clean[i].shape[-1] * clean[i].shape[-2] / 1e6 for i in idx]
        res["rows"][key] = {"psnr": ps, "ssim": ss, "s_per_mp": float(np.median(
            [s / m for s, m in zip(secs, mp, strict=True)])) if secs else None}
        save()

    for clip in clips:  # all of the unclipped protocol first
        for sigma in sigmas:
            for set_name, items in sets.items():
                if set_name not in only_sets:
                    continue
                clean = [im for _, im in items]
                noisy = [noisy_image(c, set_name, sigma, i, clip) for i, c in enumerate(clean)]
                every = list(range(len(clean)))
                sub = every[::SUBSET_STEP]
                sub_dn = every[::SUBSET_STEP_DNCNN]
                tag = f"{set_name}|{sigma}|{clip}"
                todo: list[tuple[str, list[int], Callable]] = []
                if "noisy" in methods:
                    todo.append(("noisy", every, lambda xs, s: (xs, [])))
                if "tv" in methods:
                    lam_key = f"tv_lam|{sigma}|{clip}"
                    if lam_key not in res["budget"] or "tv" in redo:
                        # lam chosen on the CBSD68 subset (then fixed for both sets)
                        cb = [im for _, im in sets["CBSD68"]][::SUBSET_STEP]
                        cn = [noisy_image(c, "CBSD68", sigma, i * SUBSET_STEP, clip)
                              for i, c in enumerate(cb)]
                        best = max((np.mean([score(o, c)[0] for o, c in zip(
                            _tv(lam)(cn, sigma)[0], cb, strict=True)]), lam)
                                   for lam in TV_GRID[sigma])
                        res["budget"][lam_key] = best[1]
                        log(f"TV sigma {sigma} {clip}: lam {best[1]}")
                    lam = res["budget"][lam_key]
                    todo.append(("TV prox (best single lam)", every, _tv(lam)))
                slow_ok = clip == "unclipped"
                for name in ("ffdnet", "ffdnet-tv", "dncnn", "dncnn-tv"):
                    if name not in methods or (name in SLOW and not slow_ok):
                        continue
                    label = _ours_label(name, sigma)
                    if label is None:
                        res["notes"][f"tvcli {name} σ={sigma}"] = "no shipped weights for it"
                        continue
                    full = name.startswith("ffdnet") or dncnn_full
                    idx = every if full else sub_dn
                    if full:  # a full-set row supersedes an older subset row
                        res["rows"].pop(f"{tag}|{label} (subset)", None)
                    todo.append((label + ("" if idx is every else " (subset)"), idx,
                                 _ours(name)))
                if "bm3d" in methods and slow_ok:
                    todo.append(("BM3D (pip bm3d, subset)", sub, _bm3d))
                if "scico" in methods and scico_py and slow_ok:
                    variant = {25: "17M", 50: "17H"}[sigma]
                    todo.append((f"scico DnCNN {variant} (pretrained, subset)", sub,
                                 _scico(scico_py)))
                for label, idx, fn in todo:
                    key = f"{tag}|{label}"
                    method = label.split(" ")[0].lower()
                    forced = any(r in label for r in redo)
                    if key in res["rows"] and not forced:
                        continue
                    log(f"{tag}: {label} on {len(idx)} images")
                    try:
                        put(key, set_name, idx, fn, noisy, clean, sigma)
                    except Exception as exc:  # not installed / failed: say so in the report
                        res["notes"][f"{method}"] = f"not run: {type(exc).__name__}: {exc}"
                        save()
    return res


def _mean(vals: list, idx: list[int] | None = None) -> float | None:
    v = [vals[i] for i in (idx if idx is not None else range(len(vals)))]
    if any(x is None for x in v):
        return None
    return float(np.mean(v))


def to_markdown(res: dict, machine: str, budgets: dict[str, str]) -> str:
    """The report: per input convention, a full-set table and a subset table."""
    rows = res["rows"]
    labels: list[str] = []
    for key in rows:
        lab = key.split("|", 3)[3]
        if lab not in labels:
            labels.append(lab)
    cols = [(s, g) for g in SIGMAS for s in SETS]
    head = "| method | " + " | ".join(f"{s} σ={g}" for s, g in cols) + " | s / MP | budget |"
    sep = "| --- |" + " --- |" * (len(cols) + 2)
    out = ["# Denoising: the paper's Table 6 protocol", "",
           f"Made by `python benchmarks/denoise_eval.py --table6 DIR` ({machine}).", "",
           "Protocol: " + res["protocol"], "",
           "Cells: mean PSNR (dB) / mean SSIM. `subset`: every "
           f"{SUBSET_STEP}th image (CBSD68: {len(res['images']['CBSD68'][::SUBSET_STEP])}, "
           f"Kodak24: {len(res['images']['Kodak24'][::SUBSET_STEP])} images), run on the "
           "unclipped input only. Full-set means only for methods run on every "
           "image; the subset tables put every method on the same images. Published "
           "figures are the authors' own (their training, their noise draws), "
           "unclipped protocol, PSNR only.", ""]
    for clip in CLIPS:
        for title, step in (("all images", 1), (f"subset (every {SUBSET_STEP}th image)",
                                                SUBSET_STEP)):
            out += [f"## Noisy input {clip}: {title}", "", head, sep]
            for lab in labels:
                cells, sp = [], None
                for s, g in cols:
                    r = rows.get(f"{s}|{g}|{clip}|{lab}")
                    if r is None:
                        cells.append("-")
                        continue
                    idx = list(range(len(r["psnr"])))[::step]
                    p, q = _mean(r["psnr"], idx), _mean(r["ssim"], idx)
                    cells.append("-" if p is None else f"{p:.2f} / {q:.4f}")
                    sp = r["s_per_mp"] if r["s_per_mp"] is not None else sp
                if all(c == "-" for c in cells):
                    continue
                key = next((k for k in budgets if lab.startswith(k)), None)
                out.append(f"| {lab} | " + " | ".join(cells) + " | "
                           + ("-" if sp is None else f"{sp:.1f}") + " | "
                           + (budgets.get(key, "-") if key else "-") + " |")
            if clip == "unclipped" and step == 1:
                for name, fig in (("CBM3D (published, DPIR Table 3)", CBM3D_PUBLISHED),
                                  *PAPER.items()):
                    out.append(f"| {name} | " + " | ".join(f"{fig[(s, g)]:.2f}" for s, g in
                                                           cols) + " | - | published |")
            out.append("")
    lams = {k: v for k, v in res["budget"].items() if k.startswith("tv_lam")}
    if lams:
        out += ["TV lam (chosen on the CBSD68 subset, fixed for both sets): "
                + ", ".join(f"σ={k.split('|')[1]} {k.split('|')[2]}: {v:g}"
                            for k, v in lams.items()), ""]
    if res["notes"]:
        out += ["## Not run", ""] + [f"* {k}: {v}" for k, v in res["notes"].items()] + [""]
    return "\n".join(out)
