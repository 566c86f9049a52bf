"""The training side: the loop, run configs, checkpoints, export, data-parallel
training and the GPU job runner. Tasks (data, loss, validation, scoring) live in
:mod:`tvcli.learning.tasks`; the engine (:mod:`tvcli.prox`, :mod:`tvcli.nn`, ...) imports
nothing from here.

* :mod:`tvcli.learning.train.config` -- :class:`TrainConfig`, :func:`make_config` (the
  ``tvcli train`` request, checked against the model and its task);
* :mod:`tvcli.learning.train.loop` -- :func:`train`, resumable, one loop for every task;
* :mod:`tvcli.learning.train.checkpoint` -- safetensors + JSON checkpoints;
* :mod:`tvcli.learning.train.export` -- :func:`export_weights` into ``weights/`` with provenance;
* :mod:`tvcli.learning.train.distributed` -- torchrun / DDP helpers;
* :mod:`tvcli.learning.train.gpu` and :mod:`tvcli.learning.train.gpu_data` -- the GPU
  run's job list, runner and data files (``.ci/gpu_train.sh``).
"""

from tvcli.learning.train.config import TrainConfig, TrainSetupError, make_config
from tvcli.learning.train.export import export_weights, lam_table
from tvcli.learning.train.loop import get_task, train

__all__ = ["TrainConfig", "TrainSetupError", "export_weights", "get_task", "lam_table",
           "make_config", "train"]
