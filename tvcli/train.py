"""Generic, resumable training loop with pluggable tasks (``tvcli train``).

The loop (:func:`train`) knows nothing about denoising: a :class:`Task` says how to
load a dataset folder, how to draw a training batch ``(inputs, targets)`` from it,
how to run the model on a batch, the loss, the validation metric (and whether
higher is better) and what an exported weights file records in its manifest.
:class:`DenoiseTask` is the first task; others (edge detection, edge-preserving
smoothing, ...) subclass :class:`Task` in their own module and call
:func:`register_task` -- then ``TrainConfig(task="edges", ...)`` trains them with
the same loop, checkpoints, resume and export.

What the loop does: Adam with a cosine learning-rate schedule from ``lr`` to
``lr_min`` over ``steps``; validation every ``val_every`` steps; a checkpoint every
``ckpt_every`` steps. Everything random is drawn from one seeded CPU generator
(plus, on a GPU, one seeded device generator), whose states are checkpointed, so a
run resumed after an interruption continues exactly as if it had not stopped.
Optional for GPUs: bf16 autocast, TF32, channels-last, a wall-clock budget
(``max_wall_s``: the run ends early, checkpointed, and the schedule is *not*
stretched -- set ``steps`` to what the budget allows), and a pool of patches held
on the device (the task's ``patch_pool``).

Checkpoints are safetensors (model and optimizer tensors, the RNG states) plus a
JSON file (step, config, history): no pickles anywhere. For models with learned TV
layers the JSON also holds ``lam_history``: every layer's lam at step 0 and at each
validation (the paper's Fig. 3), so it resumes with the run; :func:`export_weights`
puts a compact form of it (:func:`lam_table`) into the manifest entry, together
with the budget (steps, batch, wall time, CPU threads, seed, data digest).

Denoising (the default task): random patches from ``DATA/train/*.png``, the 8
dihedral flips/rotations, additive white Gaussian noise of a fixed sigma (or, for
models with a noise-level input, a sigma drawn per patch from ``sigma_range``:
one blind-range model), MSE loss; validation = mean PSNR on ``DATA/val/*.png``
(center crops of ``val_crop``) with fixed-seed noise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tvcli.models.inference import apply_model
from tvcli.models.registry import build_model

__all__ = ["TrainConfig", "Task", "DenoiseTask", "TASKS", "register_task", "get_task",
           "load_images", "train", "validate", "export_weights", "psnr", "lam_table",
           "files_digest"]


@dataclass
class TrainConfig:
    """Settings of one training run.

    Denoising: ``sigma`` is in 0-255 units; with ``sigma_range = [lo, hi]`` (models
    with a noise-level input only) each patch gets a sigma drawn uniformly from it,
    and ``sigma`` is the validation level. Other tasks read their own settings from
    ``task_config`` (and may ignore ``sigma``).

    ``init_from``: a safetensors file of model weights to start from (warm start;
    recorded in the manifest). ``max_wall_s``: stop (checkpointed) once this much
    wall time has been spent; with ``schedule_by_wall`` the cosine schedule runs on
    max(step / steps, wall / max_wall_s), so that it ends with the budget (not
    exactly resumable). ``patch_pool``: that many random patches drawn once and
    kept on the device (a GPU's fast path). ``amp``: None or "bf16" (autocast on CUDA);
    ``channels_last``: memory format of the model and batches.
    """

    model: str
    data: str
    out: str
    sigma: float = 25.0
    sigma_range: list[float] | None = None
    steps: int = 3000
    batch: int = 16
    patch: int = 40
    lr: float = 1e-3
    lr_min: float = 1e-5
    seed: int = 0
    val_every: int = 250
    ckpt_every: int = 100
    val_crop: int = 192
    device: str = "cpu"
    model_config: dict = field(default_factory=dict)
    task: str = "denoise"
    task_config: dict = field(default_factory=dict)
    init_from: str | None = None
    max_wall_s: float | None = None
    amp: str | None = None
    channels_last: bool = False
    patch_pool: int = 0
    schedule_by_wall: bool = False


# --------------------------------------------------------------------------- tasks


class Task:
    """What a training run learns. Subclass it in your own module and register it.

    A task instance is built once per run from the :class:`TrainConfig`
    (``cls(cfg)``); its methods are called by :func:`train`:

    * :meth:`load` -- reads ``cfg.data`` once; returns (train_set, val_set), any
      objects the task's other methods understand.
    * :meth:`sample` -- one training batch ``(inputs, targets, cond)`` on
      ``device``: ``inputs`` / ``targets`` are (N, C, h, w) float tensors, ``cond``
      is passed to :meth:`forward` (e.g. the noise level), may be None.
    * :meth:`forward` -- the model's prediction for a batch (default ``model(x)``).
    * :meth:`loss` -- a scalar tensor (default MSE).
    * :meth:`validate` -- one float, the validation metric named ``metric``;
      ``higher_is_better`` says its direction (e.g. PSNR up, loss down).
    * :meth:`export_tag` / :meth:`manifest_fields` -- the weights file name suffix
      and the task-specific fields of its manifest entry.

    Randomness must come only from the generators passed in (``gen`` on the CPU,
    ``dgen`` on ``device``), so that runs resume exactly.
    """

    name = "task"
    metric = "val_metric"
    higher_is_better = True

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def check_model(self, model: nn.Module) -> None:
        """Raises ValueError when the model does not fit this task's config."""

    def load(self, data: Path) -> tuple[Any, Any]:
        raise NotImplementedError

    def data_digest(self, data: Path) -> str | None:
        """An identifier of the dataset (recorded with checkpoints and exports)."""
        if data.suffix == ".pack":
            from tvcli.datapack import read_pack_meta

            return read_pack_meta(data).get("digest")
        man = data / "manifest.json"
        return json.loads(man.read_text()).get("digest") if man.exists() else None

    def sample(self, train_set: Any, gen: torch.Generator, dgen: torch.Generator | None,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
        raise NotImplementedError

    def forward(self, model: nn.Module, inputs: torch.Tensor, cond: Any) -> torch.Tensor:
        return model(inputs)

    def loss(self, pred: torch.Tensor, targets: torch.Tensor, cond: Any) -> torch.Tensor:
        return nn.functional.mse_loss(pred.float(), targets.float())

    def validate(self, model: nn.Module, val_set: Any, device: torch.device) -> float:
        raise NotImplementedError

    def export_tag(self) -> str:
        return self.name

    def manifest_fields(self) -> dict:
        return {}


TASKS: dict[str, Callable[[TrainConfig], Task]] = {}


def register_task(name: str, factory: Callable[[TrainConfig], Task]) -> None:
    """Makes ``TrainConfig(task=name)`` build its task with ``factory(cfg)``."""
    TASKS[name] = factory


# Tasks defined in their own modules, imported (and so registered) on first use.
_TASK_MODULES = {"eps": "tvcli.train_eps", "edges": "tvcli.edge_task",
                 "classify": "tvcli.classify_task"}


def get_task(cfg: TrainConfig) -> Task:
    if cfg.task not in TASKS and cfg.task in _TASK_MODULES:
        import importlib

        importlib.import_module(_TASK_MODULES[cfg.task])
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[cfg.task](cfg)


def files_digest(root: Path, files: list[Path]) -> str:
    """``"files:"`` + 16 hex digits of sha256 over the sorted (path relative to
    ``root``, size in bytes) of ``files``: a cheap identifier of a data folder's
    contents (names and sizes, not bytes: it does not read the files)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(Path(f) for f in files):
        h.update(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n".encode())
    return "files:" + h.hexdigest()[:16]


def load_images(folder: Path, channels: int = 3, as_uint8: bool = False) -> list[torch.Tensor]:
    """All PNG images of ``folder`` as (channels, H, W) tensors: float32 in [0, 1], or
    uint8 with ``as_uint8`` (a quarter of the memory; crops are converted later)."""
    import numpy as np
    from PIL import Image

    out = []
    for path in sorted(Path(folder).glob("*.png")):
        img = np.asarray(Image.open(path).convert("RGB" if channels == 3 else "L"))
        t = torch.from_numpy(img.copy() if as_uint8 else img.astype(np.float32) / 255.0)
        out.append(t.permute(2, 0, 1).contiguous() if t.dim() == 3 else t.unsqueeze(0))
    if not out:
        raise FileNotFoundError(f"no PNG images in {folder} (run `tvcli data fetch` first)")
    return out


def _to_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0 if t.dtype == torch.uint8 else t


def random_crops(images: list[torch.Tensor], weights: torch.Tensor, n: int, patch: int,
                 gen: torch.Generator) -> torch.Tensor:
    """(n, C, patch, patch) float32 random crops, each flipped/rotated at random
    (one of the 8 dihedral transforms); images are picked with probability
    proportional to ``weights`` (their pixel counts)."""
    idx = torch.multinomial(weights, n, replacement=True, generator=gen)
    crops = []
    for i in idx.tolist():
        img = images[i]
        h, w = img.shape[-2:]
        ph, pw = min(patch, h), min(patch, w)
        y = int(torch.randint(0, h - ph + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - pw + 1, (1,), generator=gen))
        crop = img[:, y:y + ph, x:x + pw]
        k = int(torch.randint(0, 8, (1,), generator=gen))
        crop = torch.rot90(crop, k % 4, dims=(1, 2))
        if k >= 4:
            crop = crop.flip(2)
        crops.append(_to_float(crop))
    return torch.stack(crops)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


@torch.no_grad()
def validate(model: nn.Module, images: list[torch.Tensor], sigma: float, crop: int | None,
             device: str | torch.device, seed: int = 1234) -> float:
    """Mean PSNR over ``images`` (center-cropped to ``crop``) with fixed-seed noise
    (sigma in 0-255 units; outputs clipped to [0, 1])."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for img in images:
        img = _to_float(img)
        if crop:
            h, w = img.shape[-2:]
            y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            img = img[:, y:y + crop, x:x + crop]
        noisy = img + sigma / 255.0 * torch.randn(img.shape, generator=gen)
        out = apply_model(model, noisy.unsqueeze(0).to(device), sigma / 255.0)
        out = out.squeeze(0).float().cpu().clamp(0, 1)
        scores.append(psnr(out, img))
    model.train(was_training)
    return float(sum(scores) / len(scores))


@dataclass
class _PatchSet:
    """Training images, or a pool of patches already on the device."""

    images: list[torch.Tensor]
    weights: torch.Tensor
    pool: torch.Tensor | None = None


class DenoiseTask(Task):
    """AWGN denoising: see the module docstring. ``cond`` is the per-patch noise
    level (N,) in [0, 1] units, given to models with a noise-level input."""

    name = "denoise"
    metric = "val_psnr"
    higher_is_better = True

    def check_model(self, model: nn.Module) -> None:
        cfg = self.cfg
        if cfg.sigma_range is not None:
            if not getattr(model, "takes_sigma", False):
                raise ValueError(f"model {cfg.model!r} has no noise-level input: train it "
                                 "with one --sigma, not a range")
            lo, hi = (float(v) for v in cfg.sigma_range)
            if not 0 <= lo <= hi:
                raise ValueError(f"sigma range must satisfy 0 <= lo <= hi, got "
                                 f"{cfg.sigma_range}")

    def load(self, data: Path) -> tuple[_PatchSet, list[torch.Tensor]]:
        if data.suffix == ".pack":  # one file made by `make gpu-data` (tvcli.datapack)
            from tvcli.datapack import read_pack

            arrays = read_pack(data)[1]
            imgs = [t for k, t in sorted(arrays.items()) if k.startswith("train/")]
            if "train" in arrays:  # equal-size crops stored as one (N, C, H, W) array
                imgs += list(arrays["train"].unbind(0))
            val = [t for k, t in sorted(arrays.items()) if k.startswith("val/")]
        else:
            imgs = load_images(data / "train", as_uint8=True)
            val = load_images(data / "val", as_uint8=True)
        weights = torch.tensor([float(im.shape[-1] * im.shape[-2]) for im in imgs])
        return _PatchSet(imgs, weights), val

    def sample(self, train_set: _PatchSet, gen: torch.Generator,
               dgen: torch.Generator | None, device: torch.device):
        cfg = self.cfg
        if cfg.patch_pool > 0:  # GPU path: patches already on the device
            if train_set.pool is None:
                pool_gen = torch.Generator().manual_seed(cfg.seed + 1)
                train_set.pool = random_crops(train_set.images, train_set.weights,
                                              cfg.patch_pool, cfg.patch, pool_gen).to(device)
            idx = torch.randint(0, cfg.patch_pool, (cfg.batch,), generator=gen).to(device)
            clean = train_set.pool[idx]
            k = int(torch.randint(0, 8, (1,), generator=gen))  # one transform per batch
            clean = torch.rot90(clean, k % 4, dims=(2, 3))
            if k >= 4:
                clean = clean.flip(3)
        else:
            clean = random_crops(train_set.images, train_set.weights, cfg.batch, cfg.patch,
                                 gen)
        n = clean.shape[0]
        if cfg.sigma_range is None:
            level = torch.full((n,), cfg.sigma / 255.0)
        else:
            lo, hi = (float(v) for v in cfg.sigma_range)
            level = (lo + (hi - lo) * torch.rand(n, generator=gen)) / 255.0
        if dgen is None:  # CPU: noise from the one CPU generator
            noise = torch.randn(clean.shape, generator=gen)
            clean, noise = clean.to(device), noise.to(device)
        else:
            noise = torch.randn(clean.shape, generator=dgen, device=device)
        level = level.to(device)
        noisy = clean + level.view(-1, 1, 1, 1) * noise
        return noisy, clean, level

    def forward(self, model: nn.Module, inputs: torch.Tensor, cond: Any) -> torch.Tensor:
        return apply_model(model, inputs, cond)

    def validate(self, model: nn.Module, val_set: list[torch.Tensor],
                 device: torch.device) -> float:
        return validate(model, val_set, self.cfg.sigma, self.cfg.val_crop, device)

    def export_tag(self) -> str:
        return "blind" if self.cfg.sigma_range else f"s{int(self.cfg.sigma)}"

    def manifest_fields(self) -> dict:
        srange = self.cfg.sigma_range
        return {"sigma": None if srange else self.cfg.sigma,
                **({"sigma_range": srange, "val_sigma": self.cfg.sigma} if srange else {}),
                "val_crop": self.cfg.val_crop}


register_task("denoise", DenoiseTask)


# --------------------------------------------------------------------- checkpoints


def _save_checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, dgen: torch.Generator | None, meta: dict) -> None:
    from tvcli._safetensors import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in
               model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng"] = gen.get_state()
    if dgen is not None:
        tensors["rng_device"] = dgen.get_state()
    meta = {**meta, "param_groups": opt_state["param_groups"]}
    tmp = run / "ckpt.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, run / "ckpt.safetensors")
    tmpj = run / "ckpt.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=1))
    os.replace(tmpj, run / "ckpt.json")


def _load_checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, dgen: torch.Generator | None) -> dict:
    from tvcli._safetensors import load_file

    tensors = load_file(str(run / "ckpt.safetensors"))
    meta = json.loads((run / "ckpt.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    gen.set_state(tensors["rng"])
    if dgen is not None and "rng_device" in tensors:
        dgen.set_state(tensors["rng_device"])
    return meta


def _resumed_model_config(run: Path, cfg: TrainConfig) -> dict:
    """The model settings to build: ``cfg.model_config``, completed by those of the
    run's checkpoint when it has one. A resumed run keeps the architecture it was
    trained with, including settings that own no weights (e.g. dropout rates,
    which a state dict cannot check); a setting this call gives that differs from
    the checkpoint's is an error (ValueError), not a silent change mid-run."""
    ckpt = run / "ckpt.json"
    if not ckpt.exists():
        return dict(cfg.model_config)
    saved = json.loads(ckpt.read_text()).get("model_config") or {}
    clash = {k: (saved[k], v) for k, v in cfg.model_config.items()
             if k in saved and saved[k] != v}
    if clash:
        said = ", ".join(f"{k} {old!r} (asked: {new!r})" for k, (old, new) in clash.items())
        raise ValueError(f"run folder {run} was trained with {said}: resume it with the "
                         "same settings, or give another --out")
    return {**cfg.model_config, **saved}


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cfg.amp not in (None, "bf16"):
        raise ValueError(f"amp must be None or 'bf16', got {cfg.amp!r}")
    return contextlib.nullcontext()


# ---------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, progress: bool = True, log=print,
          stop_at: int | None = None) -> dict:
    """Runs (or resumes) training; returns the last checkpoint's metadata.

    ``stop_at`` ends this call after that step (with a checkpoint), as an
    interruption would; a later call with the same config resumes exactly.
    The metadata holds ``step``, ``wall_s`` (training wall time, summed over
    resumed calls) and ``history`` (one dict per validation: step, loss, the
    task's metric under its name, wall_s).
    """
    from tvcli import distributed as dist_
    from tvcli._safetensors import load_file

    torch.manual_seed(cfg.seed)
    task = get_task(cfg)
    # Under torchrun: join the process group (see tvcli/distributed.py); rank 0
    # alone logs, validates and writes. Otherwise env is inactive and nothing changes.
    env, dev_name = dist_.init(cfg.device)
    try:
        meta = _train(cfg, task, env, dev_name, progress, log, stop_at, load_file, dist_)
        # All ranks leave the group together: rank 0 validates and checkpoints after
        # the last step while the others are done; a rank tearing its group down while
        # its peer still holds the connection is one way a gloo process aborts at exit
        # ("terminate called without an active exception", seen once in CI).
        dist_.all_ok(True, env, dev_name)
        return meta
    finally:
        dist_.shutdown(env)  # no collective here: also runs after a failure


def _train(cfg: TrainConfig, task: Task, env, dev_name: str, progress: bool, log,
           stop_at: int | None, load_file, dist_) -> dict:
    """The body of :func:`train` on this rank."""
    if not env.is_main:
        progress = False
        log = _silent
    device = torch.device(dev_name)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data)
    train_set, val_set = task.load(data)
    model = build_model(cfg.model, **_resumed_model_config(run, cfg))
    task.check_model(model)
    if cfg.init_from:
        try:
            model.load_state_dict(load_file(cfg.init_from))
        except RuntimeError as exc:  # another architecture or config
            raise ValueError(f"init weights {cfg.init_from} do not fit model {cfg.model!r} "
                             f"{cfg.model_config or ''}: {str(exc).splitlines()[0]}") from None
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = dist_.prepare_model(model, env, dev_name)  # synchronised BN (several ranks)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    dgen = (torch.Generator(device=device).manual_seed(cfg.seed + 2)
            if device.type != "cpu" else None)
    meta = {"config": asdict(cfg), "step": 0, "wall_s": 0.0, "history": [],
            "data_digest": task.data_digest(data),
            "model_config": getattr(model, "config", {})}
    if (run / "ckpt.json").exists():
        meta = _load_checkpoint(run, model, opt, gen, dgen)
        meta["config"] = asdict(cfg)  # e.g. more --steps than the first run asked for
        log(f"resumed {cfg.model} at step {meta['step']} from {run}")
    # Samples drawn so far (all ranks): where the sample-indexed stream of a
    # distributed run continues, whatever the world size now.
    meta.setdefault("samples", meta["step"] * cfg.batch)
    meta.setdefault("skipped_steps", 0)
    # CPU threads of every call that trained this run (the budget's other half).
    meta["threads"] = sorted(set(meta.get("threads", [])) | {torch.get_num_threads()})
    if env.is_main and meta["step"] == 0 and not meta.get("lam_history"):
        _record_lams(meta, model)  # the initial lams (step 0), if the model has TV layers
    net = dist_.wrap_model(model, env, dev_name)  # DDP with several ranks, else model
    several = env.active and env.world_size > 1
    skipped_in_row = 0
    model.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=meta["step"], desc=cfg.model, unit="step",
                   dynamic_ncols=True)
    metric = task.metric
    last_val = meta["history"][-1].get(metric, float("nan")) if meta["history"] else float("nan")
    t_start = time.perf_counter() - meta["wall_s"]
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    while meta["step"] < end:
        step = meta["step"]
        frac = step / cfg.steps
        if cfg.schedule_by_wall and cfg.max_wall_s:
            frac = min(1.0, max(frac, (time.perf_counter() - t_start) / cfg.max_wall_s))
            if several:  # wall clocks differ: every rank follows rank 0's schedule
                frac = dist_.from_rank0(frac, env, dev_name)
        lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))
        for group in opt.param_groups:
            group["lr"] = lr
        if not env.active:
            inputs, targets, cond = task.sample(train_set, gen, dgen, device)
            loss = _forward_loss(task, net, cfg, device, inputs, targets, cond)
        else:
            # Every rank must reach the same collectives: agree that all ranks drew
            # their batch before the forward pass (synchronised BN communicates),
            # and that all losses are finite before the backward pass (DDP's
            # gradient all-reduce); otherwise all skip this step together.
            start = meta["samples"] + env.rank * cfg.batch
            loss, problem = None, None
            try:
                inputs, targets, cond = _indexed_sample(task, train_set, cfg, device, start)
            except (ValueError, RuntimeError, OSError, IndexError) as exc:
                problem = f"rank {env.rank}: batch at sample {start}: {exc}"
            if dist_.all_ok(problem is None, env, dev_name):
                loss = _forward_loss(task, net, cfg, device, inputs, targets, cond)
                if not bool(torch.isfinite(loss.detach())):
                    problem = f"rank {env.rank}: non-finite loss at sample {start}"
            meta["samples"] += cfg.batch * env.world_size
            if not dist_.all_ok(problem is None, env, dev_name):
                if problem is not None:
                    print(f"tvcli: warning: {problem}; every rank skips step {step + 1}",
                          flush=True)
                meta["skipped_steps"] += 1
                skipped_in_row += 1
                if skipped_in_row >= _MAX_SKIPPED_IN_ROW:
                    # ValueError: the CLI reports it as one line (bad data, not a bug).
                    raise ValueError(f"{skipped_in_row} training steps in a row skipped "
                                       "for bad batches or non-finite losses; stopping")
                continue
            skipped_in_row = 0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meta["step"] = step + 1
        if not env.active:
            meta["samples"] += cfg.batch
        meta["wall_s"] = time.perf_counter() - t_start
        over_budget = cfg.max_wall_s is not None and meta["wall_s"] >= cfg.max_wall_s
        if several and cfg.max_wall_s is not None:
            # Wall clocks differ between ranks: all stop when one is over budget.
            over_budget = not dist_.all_ok(not over_budget, env, dev_name)
        if not env.is_main:
            # Rank 0 alone validates and writes checkpoints; the others go on to
            # the next step (they wait there in the first all-reduce).
            if over_budget:
                break
            continue
        if meta["step"] % cfg.val_every == 0 or meta["step"] == cfg.steps or over_budget:
            with _autocast(cfg, device):
                last_val = task.validate(model, val_set, device)
            meta["history"].append({"step": meta["step"], "loss": loss.item(),
                                    metric: last_val, "wall_s": meta["wall_s"]})
            _record_lams(meta, model)
        if meta["step"] % cfg.ckpt_every == 0 or meta["step"] == end or over_budget:
            _save_checkpoint(run, model, opt, gen, dgen, meta)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2e}", val=f"{last_val:.2f}", lr=f"{lr:.1e}")
        if over_budget:
            log(f"{cfg.model}: wall budget {cfg.max_wall_s:g} s spent at step {meta['step']}")
            break
    if bar is not None:
        bar.close()
    return meta


