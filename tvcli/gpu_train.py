"""Training jobs for one GPU run within a fixed wall budget (``.ci/gpu_train.sh``).

    python -m tvcli.gpu_train make-data --bsd432 data/bsd432 --tests DIR --out data/gpu/denoise.pack
    python -m tvcli.gpu_train run --pack data/gpu/denoise.pack --out OUT --budget-s 300
    python -m tvcli.gpu_train run --dry-run --out OUT        # CPU, tiny synthetic pack

``JOBS`` lists what a GPU run trains: one :class:`Job` per model, grouped in
pairs that get equal budgets (the paper's claim is about a network with and
without TV layers at equal budget). Other tasks (edges, EPS, classification) are
added as more entries with their own ``task`` (a name registered with
:func:`tvcli.train.register_task`), ``data`` pack and ``evaluate`` function.

A run gives each job ``weight / sum(weights)`` of the time left (after a reserve
for evaluation), trains with bf16 autocast or TF32, channels-last and the
patches in GPU memory, evaluates on the pack's test sets, and writes into OUT at
most four files: ``weights.tar`` (safetensors + manifest.json), ``results.json``,
``results.md`` and ``log.txt`` -- a GPU run may bring back 8 files of 16 MiB.
Needs only torch and the standard library on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACK = ROOT / "data" / "gpu" / "denoise.pack"


@dataclass
class Job:
    """One model to train in a GPU run."""

    name: str  # run / output name, e.g. "dncnn-tv-s25"
    model: str
    pair: str  # jobs of one pair get equal budgets
    task: str = "denoise"
    pack: str = "denoise.pack"
    weight: float = 1.0  # share of the run's training time
    config: dict = field(default_factory=dict)  # TrainConfig fields
    evaluate: str = "denoise"  # key of EVALUATORS
    eval_sigmas: tuple[float, ...] = (25.0, 50.0)


_DN = {"batch": 128, "patch": 50, "lr": 1e-3, "lr_min": 1e-5, "patch_pool": 65536}
_FF = {"batch": 128, "patch": 64, "lr": 1e-3, "lr_min": 1e-5, "patch_pool": 49152,
       "sigma_range": [0.0, 55.0], "sigma": 25.0}

JOBS: list[Job] = [
    Job("ffdnet-blind", "ffdnet", "ffdnet", config=_FF),
    Job("ffdnet-tv-blind", "ffdnet-tv", "ffdnet", config=_FF),
    Job("dncnn-s25", "dncnn", "dncnn-s25", config={**_DN, "sigma": 25.0}, eval_sigmas=(25.0,)),
    Job("dncnn-tv-s25", "dncnn-tv", "dncnn-s25", config={**_DN, "sigma": 25.0},
        eval_sigmas=(25.0,)),
    Job("dncnn-s50", "dncnn", "dncnn-s50", config={**_DN, "sigma": 50.0}, eval_sigmas=(50.0,)),
    Job("dncnn-tv-s50", "dncnn-tv", "dncnn-s50", config={**_DN, "sigma": 50.0},
        eval_sigmas=(50.0,)),
]


# --------------------------------------------------------------------- evaluation


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.clamp(0, 1).double() - b.double()).pow(2).mean())
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


@torch.no_grad()
def evaluate_denoise(model: torch.nn.Module, arrays: dict[str, torch.Tensor], job: Job,
                     device: torch.device, amp: Callable, step: int = 1,
                     deadline: float = math.inf) -> dict:
    """Mean PSNR per test set (``test/<SET>/<name>`` arrays), sigma and input
    convention, with the noise of benchmarks/denoise_table6.py (same seeds, drawn
    on the CPU in float32). ``step`` > 1 scores every step-th image only; past
    ``deadline`` (time.perf_counter()) the remaining images are skipped: ``n``
    says how many were scored."""
    from tvcli.models.inference import apply_model

    model.eval()
    sets: dict[str, list[torch.Tensor]] = {}
    for k in sorted(arrays):
        if k.startswith("test/"):
            sets.setdefault(k.split("/")[1], []).append(arrays[k])
    res: dict = {}
    for set_name, imgs in sets.items():
        for sigma in job.eval_sigmas:
            for clip in ("unclipped", "clipped"):
                scores = []
                for i, im in enumerate(imgs):
                    if i % step or (scores and time.perf_counter() > deadline):
                        continue
                    clean = im.float() / 255.0
                    seed = 1000 * int(sigma) + i + (100000 if set_name == "Kodak24" else 0)
                    gen = torch.Generator().manual_seed(seed)
                    noisy = clean + sigma / 255.0 * torch.randn(clean.shape, generator=gen)
                    if clip == "clipped":
                        noisy = noisy.clamp(0, 1)
                    x = noisy.unsqueeze(0).to(device)
                    with amp():
                        y = apply_model(model, x, sigma / 255.0)
                    scores.append(_psnr(y.float().squeeze(0).cpu(), clean))
                res[f"{set_name}|{sigma:g}|{clip}"] = {"psnr": sum(scores) / len(scores),
                                                      "n": len(scores)}
    return res


EVALUATORS: dict[str, Callable] = {"denoise": evaluate_denoise}


# ------------------------------------------------------------------------ the run


def _device_info(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"cpu ({os.cpu_count()} cores), torch {torch.__version__}"


def run(out: Path, pack_dir: Path, budget_s: float, device: str, dry_run: bool,
        jobs: list[Job], log: Callable[[str], None]) -> dict:
    """Trains and evaluates ``jobs`` within ``budget_s`` seconds in all; writes OUT."""
    from tvcli import _extension
    from tvcli.datapack import read_pack
    from tvcli.models import build_model
    from tvcli.train import TrainConfig, _autocast, export_weights, train

    t0 = time.perf_counter()
    dev = torch.device(device)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": _device_info(dev), "budget_s": budget_s, "dry_run": dry_run,
                     "tv_engine": sorted(_extension._EXT_DEVICES.get("prox_tv2d_dykstra", []))
                     or "pure-PyTorch fallback", "jobs": {}}
    log(f"device {results['device']}; TV engine: {results['tv_engine']}")
    packs: dict[str, tuple[dict, dict]] = {}
    reserve = 4.0 if dry_run else 8.0 + 6.0 * len(jobs)  # evaluation and export
    for n, job in enumerate(jobs):
        pack = pack_dir / job.pack
        if job.pack not in packs:
            packs[job.pack] = read_pack(pack)
        left = budget_s - (time.perf_counter() - t0) - reserve
        share = job.weight / sum(j.weight for j in jobs[n:])
        # pairs get equal budgets: the first of a pair fixes it for the second
        pair_budget = results.get("pair_budget", {}).get(job.pair)
        wall = pair_budget if pair_budget is not None else max(1.0, left * share)
        results.setdefault("pair_budget", {})[job.pair] = wall
        cfg_fields = {**job.config}
        if dry_run:
            cfg_fields.update(batch=4, patch=16, patch_pool=64)
        cfg = TrainConfig(model=job.model, data=str(pack), out=str(work / job.name),
                          task=job.task, device=device, steps=3 if dry_run else 10**6,
                          max_wall_s=None if dry_run else wall, schedule_by_wall=not dry_run,
                          val_every=10**9, ckpt_every=10**9, val_crop=96,
                          amp="bf16" if dev.type == "cuda" and os.environ.get(
                              "TVCLI_GPU_AMP", "tf32") == "bf16" else None,
                          channels_last=dev.type == "cuda",
                          model_config={"depth": 3, "width": 8} if dry_run else {},
                          **cfg_fields)
        log(f"{job.name}: training {'3 steps' if dry_run else f'{wall:.0f} s'}")
        t = time.perf_counter()
        meta = train(cfg, progress=False, log=log)
        t_train = time.perf_counter() - t
        model = build_model(job.model, **meta["model_config"])
        from tvcli._safetensors import load_file

        state = load_file(str(work / job.name / "ckpt.safetensors"))
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        model = model.to(dev)
        evaluate = EVALUATORS[job.evaluate]
        # the pure-PyTorch TV fallback is slow on whole images: every 4th test image then
        step = 4 if results["tv_engine"] == "pure-PyTorch fallback" and not dry_run else 1
        deadline = t0 + budget_s - reserve * (len(jobs) - n - 1) / len(jobs) - 2.0
        scores = evaluate(model, packs[job.pack][1], job, dev,
                          lambda c=cfg: _autocast(c, dev), step=step, deadline=deadline)
        entry = export_weights(work / job.name, work / "weights",
                               extra={"data_name": packs[job.pack][0].get("name"),
                                      "gpu_eval": scores})
        results["jobs"][job.name] = {"model": job.model, "pair": job.pair, "steps": meta["step"],
                                     "train_s": round(t_train, 1), "budget_s": round(wall, 1),
                                     "batch": cfg.batch, "patch": cfg.patch,
                                     "val": meta["history"][-1] if meta["history"] else None,
                                     "test": scores, "file": entry["file"]}
        log(f"{job.name}: {meta['step']} steps in {t_train:.0f} s; "
            + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in scores.items()))
    results["total_s"] = round(time.perf_counter() - t0, 1)
    _write_outputs(out, work, results)
    return results


def _write_outputs(out: Path, work: Path, results: dict) -> None:
    with tarfile.open(out / "weights.tar", "w") as tar:  # safetensors + manifest in one file
        for p in sorted((work / "weights").iterdir()):
            tar.add(p, arcname=f"weights/{p.name}")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# GPU training run ({results['device']})", "",
             f"Budget {results['budget_s']:.0f} s, used {results['total_s']:.0f} s; TV "
             f"engine: {results['tv_engine']}.", "",
             "| model | steps | train s | batch x patch | test (PSNR, dB) |",
             "| --- | --- | --- | --- | --- |"]
    for name, j in results["jobs"].items():
        lines.append(f"| {name} | {j['steps']} | {j['train_s']} | {j['batch']} x "
                     f"{j['patch']}² | " + "; ".join(f"{k} {v['psnr']:.2f}"
                                                    for k, v in j["test"].items()) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # checkpoints stay on the GPU machine


# ---------------------------------------------------------------------- data pack


def make_data(bsd432: Path, tests: Path, out: Path, crop: int, val_crop: int,
              seed: int = 0) -> dict:
    """Packs a seeded random ``crop`` x ``crop`` window of every training photo of
    ``bsd432/train`` (the whole set would not fit the 64 MiB a GPU run may carry),
    center ``val_crop`` crops of its val/ photos, and the full test sets
    ``tests/{CBSD68,Kodak24}``."""
    import numpy as np
    from PIL import Image

    def rgb(p: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)

    gen = torch.Generator().manual_seed(seed)
    crops = []
    for p in sorted((bsd432 / "train").glob("*.png")):
        im = rgb(p)
        h, w = im.shape[-2:]
        y = int(torch.randint(0, h - crop + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - crop + 1, (1,), generator=gen))
        crops.append(im[:, y:y + crop, x:x + crop])
    arrays = {"train": torch.stack(crops).contiguous()}
    for p in sorted((bsd432 / "val").glob("*.png")):
        im = rgb(p)
        h, w = im.shape[-2:]
        y, x = max(0, (h - val_crop) // 2), max(0, (w - val_crop) // 2)
        arrays[f"val/{p.stem}"] = im[:, y:y + val_crop, x:x + val_crop].contiguous()
    for s in ("CBSD68", "Kodak24"):
        for p in sorted((tests / s).glob("*.png")):
            arrays[f"test/{s}/{p.stem}"] = rgb(p).contiguous()
    man = json.loads((bsd432 / "manifest.json").read_text())
    from tvcli.datapack import write_pack

    return write_pack(out, arrays, {"name": f"BSD432 {crop}x{crop} crops (seed {seed}), "
                                    f"digest {man['digest'][:12]}", "bsd432_digest":
                                    man["digest"], "crop": crop})


def tiny_pack(out: Path) -> None:
    """A synthetic pack with the layout of the real one (for the CPU dry run)."""
    from tvcli.datapack import write_pack

    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(6, 3, 40, 40, generator=g), 5, 1, 2)
    imgs = (smooth * 255).to(torch.uint8)
    write_pack(out, {"train": imgs[:4], "val/a": imgs[4], "test/CBSD68/a": imgs[5, :, :24],
                     "test/Kodak24/b": imgs[4, :, :, :32]}, {"name": "synthetic dry run"})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    md = sub.add_parser("make-data")
    md.add_argument("--bsd432", type=Path, default=ROOT / "data" / "bsd432")
    md.add_argument("--tests", type=Path, default=ROOT.parent / "shared" / "data" / "denoise")
    md.add_argument("--out", type=Path, default=DEFAULT_PACK)
    md.add_argument("--crop", type=int, default=144)
    md.add_argument("--val-crop", type=int, default=96)
    rn = sub.add_parser("run")
    rn.add_argument("--out", type=Path, required=True)
    rn.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK.parent)
    rn.add_argument("--budget-s", type=float, default=300.0)
    rn.add_argument("--device", default=None)
    rn.add_argument("--dry-run", action="store_true", help="3 steps per job on a tiny "
                    "synthetic pack (CPU unless --device): the same code path, for CI")
    rn.add_argument("--jobs", nargs="*", default=None, help="job names (default: all)")
    args = ap.parse_args(argv)
    if args.cmd == "make-data":
        for p in (args.bsd432 / "manifest.json", args.tests / "CBSD68"):
            if not p.exists():
                raise SystemExit(f"make-data: {p} is missing (see docs/denoising.md)")
        hdr = make_data(args.bsd432, args.tests, args.out, args.crop, args.val_crop)
        size = args.out.stat().st_size
        print(f"wrote {args.out}: {len(hdr['arrays'])} arrays, {size / 2**20:.1f} MiB")
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.dry_run
                             else "cpu")
    jobs = [j for j in JOBS if args.jobs is None or j.name in args.jobs]
    pack_dir = args.pack_dir
    if args.dry_run:
        pack_dir = out / "dry-pack"
        pack_dir.mkdir(exist_ok=True)
        for j in jobs:
            if not (pack_dir / j.pack).exists():
                tiny_pack(pack_dir / j.pack)
    elif not all((pack_dir / j.pack).exists() for j in jobs):
        raise SystemExit(f"no data pack in {pack_dir}: run `make gpu-data` and carry it")
    try:
        run(out, pack_dir, args.budget_s, device, args.dry_run, jobs, log)
    finally:
        logf.close()
        if args.dry_run:
            import shutil

            shutil.rmtree(pack_dir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
