"""Training jobs for one GPU run within a fixed wall budget (``.ci/gpu_train.sh``).

    python -m tvcli.gpu_train make-data                  # data/gpu/* (see docs/gpu.md)
    python -m tvcli.gpu_train run --out OUT --budget-s 300 [--groups denoise,edges]
    python -m tvcli.gpu_train run --dry-run --out OUT    # CPU, tiny synthetic packs

``JOBS`` lists what a GPU run trains: one :class:`Job` per model, in groups
(``denoise``, ``edges``, ``eps``, ``classify``) whose shares of the training time
are ``GROUP_SHARE``, and within a group in pairs (or the classifiers' triple) that
get equal budgets (the paper's claim is about a network with and without TV
layers at equal budget). Every job runs :func:`tvcli.train.train` with its
registered task on its data file in ``data/gpu``:

* ``bsds.pack`` (denoise and edges): BSDS500 photos as their own JPEG bytes (a
  subset of train, all of val), the edge task's consensus labels, the denoisers'
  training/validation split (train + val minus CBSD68) and CBSD68 (the val JPEGs
  whose decoded pixels are CBSD68's PNGs, checked when packing and again on the GPU);
* ``eps.pack``: the substitute EPS benchmark's train and val photos (JPEG bytes)
  and ground truths (their PNG bytes);
* ``cifar10.tar.gz``: a per-class subset of the CIFAR-10 JPEG archive (the
  classification task reads it as it reads the full archive).

Everything a GPU run carries (tracked files + these) must stay under 64 MiB:
:func:`carried_bytes` measures it and ``make-data`` fails above
``CARRY_FAIL_BYTES``. A run gives each job its share of the time left (after a
reserve for evaluation), trains with TF32 (bf16 autocast with
``TVCLI_GPU_AMP=bf16``) and channels-last, evaluates (``EVALUATORS``) and writes
into OUT at most ``MAX_OUT_FILES - 1`` files (one is left for the GPU check's
tarball): ``weights-<i>.tar`` (safetensors + manifest.json, each under
``TAR_BYTES``), ``results.json``, ``results.md`` and ``log.txt``. Reading the
packs needs torch, Pillow and the standard library on the GPU machine.
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
DEFAULT_PACK_DIR = ROOT / "data" / "gpu"
MiB = 2 ** 20
CARRY_LIMIT_BYTES = 64 * MiB  # what a GPU run may carry in all
CARRY_FAIL_BYTES = 61 * MiB  # make-data / the size test fail above this (3 MiB margin)
# Upper bounds of the default data files (make-data fails above them), so that a
# test can check that the tracked files leave room for them without building them.
# Measured 2026-11-30 with the defaults: 19.03, 6.95 and 4.58 MiB.
PACK_BUDGET_BYTES = {"bsds.pack": int(19.5 * MiB), "eps.pack": int(7.25 * MiB),
                     "cifar10.tar.gz": int(4.75 * MiB)}
MAX_OUT_FILES = 8  # what a GPU run brings back: 8 files of 16 MiB, 64 MiB together
TAR_BYTES = 15 * MiB + MiB // 2


@dataclass
class Job:
    """One model to train in a GPU run."""

    name: str  # run / output name, e.g. "dncnn-tv-s25"
    model: str
    pair: str  # jobs of one pair get equal budgets
    group: str = "denoise"  # key of GROUP_SHARE, selectable with --groups
    task: str = "denoise"
    pack: str = "bsds.pack"
    config: dict = field(default_factory=dict)  # TrainConfig fields
    evaluate: str = "denoise"  # key of EVALUATORS
    eval_sigmas: tuple[float, ...] = (25.0, 50.0)
    dry: dict = field(default_factory=dict)  # TrainConfig fields of the CPU dry run


# Shares of the training time per group (renormalised over the groups selected).
GROUP_SHARE = {"denoise": 0.36, "edges": 0.22, "eps": 0.18, "classify": 0.24}

_DN = {"batch": 128, "patch": 50, "lr": 1e-3, "lr_min": 1e-5, "patch_pool": 65536}
_FF = {"batch": 128, "patch": 64, "lr": 1e-3, "lr_min": 1e-5, "patch_pool": 49152,
       "sigma_range": [0.0, 55.0], "sigma": 25.0}
_DN_DRY = {"batch": 4, "patch": 16, "patch_pool": 64, "model_config": {"depth": 3, "width": 8}}
# DexiNed at the shipped width 16 (2.2 M parameters, 8.7 MB): the published width
# 64 is 35 M parameters, 136 MB of float32 per model -- more than a run may bring
# back (16 MiB a file, 64 MiB in all) -- and a few minutes of training would not use it.
_ED = {"batch": 16, "patch": 320, "lr": 1e-4, "lr_min": 1e-6, "val_crop": 320,
       "model_config": {"width": 16}, "task_config": {"val_hold": 10}}
_ED_DRY = {"batch": 2, "patch": 32, "val_crop": 32, "model_config": {"width": 4},
           "task_config": {"val_hold": 1, "scales": [1.0]}}
_EPS = {"batch": 32, "patch": 96, "lr": 1e-3, "lr_min": 1e-5, "val_crop": 0,
        "model_config": {"width": 64, "blocks": 16}}
_EPS_DRY = {"batch": 2, "patch": 16, "model_config": {"width": 4, "blocks": 2}}
_CLS = {"batch": 128, "lr": 1e-3, "lr_min": 1e-5, "model_config": {"width": 96}}
_CLS_DRY = {"batch": 8, "model_config": {"width": 8}}

JOBS: list[Job] = [
    Job("ffdnet-blind", "ffdnet", "ffdnet", config=_FF, dry=_DN_DRY),
    Job("ffdnet-tv-blind", "ffdnet-tv", "ffdnet", config=_FF, dry=_DN_DRY),
    Job("dncnn-s25", "dncnn", "dncnn-s25", config={**_DN, "sigma": 25.0}, eval_sigmas=(25.0,),
        dry=_DN_DRY),
    Job("dncnn-tv-s25", "dncnn-tv", "dncnn-s25", config={**_DN, "sigma": 25.0},
        eval_sigmas=(25.0,), dry=_DN_DRY),
    Job("dncnn-s50", "dncnn", "dncnn-s50", config={**_DN, "sigma": 50.0}, eval_sigmas=(50.0,),
        dry=_DN_DRY),
    Job("dncnn-tv-s50", "dncnn-tv", "dncnn-s50", config={**_DN, "sigma": 50.0},
        eval_sigmas=(50.0,), dry=_DN_DRY),
    Job("dexined", "dexined", "dexined", group="edges", task="edges", config=_ED,
        evaluate="edges", dry=_ED_DRY),
    Job("dexined-tv", "dexined-tv", "dexined", group="edges", task="edges", config=_ED,
        evaluate="edges", dry=_ED_DRY),
    Job("eps", "eps", "eps", group="eps", task="eps", pack="eps.pack", config=_EPS,
        evaluate="eps", dry=_EPS_DRY),
    Job("eps-tv", "eps-tv", "eps", group="eps", task="eps", pack="eps.pack", config=_EPS,
        evaluate="eps", dry=_EPS_DRY),
    *[Job(m, m, "allconv", group="classify", task="classify", pack="cifar10.tar.gz",
          config=_CLS, evaluate="classify", dry=_CLS_DRY)
      for m in ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")],
]

# The modules that register the tasks other than denoising.
_TASK_MODULES = {"edges": "tvcli.edge_task", "eps": "tvcli.train_eps",
                 "classify": "tvcli.classify_task"}


def select_jobs(groups: list[str] | None = None, names: list[str] | None = None) -> list[Job]:
    """The jobs of ``groups`` (default all), optionally only those named."""
    if groups:
        unknown = sorted(set(groups) - set(GROUP_SHARE))
        if unknown:
            raise SystemExit(f"unknown group(s) {', '.join(unknown)}; known: "
                             f"{', '.join(GROUP_SHARE)}")
    jobs = [j for j in JOBS if (not groups or j.group in groups)
            and (names is None or j.name in names)]
    if not jobs:
        raise SystemExit("no job selected")
    return jobs


def job_weights(jobs: list[Job]) -> dict[str, float]:
    """Each job's share of the training time: its group's share split equally over
    the group's selected jobs, renormalised to sum 1 over the selection."""
    count: dict[str, int] = {}
    for j in jobs:
        count[j.group] = count.get(j.group, 0) + 1
    w = {j.name: GROUP_SHARE[j.group] / count[j.group] for j in jobs}
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}


