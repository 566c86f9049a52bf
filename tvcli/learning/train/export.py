"""From a finished run to a shipped weights file: :func:`export_weights`.

The model part of the run's checkpoint is written as
``WEIGHTS/<model>-<tag>.safetensors`` (tag from the task, e.g. ``s25``, ``blind``,
``bsds``) and recorded in ``WEIGHTS/manifest.json`` with its provenance: the budget
(steps, batch, wall time, CPU threads, seed), the data digest, the last validation,
the sha256 checked on load, and the learned lams over training (:func:`lam_table`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tvcli.learning.train.checkpoint import load_model_state
from tvcli.learning.train.config import TrainConfig

__all__ = ["export_weights", "lam_table"]


def lam_table(lam_history: list[dict]) -> dict:
    """A compact, column-wise form of a run's ``lam_history`` (for manifests and
    tables): ``{"steps": [...], "layers": {name: {"channels": C, "mean": [...],
    "min": [...], "max": [...]}}}``, mean / min / max over the layer's channels
    (equal for a shared lam), one value per recorded step, 6 significant digits."""
    steps = [int(r["step"]) for r in lam_history]
    layers: dict[str, dict] = {}
    for r in lam_history:
        for name, vals in r["lams"].items():
            col = layers.setdefault(name, {"channels": len(vals), "mean": [], "min": [],
                                           "max": []})
            col["mean"].append(float(f"{sum(vals) / len(vals):.6g}"))
            col["min"].append(float(f"{min(vals):.6g}"))
            col["max"].append(float(f"{max(vals):.6g}"))
    for col in layers.values():
        if col["channels"] == 1:  # a shared lam: min = max = mean
            del col["min"], col["max"]
    return {"steps": steps, "layers": layers}


def export_weights(run: str | Path, weights_dir: str | Path, name: str | None = None,
                   extra: dict | None = None) -> dict:
    """Writes a run's final model as ``weights_dir/<model>-<tag>.safetensors`` (tag
    from the task, e.g. ``s25`` or ``blind``) and records it in
    ``weights_dir/manifest.json`` (``extra`` fields are added to the entry);
    returns the manifest entry."""
    import hashlib

    from tvcli._safetensors import save_file
    from tvcli.learning.tasks import task_class

    run, weights_dir = Path(run), Path(weights_dir)
    meta = json.loads((run / "ckpt.json").read_text())
    cfg_d = meta["config"]
    cfg = TrainConfig(**{k: v for k, v in cfg_d.items()
                         if k in TrainConfig.__dataclass_fields__})
    task = task_class(cfg.task)(cfg)
    state = task.export_state(load_model_state(run))
    fname = f"{name or cfg.model}-{task.export_tag()}.safetensors"
    weights_dir.mkdir(parents=True, exist_ok=True)
    tmp = weights_dir / (fname + ".tmp")
    fields = task.manifest_fields()
    save_file(state, str(tmp), metadata={"model": cfg.model, "task": cfg.task,
                                         "sigma": str(cfg.sigma_range or cfg.sigma)})
    os.replace(tmp, weights_dir / fname)
    os.chmod(weights_dir / fname, 0o644)  # a shipped, read-only artefact for everyone
    digest = hashlib.sha256((weights_dir / fname).read_bytes()).hexdigest()
    last = meta["history"][-1] if meta["history"] else {}
    threads = meta.get("threads")
    entry = {
        "model": cfg.model, "file": fname, **fields,
        "config": meta["model_config"], "data_digest": meta["data_digest"],
        "steps": meta["step"], "batch": cfg.batch, "patch": cfg.patch,
        "wall_s": round(meta["wall_s"], 1), "seed": cfg.seed,
        **({"threads": threads[0] if len(threads) == 1 else threads} if threads else {}),
        "lr": cfg.lr, **({"task_config": cfg.task_config} if cfg.task_config else {}),
        f"{task.metric}_crop" if cfg.task == "denoise" else task.metric: last.get(task.metric),
        "sha256": digest, "trained_with": "tvcli train", "device": cfg.device,
        **({"task": cfg.task} if cfg.task != "denoise" else {}),
        **({"init_from": Path(cfg.init_from).name} if cfg.init_from else {}),
        **({"lam_history": lam_table(meta["lam_history"])} if meta.get("lam_history")
           else {}),
        **(extra or {}),
    }
    man_path = weights_dir / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.exists() else {"weights": []}
    man["weights"] = [e for e in man["weights"] if e["file"] != fname] + [entry]
    man["weights"].sort(key=lambda e: (e["model"], e.get("sigma") if e.get("sigma") is not None
                                       else -1))
    tmpm = weights_dir / "manifest.json.tmp"
    tmpm.write_text(json.dumps(man, indent=1) + "\n")
    os.replace(tmpm, man_path)
    return entry
