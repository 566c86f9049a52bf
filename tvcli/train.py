"""Training of the learned denoisers (``tvcli train``).

Random patches from the recipe's training images (``tvcli data fetch``), the 8
dihedral flips/rotations, additive white Gaussian noise of a fixed sigma (or,
for models with a noise-level input, a sigma drawn per patch from
``sigma_range``: one blind-range model), MSE loss, Adam with a cosine
learning-rate schedule. Everything random is drawn from one seeded generator
whose state is checkpointed, so a run resumed after an interruption continues
exactly as if it had not stopped.

Checkpoints are safetensors (model and optimizer tensors, the RNG state) plus a
JSON file (step, config, history): no pickles anywhere.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tvcli.models.inference import apply_model
from tvcli.models.registry import build_model

__all__ = ["TrainConfig", "load_images", "train", "validate", "export_weights"]


@dataclass
class TrainConfig:
    """Settings of one training run. ``sigma`` is in 0-255 units; with
    ``sigma_range = [lo, hi]`` (models with a noise-level input only) each patch
    gets a sigma drawn uniformly from it, and ``sigma`` is the validation level."""

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


def load_images(folder: Path, channels: int = 3) -> list[torch.Tensor]:
    """All PNG images of ``folder`` as float32 (channels, H, W) tensors in [0, 1]."""
    from PIL import Image

    out = []
    for path in sorted(Path(folder).glob("*.png")):
        img = np.asarray(Image.open(path).convert("RGB" if channels == 3 else "L"))
        t = torch.from_numpy(img.astype(np.float32) / 255.0)
        out.append(t.permute(2, 0, 1).contiguous() if t.dim() == 3 else t.unsqueeze(0))
    if not out:
        raise FileNotFoundError(f"no PNG images in {folder} (run `tvcli data fetch` first)")
    return out


def _sample_batch(images: list[torch.Tensor], weights: torch.Tensor, batch: int, patch: int,
                  gen: torch.Generator) -> torch.Tensor:
    """(batch, C, patch, patch) random crops, each flipped/rotated at random."""
    idx = torch.multinomial(weights, batch, replacement=True, generator=gen)
    crops = []
    for i in idx.tolist():
        img = images[i]
        h, w = img.shape[-2:]
        ph, pw = min(patch, h), min(patch, w)
        y = int(torch.randint(0, h - ph + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - pw + 1, (1,), generator=gen))
        crop = img[:, y:y + ph, x:x + pw]
        k = int(torch.randint(0, 8, (1,), generator=gen))
        crop = torch.rot90(crop, k % 4, dims=(1, 2))
        if k >= 4:
            crop = crop.flip(2)
        crops.append(crop)
    return torch.stack(crops)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float((a - b).pow(2).mean())
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


@torch.no_grad()
def validate(model: nn.Module, images: list[torch.Tensor], sigma: float, crop: int | None,
             device: str, seed: int = 1234) -> float:
    """Mean PSNR over ``images`` (center-cropped to ``crop``) with fixed-seed noise."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    scores = []
    for img in images:
        if crop:
            h, w = img.shape[-2:]
            y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            img = img[:, y:y + crop, x:x + crop]
        noisy = img + sigma / 255.0 * torch.randn(img.shape, generator=gen)
        out = apply_model(model, noisy.unsqueeze(0).to(device), sigma / 255.0)
        out = out.squeeze(0).cpu().clamp(0, 1)
        scores.append(psnr(out, img))
    model.train(was_training)
    return float(np.mean(scores))


def _save_checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator, meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in
               model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["rng"] = gen.get_state()
    meta = {**meta, "param_groups": opt_state["param_groups"]}
    tmp = run / "ckpt.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, run / "ckpt.safetensors")
    tmpj = run / "ckpt.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=1))
    os.replace(tmpj, run / "ckpt.json")


def _load_checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer,
                     gen: torch.Generator) -> dict:
    from safetensors.torch import load_file

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
    return meta