_MAX_SKIPPED_IN_ROW = 10


def _record_lams(meta: dict, model: nn.Module) -> None:
    """Appends ``{"step", "lams"}`` to ``meta["lam_history"]`` (the learned lam of each
    TV layer, :func:`tvcli.nn.learned_lams`: the paper's Fig. 3); nothing for a model
    without learned TV layers. Saved with the checkpoint, so a resumed run's history
    is the same as an uninterrupted one's."""
    from tvcli.nn import learned_lams

    lams = learned_lams(model)
    if lams:
        meta.setdefault("lam_history", []).append({"step": meta["step"], "lams": lams})


def lam_table(lam_history: list[dict]) -> dict:
    """A compact, column-wise form of a run's ``lam_history`` (for manifests and
    tables): ``{"steps": [...], "layers": {name: {"channels": C, "mean": [...],
    "min": [...], "max": [...]}}}``, mean / min / max over the layer's channels
    (equal for a shared lam), one value per recorded step, 6 significant digits."""
    steps = [int(r["step"]) for r in lam_history]
    layers: dict[str, dict] = {}
    for r in lam_history:
        for name, vals in r["lams"].items():
            col = layers.setdefault(name, {"channels": len(vals), "mean": [], "min": [],
                                           "max": []})
            col["mean"].append(float(f"{sum(vals) / len(vals):.6g}"))
            col["min"].append(float(f"{min(vals):.6g}"))
            col["max"].append(float(f"{max(vals):.6g}"))
    for col in layers.values():
        if col["channels"] == 1:  # a shared lam: min = max = mean
            del col["min"], col["max"]
    return {"steps": steps, "layers": layers}


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _forward_loss(task: Task, net: nn.Module, cfg: TrainConfig, device: torch.device,
                  inputs: torch.Tensor, targets: torch.Tensor, cond: Any) -> torch.Tensor:
    """The task's loss of the (possibly DDP-wrapped) model on one batch."""
    if cfg.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with _autocast(cfg, device):
        pred = task.forward(net, inputs, cond)
    return task.loss(pred, targets, cond)


