"""From ``tvcli train MODEL --data PATH [options]`` to a :class:`~tvcli.train.TrainConfig`.

The one place that knows, for every registered model, which training task trains it
(its registry entry, :attr:`tvcli.models.registry.ModelSpec.task`), that task's
defaults (batch, patch, validation crop and cadence), which options apply to it,
and what a data folder for it looks like. ``tvcli train`` and the benchmark scripts
(``benchmarks/edges_train.py``, ``benchmarks/cls_cifar10c.py``) all build their
configs here, so they train the same way.

Every problem is a :class:`TrainSetupError` (a ``ValueError``) with one line that
names the cause; the CLI prints it and exits non-zero.

Tasks and their data (see each task's module):

========  ================================  =========================================
task      models                            ``--data``
========  ================================  =========================================
denoise   dncnn, dncnn-tv, ffdnet, ffdnet-tv  ``tvcli data fetch`` folder or a ``.pack``
eps       eps, eps-tv                       ``tvcli data eps`` folder
edges     dexined, dexined-tv               BSDS500 (``images/``, ``groundTruth/``)
classify  allconv, allconv-tv-smooth/sharp  CIFAR-10 JPEG ``.tar.gz`` or its folder
========  ================================  =========================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvcli.train import TrainConfig

__all__ = ["TASK_DEFAULTS", "TASK_OPTIONS", "TaskDefaults", "TrainSetupError", "check_data",
           "make_config", "task_of"]


class TrainSetupError(ValueError):
    """A training request that cannot run: unknown model, wrong data, bad option."""


@dataclass(frozen=True)
class TaskDefaults:
    """What ``tvcli train`` uses for a task when an option is not given.

    ``patch``: crop side in pixels (None: the task has a fixed input size, and
    ``--patch`` does not apply). ``val_crop``: centre crop of validation images.
    ``model_config``: architecture settings (e.g. the width-reduced DexiNed).
    """

    batch: int
    patch: int | None
    val_every: int
    ckpt_every: int
    val_crop: int
    model_config: dict = field(default_factory=dict)


TASK_DEFAULTS: dict[str, TaskDefaults] = {
    "denoise": TaskDefaults(batch=16, patch=40, val_every=250, ckpt_every=100, val_crop=192),
    "eps": TaskDefaults(batch=16, patch=40, val_every=250, ckpt_every=100, val_crop=192),
    # docs/edges.md: the width-16 DexiNed of the shipped weights, 160-pixel crops
    "edges": TaskDefaults(batch=4, patch=160, val_every=100, ckpt_every=50, val_crop=320,
                          model_config={"width": 16}),
    # CIFAR-10: 32x32 images, no crop option
    "classify": TaskDefaults(batch=32, patch=None, val_every=250, ckpt_every=50,
                             val_crop=32),
}

# Task-specific options (``task_config`` keys) and the tasks they apply to.
TASK_OPTIONS: dict[str, dict[str, type]] = {
    "denoise": {},
    "eps": {"val_images": int},
    "edges": {"val_hold": int, "scales": list},
    "classify": {"train_per_class": int, "val_per_class": int},
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def task_of(model: str) -> str:
    """The training task of registered model ``model``."""
    from tvcli.models import MODELS

    if model not in MODELS:
        raise TrainSetupError(f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[model].task


def _models_of(task: str) -> str:
    from tvcli.models import MODELS

    return ", ".join(n for n, s in MODELS.items() if s.task == task)


def check_data(task: str, data: Path) -> None:
    """Raises :class:`TrainSetupError` unless ``data`` looks like the task's data.

    Cheap checks of the layout only (files are read when training starts); the
    message says what was expected and how to make it.
    """
    data = Path(data)
    if not data.exists():
        raise TrainSetupError(f"--data {data}: no such file or folder")
    man_path = data / "manifest.json"
    man: dict[str, Any] = {}
    if data.is_dir() and man_path.is_file():
        try:
            man = json.loads(man_path.read_text())
        except (OSError, ValueError) as exc:
            raise TrainSetupError(f"{man_path}: not readable JSON ({exc})") from None
    is_eps = "filters" in man and "benchmark" in man
    is_bsds = (data / "images" / "train").is_dir() and (data / "groundTruth" / "train").is_dir()
    folder = data / "cifar10" if (data / "cifar10").is_dir() else data
    is_cifar = ((data.is_file() and data.name.endswith((".tar.gz", ".tgz", ".tar")))
                or (data.is_dir() and not man and (folder / "train").is_dir()
                    and (folder / "test").is_dir()))
    if task == "denoise":
        if data.is_file() and data.suffix == ".pack":
            return
        if is_eps:
            raise TrainSetupError(f"{data} is an edge-preserving-smoothing folder (tvcli data "
                                  f"eps); denoisers train on `tvcli data fetch` folders")
        if not man or not (data / "train").is_dir():
            raise TrainSetupError(f"{data} has no manifest.json and train/ folder: run "
                                  f"`tvcli data fetch {data}` first (denoisers: "
                                  f"{_models_of('denoise')})")
    elif task == "eps":
        if not is_eps or not (data / "train" / "input").is_dir():
            raise TrainSetupError(f"{data} is not a `tvcli data eps` folder (manifest.json "
                                  f"with filters, train/input/): run `tvcli data eps {data} "
                                  "--bsds500 BSDS500` first")
    elif task == "edges":
        if not is_bsds:
            raise TrainSetupError(f"{data} is not a BSDS500 folder (images/train and "
                                  f"groundTruth/train expected) for {_models_of('edges')}")
    elif task == "classify":
        if not is_cifar:
            raise TrainSetupError(f"{data} is not CIFAR-10 (the JPEG .tar.gz, or a folder "
                                  f"with train/ and test/ class folders) for "
                                  f"{_models_of('classify')}")
    else:
        raise TrainSetupError(f"no data check for task {task!r}")


def make_config(model: str, data: str | Path, out: str | Path | None = None, *,
                steps: int = 3000, batch: int | None = None, patch: int | None = None,
                lr: float = 1e-3, seed: int = 0, val_every: int | None = None,
                ckpt_every: int | None = None, device: str = "cpu",
                width: int | None = None, depth: int | None = None,
                sigma: float | None = None, sigma_range: list[float] | None = None,
                init_from: str | Path | None = None, max_wall: float | None = None,
                dropout: list[float] | None = None,
                task_options: dict | None = None, check: bool = True) -> TrainConfig:
    """The :class:`TrainConfig` of a ``tvcli train`` request.

    None means "the task's default" (:data:`TASK_DEFAULTS`). ``sigma`` (0-255),
    ``sigma_range`` and ``depth`` apply to denoisers only; ``task_options`` holds
    the task's own settings (:data:`TASK_OPTIONS`, e.g. ``train_per_class``);
    options that do not apply to the model's task are errors, not silently dropped.
    ``dropout`` = [IN, MID] (classifiers only): the input dropout and the two
    mid-network dropouts (All-CNN-C's 0.2 and 0.5 when None).
    ``out`` defaults to ``runs/MODEL-TAG``. ``check``: also check the data layout.
    """
    from tvcli.models import MODELS

    task = task_of(model)
    d = TASK_DEFAULTS[task]
    options = {k: v for k, v in (task_options or {}).items() if v is not None}
    for key, value in options.items():
        allowed = TASK_OPTIONS[task]
        if key not in allowed:
            where = [t for t, opts in TASK_OPTIONS.items() if key in opts]
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
                                  f"for {_models_of('classify')}")
        if len(dropout) != 2 or not all(0 <= p < 1 for p in dropout):
            raise TrainSetupError(f"--dropout must be IN,MID with 0 <= p < 1, got {dropout!r}")
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
    sigma = 25.0 if sigma is None else float(sigma)
    if out is None:
        tag = task if task != "denoise" else ("blind" if sigma_range else f"s{int(sigma)}")
        out = Path("runs") / f"{model}-{tag}"
    return TrainConfig(model=model, data=str(data), out=str(out), sigma=sigma,
                       sigma_range=list(sigma_range) if sigma_range else None, steps=steps,
                       batch=batch or d.batch, patch=patch or d.patch or d.val_crop, lr=lr,
                       seed=seed, val_every=val_every or d.val_every,
                       ckpt_every=ckpt_every or d.ckpt_every, val_crop=d.val_crop,
                       device=device, model_config=model_config, task=task,
                       task_config=options,
                       init_from=str(init_from) if init_from else None, max_wall_s=max_wall)
