"""Learned TV-augmented networks and their registry of shipped weights."""

from tvcli.models.dncnn import DnCNN, DnCNNTV
from tvcli.models.eps import EpsResNet, EpsResNetTV
from tvcli.models.registry import (
    MODELS,
    ModelSpec,
    WeightsError,
    build_model,
    list_weights,
    load_pretrained,
)

__all__ = ["DnCNN", "DnCNNTV", "EpsResNet", "EpsResNetTV", "MODELS", "ModelSpec", "WeightsError",
           "build_model",
           "list_weights", "load_pretrained"]