def train(cfg: TrainConfig, progress: bool = True, log=print,
          stop_at: int | None = None) -> dict:
    """Runs (or resumes) training; returns the last checkpoint's metadata.

    ``stop_at`` ends this call after that step (with a checkpoint), as an
    interruption would; a later call with the same config resumes exactly.
    """
    torch.manual_seed(cfg.seed)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data)
    manifest = json.loads((data / "manifest.json").read_text())
    train_imgs = load_images(data / "train")
    val_imgs = load_images(data / "val")
    weights = torch.tensor([float(im.shape[-1] * im.shape[-2]) for im in train_imgs])
    model = build_model(cfg.model, **cfg.model_config).to(cfg.device)
    if cfg.sigma_range is not None:
        if not getattr(model, "takes_sigma", False):
            raise ValueError(f"model {cfg.model!r} has no noise-level input: train it with "
                             "one --sigma, not a range")
        lo, hi = (float(v) for v in cfg.sigma_range)
        if not 0 <= lo <= hi:
            raise ValueError(f"sigma range must satisfy 0 <= lo <= hi, got {cfg.sigma_range}")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = {"config": asdict(cfg), "step": 0, "wall_s": 0.0, "history": [],
            "data_digest": manifest["digest"], "model_config": getattr(model, "config", {})}
    if (run / "ckpt.json").exists():
        meta = _load_checkpoint(run, model, opt, gen)
        meta["config"] = asdict(cfg)  # e.g. more --steps than the first run asked for
        log(f"resumed {cfg.model} at step {meta['step']} from {run}")
    sigma = cfg.sigma / 255.0
    model.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=meta["step"], desc=cfg.model, unit="step",
                   dynamic_ncols=True)
    last_val = meta["history"][-1]["val_psnr"] if meta["history"] else float("nan")
    t_start = time.perf_counter() - meta["wall_s"]
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    while meta["step"] < end:
        step = meta["step"]
        lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        clean = _sample_batch(train_imgs, weights, cfg.batch, cfg.patch, gen)
        if cfg.sigma_range is None:
            level = torch.full((clean.shape[0],), sigma)
        else:
            level = (lo + (hi - lo) * torch.rand(clean.shape[0], generator=gen)) / 255.0
        noisy = clean + level.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=gen)
        clean, noisy = clean.to(cfg.device), noisy.to(cfg.device)
        loss = nn.functional.mse_loss(apply_model(model, noisy, level.to(cfg.device)), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meta["step"] = step + 1
        meta["wall_s"] = time.perf_counter() - t_start
        if meta["step"] % cfg.val_every == 0 or meta["step"] == cfg.steps:
            last_val = validate(model, val_imgs, cfg.sigma, cfg.val_crop, cfg.device)
            meta["history"].append({"step": meta["step"], "loss": loss.item(),
                                    "val_psnr": last_val, "wall_s": meta["wall_s"]})
        if meta["step"] % cfg.ckpt_every == 0 or meta["step"] == end:
            _save_checkpoint(run, model, opt, gen, meta)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2e}", val_psnr=f"{last_val:.2f}", lr=f"{lr:.1e}")
    if bar is not None:
        bar.close()
    return meta


def export_weights(run: Path, weights_dir: Path, name: str | None = None) -> dict:
    """Writes a run's final model as ``weights_dir/<model>-s<sigma>.safetensors`` and
    records it in ``weights_dir/manifest.json``; returns the manifest entry."""
    import hashlib

    from safetensors.torch import load_file, save_file

    meta = json.loads((run / "ckpt.json").read_text())
    cfg = meta["config"]
    tensors = load_file(str(run / "ckpt.safetensors"))
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    srange = cfg.get("sigma_range")
    tag = "blind" if srange else f"s{int(cfg['sigma'])}"
    fname = f"{name or cfg['model']}-{tag}.safetensors"
    weights_dir.mkdir(parents=True, exist_ok=True)
    tmp = weights_dir / (fname + ".tmp")
    save_file(state, str(tmp), metadata={"model": cfg["model"],
                                         "sigma": str(srange or cfg["sigma"])})
    os.replace(tmp, weights_dir / fname)
    os.chmod(weights_dir / fname, 0o644)  # a shipped, read-only artefact for everyone
    digest = hashlib.sha256((weights_dir / fname).read_bytes()).hexdigest()
    entry = {
        "model": cfg["model"], "file": fname, "sigma": None if srange else cfg["sigma"],
        **({"sigma_range": srange, "val_sigma": cfg["sigma"]} if srange else {}),
        "config": meta["model_config"], "data_digest": meta["data_digest"],
        "steps": meta["step"], "batch": cfg["batch"], "patch": cfg["patch"],
        "wall_s": round(meta["wall_s"], 1), "seed": cfg["seed"],
        "val_psnr_crop": meta["history"][-1]["val_psnr"] if meta["history"] else None,
        "val_crop": cfg["val_crop"], "sha256": digest,
        "trained_with": "tvcli train", "device": cfg["device"],
    }
    man_path = weights_dir / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.exists() else {"weights": []}
    man["weights"] = [e for e in man["weights"] if e["file"] != fname] + [entry]
    man["weights"].sort(key=lambda e: (e["model"], e["sigma"] if e["sigma"] is not None else -1))
    tmpm = weights_dir / "manifest.json.tmp"
    tmpm.write_text(json.dumps(man, indent=1) + "\n")
    os.replace(tmpm, man_path)
    return entry
