"""The learning problems tvcli trains and scores: one module per task.

========  ===================================  ==========================================
task      models                               data (``tvcli train MODEL --data ...``)
========  ===================================  ==========================================
denoise   dncnn, dncnn-tv, ffdnet, ffdnet-tv   ``tvcli data fetch`` folder or a ``.pack``
eps       eps, eps-tv                          ``tvcli data eps`` folder
edges     dexined, dexined-tv                  BSDS500 (``images/``, ``groundTruth/``)
classify  allconv, allconv-tv-smooth/sharp     CIFAR-10 JPEG ``.tar.gz`` or its folder
wsol      cam, cam-tv                          ``tvcli data wsol`` folder (wsolevaluation)
========  ===================================  ==========================================

Each module defines one :class:`~tvcli.learning.tasks.base.Task` subclass that knows its
defaults, data check, data loading, augmentation, loss, validation and test
scoring; :data:`TASK_MODULES` is the one place that names them (a model's task is
its registry entry, :attr:`tvcli.models.registry.ModelSpec.task`). The CLI
(``tvcli train``), the training loop and the GPU runner (:mod:`tvcli.learning.train`) and the
report scripts (``benchmarks/``) all go through :func:`task_class`.
"""

from __future__ import annotations

import importlib

from tvcli.learning.tasks.base import Task, TaskDataError, TaskDefaults

__all__ = ["TASKS", "TASK_MODULES", "Task", "TaskDataError", "TaskDefaults", "models_of",
           "register_task", "task_class", "task_names", "task_of"]

# task name -> "module:class"; imported on first use (torch models stay unloaded).
TASK_MODULES: dict[str, str] = {
    "denoise": "tvcli.learning.tasks.denoise:DenoiseTask",
    "eps": "tvcli.learning.tasks.eps:EpsTask",
    "edges": "tvcli.learning.tasks.edges:EdgeTask",
    "classify": "tvcli.learning.tasks.classify:ClassifyTask",
    "wsol": "tvcli.learning.tasks.wsol:WsolTask",
}
# The task classes in use: the built-in ones once imported, and any registered.
TASKS: dict[str, type[Task]] = {}


def register_task(name: str, cls: type[Task]) -> None:
    """Makes ``TrainConfig(task=name)`` train with ``cls`` (a task defined outside
    tvcli; the built-in ones are named in :data:`TASK_MODULES`)."""
    TASKS[name] = cls


def task_names() -> list[str]:
    return sorted(set(TASK_MODULES) | set(TASKS))


def task_class(name: str) -> type[Task]:
    """The :class:`Task` subclass registered as ``name`` (ValueError if none)."""
    if name not in TASKS:
        if name not in TASK_MODULES:
            raise ValueError(f"unknown task {name!r}; known: {', '.join(task_names())}")
        module, cls = TASK_MODULES[name].split(":")
        TASKS[name] = getattr(importlib.import_module(module), cls)
    return TASKS[name]


def task_of(model: str) -> str:
    """The task of registered model ``model`` (ValueError if the model is unknown)."""
    from tvcli.models import MODELS

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[model].task


def models_of(task: str) -> str:
    """The registered models of ``task``, comma-separated."""
    from tvcli.models import MODELS

    return ", ".join(n for n, s in MODELS.items() if s.task == task)
