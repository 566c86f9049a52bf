"""What every training task knows: :class:`Task`, its defaults and its data check.

A task owns one kind of learning problem end to end: which models it trains (the
model registry's ``ModelSpec.task``), its defaults for ``tvcli train``
(:class:`TaskDefaults`), the options of its own (``options``), what its data looks
like (:meth:`Task.check_data`), how to load it and draw a training batch, the loss,
the validation metric, the test scoring (:meth:`Task.evaluate`, used by the GPU
runner and the report scripts alike) and what an exported weights file records.

The training loop (:mod:`tvcli.learning.train`) calls these methods and knows nothing else
about the task. Tasks import nothing from the training side: they are the lower
layer (:class:`RunConfig` is the shape of the config they read).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

__all__ = ["RunConfig", "Task", "TaskDataError", "TaskDefaults", "crop_center", "files_digest",
           "psnr_db", "read_manifest"]


class RunConfig(Protocol):
    """What a task reads of a run's config (:class:`tvcli.learning.train.config.TrainConfig`
    has these fields; tasks do not import the training side, so this is its shape)."""

    model: str
    data: str
    seed: int
    batch: int
    patch: int
    sigma: float
    sigma_range: list[float] | None
    val_crop: int
    patch_pool: int
    task_config: dict


class TaskDataError(ValueError):
    """A data path that is not what the task trains on (one line naming the cause)."""


@dataclass(frozen=True)
class TaskDefaults:
    """What ``tvcli train`` uses for a task when an option is not given.

    ``patch``: crop side in pixels (None: the task has a fixed input size, and
    ``--patch`` does not apply). ``val_crop``: centre crop of validation images.
    ``model_config``: architecture settings (e.g. the width-reduced DexiNed).
    ``out_tag``: the default run folder is ``runs/MODEL-<out_tag>``.
    """

    batch: int
    patch: int | None
    val_every: int
    ckpt_every: int
    val_crop: int
    model_config: dict = field(default_factory=dict)


def files_digest(root: Path, files: list[Path]) -> str:
    """``"files:"`` + 16 hex digits of sha256 over the sorted (path relative to
    ``root``, size in bytes) of ``files``: a cheap identifier of a data folder's
    contents (names and sizes, not bytes: it does not read the files)."""
    h = hashlib.sha256()
    for p in sorted(Path(f) for f in files):
        h.update(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n".encode())
    return "files:" + h.hexdigest()[:16]


def read_manifest(data: Path) -> dict:
    """``data/manifest.json`` parsed ({} when ``data`` is no folder or has none);
    TaskDataError when it exists but is not JSON."""
    man_path = Path(data) / "manifest.json"
    if not (Path(data).is_dir() and man_path.is_file()):
        return {}
    try:
        return json.loads(man_path.read_text())
    except (OSError, ValueError) as exc:
        raise TaskDataError(f"{man_path}: not readable JSON ({exc})") from None


def crop_center(t: torch.Tensor, crop: int | None) -> torch.Tensor:
    """The central ``crop`` x ``crop`` window of (..., H, W) (smaller sides kept
    whole); ``t`` itself when ``crop`` is 0 or None."""
    if not crop:
        return t
    h, w = t.shape[-2:]
    y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return t[..., y:y + crop, x:x + crop]


def psnr_db(pred: torch.Tensor, clean: torch.Tensor) -> float:
    """PSNR in dB of ``pred`` clipped to [0, 1] against ``clean`` in [0, 1]
    (:func:`tvcli.metrics.psnr`, the metric of ``tvcli eval``), as a float."""
    from tvcli.metrics import psnr

    return float(psnr(pred.detach().double().cpu().clamp(0, 1), clean.double().cpu(),
                      data_range=1.0))


class Task:
    """One learning problem (see the module docstring). Subclass it in a module of
    :mod:`tvcli.learning.tasks` and name it in :data:`tvcli.learning.tasks.TASK_MODULES`.

    A task instance is built once per run from the :class:`TrainConfig`
    (``cls(cfg)``); its methods are called by :func:`tvcli.learning.train.train`:

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

    Class-level facts, read without building the task: ``defaults``, ``options``
    (its own ``tvcli train`` options: ``task_config`` keys and their types),
    ``data_help`` and :meth:`check_data`.

    Randomness must come only from the generators passed in (``gen`` on the CPU,
    ``dgen`` on ``device``), so that runs resume exactly.
    """

    name: ClassVar[str] = "task"
    metric: ClassVar[str] = "val_metric"
    higher_is_better: ClassVar[bool] = True
    defaults: ClassVar[TaskDefaults] = TaskDefaults(batch=16, patch=40, val_every=250,
                                                    ckpt_every=100, val_crop=192)
    options: ClassVar[dict[str, type]] = {}
    data_help: ClassVar[str] = ""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    # ------------------------------------------------------------ class-level facts

    @classmethod
    def check_data(cls, data: Path) -> None:
        """Raises :class:`TaskDataError` unless ``data`` looks like this task's data.
        Cheap checks of the layout only (files are read when training starts); the
        message says what was expected and how to make it."""
        raise TaskDataError(f"no data check for task {cls.name!r}")

    @classmethod
    def out_tag(cls, sigma: float, sigma_range: list[float] | None) -> str:
        """The default run folder's suffix: ``runs/MODEL-<tag>``."""
        return cls.name

    # ------------------------------------------------------------------ training

    def check_model(self, model: nn.Module) -> None:
        """Raises ValueError when the model does not fit this task's config."""

    def load(self, data: Path) -> tuple[Any, Any]:
        raise NotImplementedError

    def data_digest(self, data: Path) -> str | None:
        """An identifier of the dataset (recorded with checkpoints and exports)."""
        if data.suffix == ".pack":
            from tvcli.data.pack import read_pack_meta

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

    def export_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors an exported weights file holds (default: ``state`` as is; a
        task may e.g. store float16)."""
        return state

    def manifest_fields(self) -> dict:
        return {}

    # ------------------------------------------------------------------- scoring

    @classmethod
    def evaluate(cls, model: nn.Module, data: Path, device: torch.device | str = "cpu", *,
                 amp: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 step: int = 1, deadline: float = math.inf, **options: Any) -> dict:
        """Test scores of a trained ``model`` on ``data`` (a data file of a GPU run or
        the task's data folder): ``{part: {metric: value, ..., "n": count}}``.
        ``amp()`` is entered around each forward pass; ``step`` > 1 scores every
        step-th item only; past ``deadline`` (time.perf_counter()) the remaining
        items are skipped (``n`` says how many were scored)."""
        raise NotImplementedError(f"task {cls.name!r} has no test scoring")
