"""Checkpoints of a training run: safetensors + JSON, never pickles.

``RUN/ckpt.safetensors`` holds the model and optimizer tensors and the RNG states;
``RUN/ckpt.json`` the step, config, history (validations, ``lam_history``) and the
optimizer's param groups. Both are written atomically (a temporary file, then
``os.replace``), so an interrupted run always finds a whole checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from tvcli.learning.train.config import TrainConfig

__all__ = ["load_checkpoint", "load_model_state", "resumed_model_config", "save_checkpoint"]


def save_checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, dgen: torch.Generator | None, meta: dict) -> None:
    from tvcli._safetensors import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in
               model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng"] = gen.get_state()
    if dgen is not None:
        tensors["rng_device"] = dgen.get_state()
    meta = {**meta, "param_groups": opt_state["param_groups"]}
    tmp = run / "ckpt.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, run / "ckpt.safetensors")
    tmpj = run / "ckpt.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=1))
    os.replace(tmpj, run / "ckpt.json")


def load_checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, dgen: torch.Generator | None) -> dict:
    from tvcli._safetensors import load_file

    tensors = load_file(str(run / "ckpt.safetensors"))
    meta = json.loads((run / "ckpt.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    gen.set_state(tensors["rng"])
    if dgen is not None and "rng_device" in tensors:
        dgen.set_state(tensors["rng_device"])
    return meta


def resumed_model_config(run: Path, cfg: TrainConfig) -> dict:
    """The model settings to build: ``cfg.model_config``, completed by those of the
    run's checkpoint when it has one. A resumed run keeps the architecture it was
    trained with, including settings that own no weights (e.g. dropout rates,
    which a state dict cannot check); a setting this call gives that differs from
    the checkpoint's is an error (ValueError), not a silent change mid-run."""
    ckpt = run / "ckpt.json"
    if not ckpt.exists():
        return dict(cfg.model_config)
    saved = json.loads(ckpt.read_text()).get("model_config") or {}
    clash = {k: (saved[k], v) for k, v in cfg.model_config.items()
             if k in saved and saved[k] != v}
    if clash:
        said = ", ".join(f"{k} {old!r} (asked: {new!r})" for k, (old, new) in clash.items())
        raise ValueError(f"run folder {run} was trained with {said}: resume it with the "
                         "same settings, or give another --out")
    return {**cfg.model_config, **saved}




def load_model_state(run: Path) -> dict[str, torch.Tensor]:
    """The model's state dict of a run folder's checkpoint (``model.*`` tensors of
    ``RUN/ckpt.safetensors``, prefix removed)."""
    from tvcli._safetensors import load_file

    tensors = load_file(str(Path(run) / "ckpt.safetensors"))
    return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
