"""What a training run is: :class:`TrainConfig`, and :func:`make_config`, which turns
``tvcli train MODEL --data PATH [options]`` into one.

:func:`make_config` is the one place that checks a request against the model's
task (:mod:`tvcli.learning.tasks`: its defaults, its own options, its data check) and
against the model (``--sigma-range`` needs a noise-level input, ``--lam-init`` TV
layers); ``tvcli train`` and the GPU runner build their configs here, so they train
the same way. Every problem is a :class:`TrainSetupError` (a ``ValueError``) with
one line that names the cause; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainConfig", "TrainSetupError", "check_data", "make_config", "task_of"]


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


class TrainSetupError(ValueError):
    """A training request that cannot run: unknown model, wrong data, bad option."""


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def task_of(model: str) -> str:
    """The training task of registered model ``model`` (TrainSetupError if unknown)."""
    from tvcli.learning.tasks import task_of as _task_of

    try:
        return _task_of(model)
    except ValueError as exc:
        raise TrainSetupError(str(exc)) from None


def check_data(task: str, data: Path) -> None:
    """Raises :class:`TrainSetupError` unless ``data`` looks like the task's data
    (:meth:`tvcli.learning.tasks.Task.check_data`: cheap checks of the layout only)."""
    from tvcli.learning.tasks import TaskDataError, task_class

    data = Path(data)
    if not data.exists():
        raise TrainSetupError(f"--data {data}: no such file or folder")
    try:
        task_class(task).check_data(data)
    except (TaskDataError, ValueError) as exc:
        raise TrainSetupError(str(exc)) from None


def make_config(model: str, data: str | Path, out: str | Path | None = None, *,
                steps: int = 3000, batch: int | None = None, patch: int | None = None,
                lr: float = 1e-3, seed: int = 0, val_every: int | None = None,
                ckpt_every: int | None = None, device: str = "cpu",
                width: int | None = None, depth: int | None = None,
                sigma: float | None = None, sigma_range: list[float] | None = None,
                init_from: str | Path | None = None, max_wall: float | None = None,
                dropout: list[float] | None = None, lam_init: float | None = None,
                task_options: dict | None = None, check: bool = True) -> TrainConfig:
    """The :class:`TrainConfig` of a ``tvcli train`` request.

    None means "the task's default" (its :class:`~tvcli.learning.tasks.base.TaskDefaults`).
    ``sigma`` (0-255), ``sigma_range`` and ``depth`` apply to denoisers only;
    ``task_options`` holds the task's own settings (``Task.options``, e.g.
    ``train_per_class``); options that do not apply to the model are errors, not
    silently dropped. ``dropout`` = [IN, MID] (classifiers only): the input dropout
    and the two mid-network dropouts (All-CNN-C's 0.2 and 0.5 when None).
    ``lam_init`` (models with TV layers only): the initial lam of every TV layer,
    in the units of the layer's input (``ModelSpec.lam_keys`` names the model's
    settings it sets). ``out`` defaults to ``runs/MODEL-TAG``. ``check``: also
    check the data layout.
    """
    from tvcli.learning.tasks import models_of, task_class, task_names
    from tvcli.models import MODELS

    task = task_of(model)
    tcls = task_class(task)
    d = tcls.defaults
    options = {k: v for k, v in (task_options or {}).items() if v is not None}
    for key, value in options.items():
        allowed = tcls.options
        if key not in allowed:
            where = [t for t in task_names() if key in task_class(t).options]
            raise TrainSetupError(
                f"{_flag(key)} does not apply to {model} (task {task})"
                + (f"; it is for {', '.join(where)} models" if where else ""))
        if allowed[key] is int and (not isinstance(value, int) or value < 1):
            raise TrainSetupError(f"{_flag(key)} must be a positive integer, got {value!r}")
    if task != "denoise":
        given = [f for f, v in (("--sigma", sigma), ("--sigma-range", sigma_range),
                                ("--depth", depth)) if v is not None]
        if given:
            raise TrainSetupError(f"{', '.join(given)} do not apply to {model} (task {task}: "
                                  "only denoisers have a noise level and a depth)")
    if dropout is not None:
        if task != "classify":
            raise TrainSetupError(f"--dropout does not apply to {model} (task {task}); it is "
                                  f"for {models_of('classify')}")
        if len(dropout) != 2 or not all(0 <= p < 1 for p in dropout):
            raise TrainSetupError(f"--dropout must be IN,MID with 0 <= p < 1, got {dropout!r}")
    if lam_init is not None:
        keys = MODELS[model].lam_keys
        if not keys:
            with_tv = ", ".join(n for n, s in MODELS.items() if s.lam_keys)
            raise TrainSetupError(f"--lam-init does not apply to {model}: it has no TV "
                                  f"layers (models with TV layers: {with_tv})")
        if not (lam_init > 0 and math.isfinite(lam_init)):
            raise TrainSetupError(f"--lam-init must be a finite number > 0 (lam is learned "
                                  f"in the log domain), got {lam_init!r}")
    if d.patch is None and patch is not None:
        raise TrainSetupError(f"--patch does not apply to {model}: {task} models take whole "
                              f"{d.val_crop}x{d.val_crop} images")
    if sigma_range is not None:
        if len(sigma_range) != 2 or not 0 <= sigma_range[0] <= sigma_range[1] <= 255:
            raise TrainSetupError(f"--sigma-range must be LO,HI with 0 <= LO <= HI <= 255, "
                                  f"got {sigma_range!r}")
        if not getattr(MODELS[model].builder, "takes_sigma", False):
            raise TrainSetupError(f"model {model!r} has no noise-level input; give one "
                                  "--sigma")
    if init_from is not None and not Path(init_from).is_file():
        raise TrainSetupError(f"--init-from {init_from}: no such file")
    if check:
        check_data(task, Path(data))
    model_config = dict(d.model_config)
    model_config.update({k: v for k, v in (("depth", depth), ("width", width))
                         if v is not None})
    if dropout is not None:
        model_config.update(dropout_in=float(dropout[0]), dropout=float(dropout[1]))
    if lam_init is not None:
        model_config.update({k: float(lam_init) for k in MODELS[model].lam_keys})
    sigma = 25.0 if sigma is None else float(sigma)
    if out is None:
        out = Path("runs") / f"{model}-{tcls.out_tag(sigma, sigma_range)}"
    return TrainConfig(model=model, data=str(data), out=str(out), sigma=sigma,
                       sigma_range=list(sigma_range) if sigma_range else None, steps=steps,
                       batch=batch or d.batch, patch=patch or d.patch or d.val_crop, lr=lr,
                       seed=seed, val_every=val_every or d.val_every,
                       ckpt_every=ckpt_every or d.ckpt_every, val_crop=d.val_crop,
                       device=device, model_config=model_config, task=task,
                       task_config=options,
                       init_from=str(init_from) if init_from else None, max_wall_s=max_wall)
