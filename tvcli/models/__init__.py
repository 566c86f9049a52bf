"""Learned TV-augmented networks and their registry of shipped weights."""

from tvcli.models.dncnn import DnCNN, DnCNNTV
from tvcli.models.registry import (
    MODELS,
    ModelSpec,
    WeightsError,
    build_model,
    list_weights,
    load_pretrained,
)

__all__ = ["DnCNN", "DnCNNTV", "MODELS", "ModelSpec", "WeightsError", "build_model",
           "list_weights", "load_pretrained"]