# --------------------------------------------------------------------- evaluation


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.clamp(0, 1).double() - b.double()).pow(2).mean())
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


_DATA_CACHE: dict[Path, tuple[dict, dict]] = {}


def load_data(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A data file's (meta, arrays), read once per run: a pack's arrays, or for the
    CIFAR-10 archive ``test_images`` / ``test_labels`` of its test split."""
    path = Path(path)
    if path.suffix == ".pack":  # read_pack keeps decoded packs itself
        from tvcli.datapack import read_pack

        return read_pack(path)
    if path not in _DATA_CACHE:
        from tvcli.data.cifar import load_cifar10

        images, labels = load_cifar10(path, "test")
        _DATA_CACHE[path] = ({"name": path.name}, {"test_images": images,
                                                   "test_labels": labels})
    return _DATA_CACHE[path]


@torch.no_grad()
def evaluate_denoise(model: torch.nn.Module, data: Path, job: Job, device: torch.device,
                     amp: Callable, step: int = 1, deadline: float = math.inf,
                   cfg=None) -> dict:
    """Mean PSNR per test set (``test/<SET>/<name>`` arrays), sigma and input
    convention, with the noise of benchmarks/denoise_table6.py (same seeds, drawn
    on the CPU in float32). ``step`` > 1 scores every step-th image only; past
    ``deadline`` (time.perf_counter()) the remaining images are skipped: ``n``
    says how many were scored."""
    from tvcli.models.inference import apply_model

    arrays = load_data(data)[1]
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


@torch.no_grad()
def evaluate_edges(model: torch.nn.Module, data: Path, job: Job, device: torch.device,
                   amp: Callable, step: int = 1, deadline: float = math.inf,
                   cfg=None) -> dict:
    """On the held-out val photos (the task's ``val_hold``), whole: the fused map's
    class-balanced loss (the training loss, lower is better) and the F-measure of
    ``p >= 0.5`` against the consensus edges at pixel level (no thinning or
    matching tolerance: a quick read; ODS/OIS/AP come from the BSDS benchmark
    here, docs/gpu.md)."""
    from tvcli.edge_task import balanced_bce, load_edges_pack

    names, full = load_edges_pack(data)
    hold = int((cfg.task_config if cfg is not None else {}).get("val_hold", 10))
    held = [i for i, n in enumerate(names) if n.startswith("val/")][-hold:] if hold else []
    model.eval()
    loss, tp, fp, fn, n = 0.0, 0, 0, 0, 0
    for i in held[::step]:
        if n and time.perf_counter() > deadline:
            break
        x = full.images[i].float()[None].to(device) / 255.0
        y = full.labels[i].float()[None].to(device)
        with amp():
            logit = model(x)[-1].float()
        loss += float(balanced_bce(logit, y))
        pred, pos, known = logit >= 0, y == 1, y >= 0
        tp += int((pred & pos).sum())
        fp += int((pred & known & ~pos).sum())
        fn += int((~pred & pos).sum())
        n += 1
    f = 2 * tp / max(1, 2 * tp + fp + fn)
    return {"val_hold": {"loss": loss / max(1, n), "f_pixel_0.5": f, "n": n}}


@torch.no_grad()
def evaluate_eps(model: torch.nn.Module, data: Path, job: Job, device: torch.device,
                 amp: Callable, step: int = 1, deadline: float = math.inf,
                   cfg=None) -> dict:
    """WRMSE / WMAE (8-bit grey levels, pooled as Zhu et al.'s script, uniform
    weights) on the whole photos of every split in the pack but train (val; test
    when packed)."""
    from tvcli.metrics import pooled_weighted_errors
    from tvcli.train_eps import load_eps_pack

    meta, arrays = load_data(data)
    res = {}
    model.eval()
    for split in ("val", "test"):
        if not any(k.startswith(f"{split}/input/") for k in arrays):
            continue
        preds, gts = [], []
        for _stem, x, g in load_eps_pack(data, split)[::step]:
            if preds and time.perf_counter() > deadline:
                break
            with amp():
                y = model(x[None].float().div(255.0).to(device))
            preds.append(y[0].float().cpu().clamp(0, 1) * 255.0)
            gts.append(g.float())
        wrmse, wmae = pooled_weighted_errors(preds, gts)
        res[split] = {"wrmse": wrmse, "wmae": wmae, "n": len(preds)}
    return res


@torch.no_grad()
def evaluate_classify(model: torch.nn.Module, data: Path, job: Job, device: torch.device,
                      amp: Callable, step: int = 1, deadline: float = math.inf,
                   cfg=None) -> dict:
    """Clean top-1 accuracy (percent) on the test split carried in the archive; with
    a ``cifar10c.pack`` beside it (``make-data --cifar10c-per-class N``, made for an
    evaluation here: it does not fit a GPU run), top-1 per corruption and severity
    (``c/<name>/<severity>``) and their mean (``cifar10c``)."""
    from tvcli.classify_task import top1_accuracy

    arrays = load_data(data)[1]
    images, labels = arrays["test_images"][::step], arrays["test_labels"][::step]
    with amp():
        top1 = top1_accuracy(model, images, labels, device, batch=1000)
    res = {"test": {"top1": top1, "n": len(labels)}}
    cpack = Path(data).with_name("cifar10c.pack")
    if cpack.exists():
        c = load_data(cpack)[1]
        c_labels = c["labels"].long().flatten()
        accs = []
        for key in sorted(k for k in c if k.startswith("c/")):
            with amp():
                acc = top1_accuracy(model, c[key], c_labels, device, batch=1000)
            res[key] = {"top1": acc, "n": len(c_labels)}
            accs.append(acc)
        res["cifar10c"] = {"top1": sum(accs) / max(1, len(accs)), "n": len(accs)}
    return res


def make_cifar10c_pack(src: Path, out: Path, per_class: int, seed: int = 0,
                       log: Callable = print) -> dict:
    """``cifar10c.pack``: the first ``per_class`` test images of each class under
    every corruption of :mod:`tvcli.data.corruptions` at severities 1-5
    (``c/<name>/<severity>``, (N, 3, 32, 32) uint8) and their ``labels`` (N,);
    a corruption whose textures are missing (frost) is left out, and logged."""
    from tvcli.data.cifar import load_cifar10
    from tvcli.data.corruptions import CORRUPTIONS, MissingTexture, corrupt_batch
    from tvcli.datapack import write_pack

    images, labels = load_cifar10(src, "test", per_class)
    hwc = images.permute(0, 2, 3, 1).numpy()
    arrays: dict = {"labels": labels.to(torch.uint8)}
    skipped = []
    for name in CORRUPTIONS:
        try:
            for sev in range(1, 6):
                c = corrupt_batch(hwc, name, sev, seed=seed)
                arrays[f"c/{name}/{sev}"] = torch.from_numpy(c).permute(0, 3, 1, 2).contiguous()
        except MissingTexture as exc:
            skipped.append(name)
            log(f"cifar10c.pack: {name} left out ({exc})")
    log(f"cifar10c.pack: {len(labels)} images x {len(CORRUPTIONS) - len(skipped)} "
        "corruptions x 5 severities")
    return write_pack(out, arrays, {"name": f"CIFAR-10-C from the JPEG test split, "
                                    f"{per_class} per class, seed {seed}",
                                    "skipped": skipped})


EVALUATORS: dict[str, Callable] = {"denoise": evaluate_denoise, "edges": evaluate_edges,
                                   "eps": evaluate_eps, "classify": evaluate_classify}


# ------------------------------------------------------------------------ the run


def _device_info(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"cpu ({os.cpu_count()} cores), torch {torch.__version__}"


def _fmt_scores(scores: dict) -> str:
    return "; ".join(f"{k} " + ", ".join(f"{m} {v:.4g}" if isinstance(v, float) else f"{m} {v}"
                                         for m, v in d.items() if m != "n")
                     + f" (n {d.get('n')})" for k, d in scores.items())


def run(out: Path, pack_dir: Path, budget_s: float, device: str, dry_run: bool,
        jobs: list[Job], log: Callable[[str], None]) -> dict:
    """Trains and evaluates ``jobs`` within ``budget_s`` seconds in all; writes OUT."""
    import importlib

    from tvcli import _extension
    from tvcli.models import build_model
    from tvcli.train import TrainConfig, _autocast, export_weights, train

    for j in jobs:
        if j.task in _TASK_MODULES:
            importlib.import_module(_TASK_MODULES[j.task])
    t0 = time.perf_counter()
    dev = torch.device(device)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    weights = job_weights(jobs)
    results: dict = {"device": _device_info(dev), "budget_s": budget_s, "dry_run": dry_run,
                     "tv_engine": sorted(_extension._EXT_DEVICES.get("prox_tv2d_dykstra", []))
                     or "pure-PyTorch fallback", "groups": sorted({j.group for j in jobs}),
                     "jobs": {}}
    log(f"device {results['device']}; TV engine: {results['tv_engine']}")
    reserve = 4.0 if dry_run else 8.0 + 5.0 * len(jobs)  # evaluation and export
    for n, job in enumerate(jobs):
        try:  # one job failing (e.g. out of memory) must not cost the others
            data = pack_dir / job.pack
            meta_data = load_data(data)[0]
            if meta_data.get("decode_mismatch"):
                log(f"{job.pack}: {len(meta_data['decode_mismatch'])} JPEG(s) decode to other "
                    "pixels on this machine than when packed (another libjpeg): "
                    + ", ".join(meta_data["decode_mismatch"][:5]))
            left = budget_s - (time.perf_counter() - t0) - reserve * (len(jobs) - n) / len(jobs)
            share = weights[job.name] / sum(weights[j.name] for j in jobs[n:])
            # pairs get equal budgets: the first of a pair fixes it for the others
            pair_budget = results.get("pair_budget", {}).get(job.pair)
            wall = pair_budget if pair_budget is not None else max(1.0, left * share)
            results.setdefault("pair_budget", {})[job.pair] = wall
            cfg_fields = {**job.config, **(job.dry if dry_run else {})}
            if not dry_run and cfg_fields.get("patch_pool"):
                # the pool is cut on the CPU inside the wall budget (~0.25 ms a patch
                # here): at most ~1/4 of a short budget, the full pool from ~60 s on
                cfg_fields["patch_pool"] = min(cfg_fields["patch_pool"],
                                               max(4096, int(1024 * wall)))
            cfg = TrainConfig(out=str(work / job.name), model=job.model, data=str(data),
                              task=job.task, device=device, steps=3 if dry_run else 10**6,
                              max_wall_s=None if dry_run else wall, schedule_by_wall=not dry_run,
                              val_every=10**9, ckpt_every=10**9,
                              amp="bf16" if dev.type == "cuda" and os.environ.get(
                                  "TVCLI_GPU_AMP", "tf32") == "bf16" else None,
                              channels_last=dev.type == "cuda",
                              **{"val_crop": 96, **cfg_fields})
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
            t = time.perf_counter()
            scores = evaluate(model, data, job, dev, lambda c=cfg: _autocast(c, dev), step=step,
                              deadline=deadline, cfg=cfg)
            t_eval = time.perf_counter() - t
            entry = export_weights(work / job.name, work / "weights",
                                   extra={"data_name": meta_data.get("name"),
                                          "gpu_eval": scores, "gpu_job": job.name})
            results["jobs"][job.name] = {"model": job.model, "group": job.group, "pair": job.pair,
                                         "steps": meta["step"], "train_s": round(t_train, 1),
                                         "eval_s": round(t_eval, 1), "budget_s": round(wall, 1),
                                         "batch": cfg.batch, "patch": cfg.patch,
                                         "val": meta["history"][-1] if meta["history"] else None,
                                         "test": scores, "file": entry["file"]}
            log(f"{job.name}: {meta['step']} steps in {t_train:.0f} s, eval {t_eval:.0f} s; "
                + _fmt_scores(scores))
        except Exception as exc:  # noqa: BLE001 -- reported, the run goes on
            import traceback

            log(f"{job.name}: FAILED: {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exception(exc)[-6:]))
            results["jobs"][job.name] = {"model": job.model, "group": job.group,
                                         "error": f"{type(exc).__name__}: {exc}"}
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    results["total_s"] = round(time.perf_counter() - t0, 1)
    _write_outputs(out, work, results)
    log(f"wrote {', '.join(results['outputs'])} into {out}")
    return results


def pack_bins(sizes: dict[str, int], capacity: int = TAR_BYTES) -> list[list[str]]:
    """File names grouped into as few bins of at most ``capacity`` bytes as
    first-fit decreasing finds (tar headers included: 1 KiB a member)."""
    bins: list[tuple[int, list[str]]] = []
    for name in sorted(sizes, key=lambda k: (-sizes[k], k)):
        size = sizes[name] + 1024
        if size > capacity:
            raise ValueError(f"{name} ({size / MiB:.1f} MiB) is larger than a whole "
                             f"output file ({capacity / MiB:.1f} MiB)")
        for i, (used, names) in enumerate(bins):
            if used + size <= capacity:
                bins[i] = (used + size, names + [name])
                break
        else:
            bins.append((size, [name]))
    return [names for _, names in bins]


def _write_outputs(out: Path, work: Path, results: dict) -> None:
    """weights-<i>.tar (the manifest in the first), results.json, results.md."""
    wdir = work / "weights"
    files = {p.name: p.stat().st_size for p in wdir.iterdir()
             if p.name != "manifest.json"} if wdir.is_dir() else {}
    bins = pack_bins(files) if files else []
    if bins:
        bins[0].insert(0, "manifest.json")
    results["outputs"] = [f"weights-{i + 1}.tar" for i in range(len(bins))] + \
        ["results.json", "results.md", "log.txt"]
    if len(results["outputs"]) > MAX_OUT_FILES - 1:
        print(f"warning: {len(results['outputs'])} output files: more than the "
              f"{MAX_OUT_FILES - 1} a run should bring back", file=sys.stderr)
    for i, names in enumerate(bins):
        with tarfile.open(out / f"weights-{i + 1}.tar", "w") as tar:
            for name in names:
                tar.add(wdir / name, arcname=f"weights/{name}")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# GPU training run ({results['device']})", "",
             f"Budget {results['budget_s']:.0f} s, used {results['total_s']:.0f} s; TV "
             f"engine: {results['tv_engine']}; groups: {', '.join(results['groups'])}.", "",
             "| model | steps | train s | batch x patch | evaluation |",
             "| --- | --- | --- | --- | --- |"]
    for name, j in results["jobs"].items():
        if "error" in j:
            lines.append(f"| {name} | failed | | | {j['error'][:200]} |")
            continue
        lines.append(f"| {name} | {j['steps']} | {j['train_s']} | {j['batch']} x "
                     f"{j['patch']}² | {_fmt_scores(j['test'])} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # checkpoints stay on the GPU machine


# ---------------------------------------------------------------- carried size


def carried_bytes(root: Path = ROOT, pack_dir: Path | None = None) -> dict[str, int]:
    """Bytes a GPU run of this checkout would carry: ``tracked`` files, ``untracked``
    files git does not ignore, and every file in ``pack_dir`` (the carried data),
    with their ``total``. Needs git."""
    import subprocess

    def sizes(*args: str) -> int:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", *args],
                             capture_output=True, check=True).stdout
        paths = [root / p.decode() for p in out.split(b"\0") if p]
        return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())

    res = {"tracked": sizes(), "untracked": sizes("--others", "--exclude-standard")}
    data = 0
    if pack_dir is not None and pack_dir.is_dir():
        for p in sorted(pack_dir.rglob("*")):
            if p.is_file():
                res[str(p.relative_to(root) if p.is_relative_to(root) else p)] = \
                    p.stat().st_size
                data += p.stat().st_size
    res["total"] = res["tracked"] + res["untracked"] + data
    return res


def check_carried(root: Path = ROOT, pack_dir: Path = DEFAULT_PACK_DIR) -> dict[str, int]:
    """:func:`carried_bytes`; raises SystemExit when the total is over
    ``CARRY_FAIL_BYTES``."""
    sizes = carried_bytes(root, pack_dir)
    for k, v in sizes.items():
        print(f"  {k:<32} {v / MiB:7.2f} MiB ({v} bytes)")
    if sizes["total"] > CARRY_FAIL_BYTES:
        raise SystemExit(f"a GPU run would carry {sizes['total'] / MiB:.1f} MiB: more than "
                         f"{CARRY_FAIL_BYTES / MiB:.0f} MiB (the limit is "
                         f"{CARRY_LIMIT_BYTES / MiB:.0f} MiB); pack less data")
    return sizes


# ---------------------------------------------------------------------- data packs


def _file_bytes(p: Path) -> bytes:
    return Path(p).read_bytes()


def make_bsds_pack(bsds500: Path, cbsd68: Path, out: Path, n_train: int, n_val_denoise: int = 8,
                   kodak: Path | None = None, log: Callable = print) -> dict:
    """``bsds.pack``: the JPEG bytes of the first ``n_train`` BSDS500 train photos
    and of all 100 val photos (``photo/<split>/<stem>``); the edge task's consensus
    labels of all of them (``label/<split>/<stem>``, uint8 label + 1); the denoisers'
    ``train/`` and ``val/`` (aliases: those photos minus CBSD68, ``n_val_denoise``
    val photos set aside as bsd432 does) and ``test/CBSD68/`` (aliases of the val
    JPEGs whose decoded pixels equal CBSD68's PNGs -- checked here; a photo that
    differs is stored from its PNG instead); Kodak24 (xz) only with ``kodak``."""
    from tvcli.data.bsds import bsds_split, consensus_label, read_bsds_boundaries
    from tvcli.datapack import Alias, ImageBytes, decode_image, write_pack

    cbsd = {p.stem: p for p in sorted(Path(cbsd68).glob("*.png"))}
    if len(cbsd) != 68:
        raise SystemExit(f"make-data: {cbsd68} holds {len(cbsd)} PNGs, expected CBSD68's 68")
    arrays: dict = {}
    den_val = 0
    for split in ("train", "val"):
        pairs = bsds_split(bsds500, split)
        if split == "train":
            pairs = pairs[:n_train]
        for img_path, mat_path in pairs:
            name = f"{split}/{img_path.stem}"
            photo = ImageBytes(_file_bytes(img_path))
            arrays[f"photo/{name}"] = photo
            lab = consensus_label(read_bsds_boundaries(mat_path))
            arrays[f"label/{name}"] = torch.from_numpy((lab + 1).astype("uint8"))[None]
            if img_path.stem in cbsd:
                ref = decode_image(cbsd[img_path.stem].read_bytes())
                arrays[f"test/CBSD68/{img_path.stem}"] = Alias(f"photo/{name}") \
                    if torch.equal(ref, photo.pixels) else ref
            elif split == "val" and den_val < n_val_denoise:
                arrays[f"val/{img_path.stem}"] = Alias(f"photo/{name}")
                den_val += 1
            else:
                arrays[f"train/{img_path.stem}"] = Alias(f"photo/{name}")
    missing = sorted(set(cbsd) - {k.rsplit("/", 1)[1] for k in arrays
                                  if k.startswith("test/CBSD68/")})
    for stem in missing:  # CBSD68 photos outside the packed BSDS500 splits
        arrays[f"test/CBSD68/{stem}"] = decode_image(cbsd[stem].read_bytes())
    if kodak is not None:
        for p in sorted(Path(kodak).glob("*.png")):
            arrays[f"test/Kodak24/{p.stem}"] = decode_image(p.read_bytes())
    n_alias = sum(isinstance(v, Alias) for k, v in arrays.items() if k.startswith("test/"))
    log(f"bsds.pack: {sum(k.startswith('photo/') for k in arrays)} photos, "
        f"{sum(k.startswith('train/') for k in arrays)} denoise train / "
        f"{den_val} val, CBSD68 {n_alias} of 68 as their BSDS500 JPEG")
    return write_pack(out, arrays, {
        "name": f"BSDS500 train[:{n_train}] + val as JPEG bytes; edge labels; denoise "
                f"split (minus CBSD68); CBSD68{' + Kodak24' if kodak else ''}",
        "n_train": n_train})


def make_eps_pack(eps: Path, bsds500: Path | None, out: Path,
                  limits: dict[str, int] | None = None, log: Callable = print) -> dict:
    """``eps.pack`` from a ``tvcli data eps`` folder: the first ``limits[split]``
    photos of each split named (default train 6, val 2), each as its BSDS500 JPEG
    bytes when those decode to the folder's input PNG (else the PNG's pixels), each
    ground truth as its PNG bytes (``<split>/input/<stem>``, ``<split>/gt/<stem>/<f>``)."""
    from tvcli.data.eps import FILTERS
    from tvcli.datapack import ImageBytes, decode_image, write_pack

    limits = limits or {"train": 6, "val": 2}
    splits = tuple(limits)
    man = json.loads((eps / "manifest.json").read_text())
    arrays: dict = {}
    n_jpeg = 0
    taken: dict[str, int] = {}
    for rec in sorted(man["images"], key=lambda r: (r["split"], r["stem"])):
        split, stem = rec["split"], rec["stem"]
        if split not in splits or taken.get(split, 0) >= limits[split]:
            continue
        taken[split] = taken.get(split, 0) + 1
        png = eps / split / "input" / f"{stem}.png"
        ref = decode_image(png.read_bytes())
        src = Path(bsds500) / rec["source"] if bsds500 and rec.get("source") else None
        photo = ImageBytes(src.read_bytes()) if src is not None and src.is_file() else None
        if photo is not None and torch.equal(photo.pixels, ref):
            arrays[f"{split}/input/{stem}"] = photo
            n_jpeg += 1
        else:
            arrays[f"{split}/input/{stem}"] = ref
        for f in FILTERS:
            arrays[f"{split}/gt/{stem}/{f.name}"] = ImageBytes(
                (eps / split / "gt" / stem / f"{f.name}.png").read_bytes())
    n = sum(k.split("/")[1] == "input" for k in arrays)
    log(f"eps.pack: {n} photos ({n_jpeg} as JPEG) of {', '.join(splits)}, "
        f"{len(FILTERS)} ground truths each")
    return write_pack(out, arrays, {"name": f"EPS substitute ({', '.join(splits)})",
                                    "filters": [f.name for f in FILTERS],
                                    "eps_digest": man.get("digest")})


def make_cifar_subset(src: Path, out: Path, train_per_class: int, test_per_class: int,
                      log: Callable = print) -> int:
    """``cifar10.tar.gz``: the first ``train_per_class`` / ``test_per_class`` JPEGs
    of each class (by file name, as :func:`tvcli.data.cifar.load_cifar10` orders
    them), copied byte for byte into a new archive; returns the image count."""
    keep = {"train": train_per_class, "test": test_per_class}
    chosen: dict[tuple[str, str], list[tuple[str, tarfile.TarInfo]]] = {}
    with tarfile.open(src) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    for m in members:
        parts = m.name.split("/")
        if len(parts) >= 3 and parts[-3] in keep and parts[-1].lower().endswith(".jpg"):
            chosen.setdefault((parts[-3], parts[-2]), []).append((parts[-1], m))
    picked = {m.name for (split, _), ms in chosen.items()
              for _, m in sorted(ms, key=lambda t: t[0])[:keep[split]]}
    tmp = out.with_suffix(".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with tarfile.open(src) as tar, tarfile.open(tmp, "w:gz", compresslevel=9) as dst:
        for m in tar:
            if m.name in picked:
                info = tarfile.TarInfo(m.name)
                info.size, info.mtime, info.mode = m.size, 0, 0o644
                dst.addfile(info, tar.extractfile(m))
                n += 1
    os.replace(tmp, out)
    log(f"cifar10.tar.gz: {n} images ({train_per_class} train / {test_per_class} test "
        "per class)")
    return n


def _tiny_photos(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 3, h, w, generator=g), 5, 1, 2)
    return (smooth * 255).to(torch.uint8)


def _jpeg(img: torch.Tensor) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def tiny_packs(pack_dir: Path) -> None:
    """Synthetic data files with the layout of the real ones (for the CPU dry run)."""
    from tvcli.datapack import Alias, ImageBytes, write_pack
    from tvcli.models.allconv import CIFAR10_CLASSES

    pack_dir.mkdir(parents=True, exist_ok=True)
    imgs = _tiny_photos(6, 40, 40, 0)
    arrays: dict = {}
    for i, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("train", "c"),
                                       ("val", "d"), ("val", "e")]):
        arrays[f"photo/{split}/{stem}"] = ImageBytes(_jpeg(imgs[i]))
        edge = (imgs[i].float().mean(0).diff(dim=1).abs() > 3).to(torch.uint8)
        arrays[f"label/{split}/{stem}"] = torch.nn.functional.pad(edge, (0, 1))[None] + 1
    arrays.update({"train/a": Alias("photo/train/a"), "train/b": Alias("photo/train/b"),
                   "train/c": Alias("photo/train/c"), "val/d": Alias("photo/val/d"),
                   "test/CBSD68/e": Alias("photo/val/e"),
                   "test/Kodak24/f": imgs[5, :, :, :32].contiguous()})
    write_pack(pack_dir / "bsds.pack", arrays, {"name": "synthetic dry run"})
    eps: dict = {}
    for i, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("val", "c")]):
        eps[f"{split}/input/{stem}"] = ImageBytes(_jpeg(imgs[i]))
        for f, k in (("box", 3), ("wide", 7)):
            gt = torch.nn.functional.avg_pool2d(imgs[i][None].float(), k, 1, k // 2)[0]
            eps[f"{split}/gt/{stem}/{f}"] = gt.round().to(torch.uint8)
    write_pack(pack_dir / "eps.pack", eps, {"name": "synthetic dry run",
                                            "filters": ["box", "wide"]})
    cif = _tiny_photos(40, 32, 32, 1)
    with tarfile.open(pack_dir / "cifar10.tar.gz", "w:gz") as tar:
        for i in range(40):
            import io

            data = _jpeg(cif[i])
            info = tarfile.TarInfo(f"cifar10/{('train', 'test')[i % 2]}/"
                                   f"{CIFAR10_CLASSES[(i // 2) % 10]}/{i:04d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def evaluate_returned(weights_dir: Path, pack_dir: Path, jobs: list[Job], device: str = "cpu",
                      log: Callable[[str], None] = print) -> dict:
    """Runs the jobs' evaluators on the weights a GPU run brought back (the unpacked
    ``weights/`` of its tars) with the data files in ``pack_dir`` -- e.g. packs made
    here with what the GPU run did not carry (``make-data --out-dir data/gpu-eval
    --kodak --eps-test 10 --cifar-test-per-class 1000 --no-size-check``). Returns
    {job: scores}; jobs without weights in the folder are skipped (logged)."""
    import importlib
    from contextlib import nullcontext
    from types import SimpleNamespace

    from tvcli._safetensors import load_file
    from tvcli.models import build_model

    man = json.loads((weights_dir / "manifest.json").read_text())
    by_job = {e.get("gpu_job"): e for e in man["weights"]}
    dev = torch.device(device)
    out = {}
    for job in jobs:
        entry = by_job.get(job.name)
        if entry is None:
            log(f"{job.name}: no weights in {weights_dir}")
            continue
        if job.task in _TASK_MODULES:
            importlib.import_module(_TASK_MODULES[job.task])
        model = build_model(entry["model"], **entry["config"])
        model.load_state_dict(load_file(str(weights_dir / entry["file"])))
        model = model.to(dev)
        t = time.perf_counter()
        tc = {**job.config.get("task_config", {}),  # as trained: from the manifest
              **({"val_hold": entry["val_hold"]} if "val_hold" in entry else {})}
        cfg = SimpleNamespace(task_config=tc)
        out[job.name] = EVALUATORS[job.evaluate](model, pack_dir / job.pack, job, dev,
                                                 nullcontext, cfg=cfg)
        log(f"{job.name}: {_fmt_scores(out[job.name])} ({time.perf_counter() - t:.0f} s)")
    return out


# ----------------------------------------------------------------------------- CLI


def _make_data(args: argparse.Namespace) -> None:
    groups = set(args.groups.split(",")) if args.groups else set(GROUP_SHARE)
    need = {"bsds.pack": bool(groups & {"denoise", "edges"}), "eps.pack": "eps" in groups,
            "cifar10.tar.gz": "classify" in groups}
    sources = {"bsds.pack": [args.bsds500 / "groundTruth" / "train", args.tests / "CBSD68"],
               "eps.pack": [args.eps / "manifest.json"], "cifar10.tar.gz": [args.cifar]}
    for pack, on in need.items():
        for p in sources[pack] if on else []:
            if not p.exists():
                raise SystemExit(f"make-data: {p} is missing, needed for {pack} "
                                 "(see docs/gpu.md)")
    out = args.out_dir
    if need["bsds.pack"]:
        make_bsds_pack(args.bsds500, args.tests / "CBSD68", out / "bsds.pack", args.bsds_train,
                       kodak=args.tests / "Kodak24" if args.kodak else None)
    if need["eps.pack"]:
        make_eps_pack(args.eps, args.bsds500, out / "eps.pack",
                      {"train": args.eps_train, "val": args.eps_val,
                       **({"test": args.eps_test} if args.eps_test else {})})
    if need["cifar10.tar.gz"]:
        make_cifar_subset(args.cifar, out / "cifar10.tar.gz", args.cifar_train_per_class,
                          args.cifar_test_per_class)
        if args.cifar10c_per_class:
            make_cifar10c_pack(args.cifar, out / "cifar10c.pack", args.cifar10c_per_class)
    over = [f"{k} {(out / k).stat().st_size / MiB:.1f} MiB > {v / MiB:.0f} MiB"
            for k, v in PACK_BUDGET_BYTES.items() if need[k] and (out / k).stat().st_size > v]
    if args.no_size_check:
        return
    print("what a GPU run would carry:")
    check_carried(ROOT, out)
    if over and not (args.kodak or args.eps_test):
        raise SystemExit("make-data: over the pack budget (PACK_BUDGET_BYTES): "
                         + "; ".join(over))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    md = sub.add_parser("make-data", help="the data files of a GPU run (data/gpu)")
    shared = ROOT.parent / "shared" / "data"
    md.add_argument("--out-dir", type=Path, default=DEFAULT_PACK_DIR)
    md.add_argument("--groups", default=None, help="comma-separated (default all)")
    md.add_argument("--bsds500", type=Path, default=shared / "bsds500")
    md.add_argument("--tests", type=Path, default=shared / "denoise",
                    help="folder with CBSD68/ (and Kodak24/)")
    md.add_argument("--eps", type=Path, default=ROOT / "data" / "eps",
                    help="a `tvcli data eps` folder")
    md.add_argument("--cifar", type=Path, default=shared / "cifar10" / "cifar10-jpeg.tar.gz")
    md.add_argument("--bsds-train", type=int, default=150,
                    help="BSDS500 train photos packed (of 200; all 100 val are)")
    md.add_argument("--cifar-train-per-class", type=int, default=1000)
    md.add_argument("--cifar-test-per-class", type=int, default=500)
    md.add_argument("--kodak", action="store_true", help="pack Kodak24 too (~10 MB: over "
                    "the budget unless other data is left out)")
    md.add_argument("--eps-train", type=int, default=6, help="EPS train photos packed")
    md.add_argument("--eps-val", type=int, default=2, help="EPS val photos packed")
    md.add_argument("--eps-test", type=int, default=0, help="EPS test photos packed (~1.1 "
                    "MB each: over the budget unless other data is left out)")
    md.add_argument("--check-only", action="store_true",
                    help="only measure what a run would carry (and fail when over)")
    md.add_argument("--cifar10c-per-class", type=int, default=0,
                    help="also cifar10c.pack (CIFAR-10-C of that many test images per "
                    "class; for `evaluate` here, too large to carry)")
    md.add_argument("--no-size-check", action="store_true",
                    help="data that is not carried (e.g. for `evaluate` here)")
    ev = sub.add_parser("evaluate", help="the evaluators on weights a GPU run brought back")
    ev.add_argument("--weights", type=Path, required=True, help="the unpacked weights/ folder")
    ev.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK_DIR)
    ev.add_argument("--groups", default=None)
    ev.add_argument("--jobs", nargs="*", default=None)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", type=Path, default=None, help="write the scores here")
    rn = sub.add_parser("run")
    rn.add_argument("--out", type=Path, required=True)
    rn.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK_DIR)
    rn.add_argument("--budget-s", type=float, default=300.0)
    rn.add_argument("--device", default=None)
    rn.add_argument("--dry-run", action="store_true", help="3 steps per job on tiny "
                    "synthetic data (CPU unless --device): the same code path, for CI")
    rn.add_argument("--groups", default=None,
                    help=f"comma-separated subset of {','.join(GROUP_SHARE)} (default all)")
    rn.add_argument("--jobs", nargs="*", default=None, help="job names (default: all)")
    args = ap.parse_args(argv)
    if args.cmd == "make-data":
        if args.check_only:
            print("what a GPU run would carry:")
            check_carried(ROOT, args.out_dir)
            return
        _make_data(args)
        return
    if args.cmd == "evaluate":
        scores = evaluate_returned(args.weights, args.pack_dir, select_jobs(
            args.groups.split(",") if args.groups else None, args.jobs), args.device)
        if args.json:
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(scores, indent=1) + "\n")
            os.replace(tmp, args.json)
        return
    jobs = select_jobs(args.groups.split(",") if args.groups else None, args.jobs)
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
    pack_dir = args.pack_dir
    if args.dry_run:
        # tiny models: threads only add OpenMP waits (10x slower on a loaded CI
        # machine); restored below (main() also runs inside the test process)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pack_dir = out / "dry-pack"
        tiny_packs(pack_dir)
    elif not all((pack_dir / j.pack).exists() for j in jobs):
        missing = sorted({j.pack for j in jobs if not (pack_dir / j.pack).exists()})
        raise SystemExit(f"no {', '.join(missing)} in {pack_dir}: run `make gpu-data` and "
                         "carry data/gpu")
    try:
        res = run(out, pack_dir, args.budget_s, device, args.dry_run, jobs, log)
        failed = [k for k, v in res["jobs"].items() if "error" in v]
        if failed:
            raise SystemExit(f"{len(failed)} job(s) failed: {', '.join(failed)} (log.txt)")
    finally:
        logf.close()
        _DATA_CACHE.clear()
        if args.dry_run:
            import shutil

            shutil.rmtree(pack_dir, ignore_errors=True)
            torch.set_num_threads(threads)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
