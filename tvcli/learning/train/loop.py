"""The generic, resumable training loop (``tvcli train``): :func:`train`.

The loop knows nothing about denoising or edges: the run's task
(:mod:`tvcli.learning.tasks`, picked by ``cfg.task``) says how to load the data, draw a
training batch ``(inputs, targets, cond)``, run the model on it, the loss, the
validation metric (and whether higher is better).

What the loop does: Adam with a cosine learning-rate schedule from ``lr`` to
``lr_min`` over ``steps``; validation every ``val_every`` steps; a checkpoint every
``ckpt_every`` steps (:mod:`tvcli.learning.train.checkpoint`). Everything random is drawn
from one seeded CPU generator (plus, on a GPU, one seeded device generator), whose
states are checkpointed, so a run resumed after an interruption continues exactly
as if it had not stopped. Optional for GPUs: bf16 autocast, TF32, channels-last, a
wall-clock budget (``max_wall_s``: the run ends early, checkpointed, and the
schedule is *not* stretched -- set ``steps`` to what the budget allows), and a pool
of patches held on the device (the task's ``patch_pool``). Under torchrun it trains
data-parallel (:mod:`tvcli.learning.train.distributed`).

For models with learned TV layers the checkpoint also holds ``lam_history``: every
layer's lam at step 0 and at each validation (the paper's Fig. 3), so it resumes
with the run; :func:`tvcli.learning.train.export.export_weights` puts a compact form of it
into the manifest entry.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tvcli.learning.tasks import Task, task_class
from tvcli.learning.train.checkpoint import load_checkpoint, resumed_model_config, save_checkpoint
from tvcli.learning.train.config import TrainConfig
from tvcli.models.registry import build_model

__all__ = ["autocast", "get_task", "train"]


def get_task(cfg: TrainConfig) -> Task:
    """The run's task, built from its config (ValueError for an unknown task)."""
    return task_class(cfg.task)(cfg)


def autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast on CUDA when ``cfg.amp == "bf16"``, else a no-op context."""
    if cfg.amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cfg.amp not in (None, "bf16"):
        raise ValueError(f"amp must be None or 'bf16', got {cfg.amp!r}")
    return contextlib.nullcontext()


def train(cfg: TrainConfig, progress: bool = True, log=print,
          stop_at: int | None = None) -> dict:
    """Runs (or resumes) training; returns the last checkpoint's metadata.

    ``stop_at`` ends this call after that step (with a checkpoint), as an
    interruption would; a later call with the same config resumes exactly.
    The metadata holds ``step``, ``wall_s`` (training wall time, summed over
    resumed calls) and ``history`` (one dict per validation: step, loss, the
    task's metric under its name, wall_s).
    """
    from tvcli._safetensors import load_file
    from tvcli.learning.train import distributed as dist_

    torch.manual_seed(cfg.seed)
    task = get_task(cfg)
    # Under torchrun: join the process group (see tvcli/learning/train/distributed.py); rank 0
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
    model = build_model(cfg.model, **resumed_model_config(run, cfg))
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
        meta = load_checkpoint(run, model, opt, gen, dgen)
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
            with autocast(cfg, device):
                last_val = task.validate(model, val_set, device)
            meta["history"].append({"step": meta["step"], "loss": loss.item(),
                                    metric: last_val, "wall_s": meta["wall_s"]})
            _record_lams(meta, model)
        if meta["step"] % cfg.ckpt_every == 0 or meta["step"] == end or over_budget:
            save_checkpoint(run, model, opt, gen, dgen, meta)
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


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _forward_loss(task: Task, net: nn.Module, cfg: TrainConfig, device: torch.device,
                  inputs: torch.Tensor, targets: torch.Tensor, cond: Any) -> torch.Tensor:
    """The task's loss of the (possibly DDP-wrapped) model on one batch."""
    if cfg.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with autocast(cfg, device):
        pred = task.forward(net, inputs, cond)
    return task.loss(pred, targets, cond)


def _indexed_sample(task: Task, train_set: Any, cfg: TrainConfig, device: torch.device,
                    start: int) -> tuple:
    """This rank's batch of a distributed run: samples ``start .. start + batch - 1``
    of the sample-indexed stream (:func:`tvcli.learning.train.distributed.indexed_batch`), each
    drawn by the task from its own CPU generator (``task.sample`` with batch 1)."""
    from dataclasses import replace

    from tvcli.learning.train.distributed import indexed_batch

    whole = task.cfg

    def draw(gen: torch.Generator) -> tuple:
        task.cfg = replace(whole, batch=1)
        try:
            return task.sample(train_set, gen, None, device)
        finally:
            task.cfg = whole

    return indexed_batch(draw, cfg.seed, start, cfg.batch)
