"""Learned TV-augmented networks and their registry of shipped weights.

The registry (:data:`MODELS`, :func:`list_weights`) imports no torch: ``tvcli models``
lists it at once. The network classes are imported on first use.
"""

from __future__ import annotations

import importlib

from tvcli.models.registry import (
    MODELS,
    ModelSpec,
    WeightsError,
    build_model,
    list_weights,
    load_pretrained,
)

_LAZY = {"DnCNN": "tvcli.models.dncnn", "DnCNNTV": "tvcli.models.dncnn",
         "EpsResNet": "tvcli.models.eps", "EpsResNetTV": "tvcli.models.eps"}

__all__ = ["DnCNN", "DnCNNTV", "EpsResNet", "EpsResNetTV", "MODELS", "ModelSpec", "WeightsError",
           "build_model", "list_weights", "load_pretrained"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tvcli.models' has no attribute {name!r}")