def _indexed_sample(task: Task, train_set: Any, cfg: TrainConfig, device: torch.device,
                    start: int) -> tuple:
    """This rank's batch of a distributed run: samples ``start .. start + batch - 1``
    of the sample-indexed stream (:func:`tvcli.distributed.indexed_batch`), each
    drawn by the task from its own CPU generator (``task.sample`` with batch 1)."""
    from dataclasses import replace

    from tvcli.distributed import indexed_batch

    whole = task.cfg

    def draw(gen: torch.Generator) -> tuple:
        task.cfg = replace(whole, batch=1)
        try:
            return task.sample(train_set, gen, None, device)
        finally:
            task.cfg = whole

    return indexed_batch(draw, cfg.seed, start, cfg.batch)


def export_weights(run: str | Path, weights_dir: str | Path, name: str | None = None,
                   extra: dict | None = None) -> dict:
    """Writes a run's final model as ``weights_dir/<model>-<tag>.safetensors`` (tag
    from the task, e.g. ``s25`` or ``blind``) and records it in
    ``weights_dir/manifest.json`` (``extra`` fields are added to the entry);
    returns the manifest entry."""
    import hashlib

    from tvcli._safetensors import load_file, save_file

    run, weights_dir = Path(run), Path(weights_dir)
    meta = json.loads((run / "ckpt.json").read_text())
    cfg_d = meta["config"]
    cfg = TrainConfig(**{k: v for k, v in cfg_d.items()
                         if k in TrainConfig.__dataclass_fields__})
    task = get_task(cfg)
    tensors = load_file(str(run / "ckpt.safetensors"))
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    fname = f"{name or cfg.model}-{task.export_tag()}.safetensors"
    weights_dir.mkdir(parents=True, exist_ok=True)
    tmp = weights_dir / (fname + ".tmp")
    fields = task.manifest_fields()
    save_file(state, str(tmp), metadata={"model": cfg.model, "task": cfg.task,
                                         "sigma": str(cfg.sigma_range or cfg.sigma)})
    os.replace(tmp, weights_dir / fname)
    os.chmod(weights_dir / fname, 0o644)  # a shipped, read-only artefact for everyone
    digest = hashlib.sha256((weights_dir / fname).read_bytes()).hexdigest()
    last = meta["history"][-1] if meta["history"] else {}
    threads = meta.get("threads")
    entry = {
        "model": cfg.model, "file": fname, **fields,
        "config": meta["model_config"], "data_digest": meta["data_digest"],
        "steps": meta["step"], "batch": cfg.batch, "patch": cfg.patch,
        "wall_s": round(meta["wall_s"], 1), "seed": cfg.seed,
        **({"threads": threads[0] if len(threads) == 1 else threads} if threads else {}),
        "lr": cfg.lr, **({"task_config": cfg.task_config} if cfg.task_config else {}),
        f"{task.metric}_crop" if cfg.task == "denoise" else task.metric: last.get(task.metric),
        "sha256": digest, "trained_with": "tvcli train", "device": cfg.device,
        **({"task": cfg.task} if cfg.task != "denoise" else {}),
        **({"init_from": Path(cfg.init_from).name} if cfg.init_from else {}),
        **({"lam_history": lam_table(meta["lam_history"])} if meta.get("lam_history")
           else {}),
        **(extra or {}),
    }
    man_path = weights_dir / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.exists() else {"weights": []}
    man["weights"] = [e for e in man["weights"] if e["file"] != fname] + [entry]
    man["weights"].sort(key=lambda e: (e["model"], e.get("sigma") if e.get("sigma") is not None
                                       else -1))
    tmpm = weights_dir / "manifest.json.tmp"
    tmpm.write_text(json.dumps(man, indent=1) + "\n")
    os.replace(tmpm, man_path)
    return entry
