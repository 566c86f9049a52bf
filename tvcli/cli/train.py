"""``tvcli train`` and ``tvcli models``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from tvcli.cli._app import CLIError, app


@app.command("train")
def train_cmd(
    model: str = typer.Argument(..., help="Architecture (see `tvcli models`)."),
    data: Path = typer.Option(..., "--data", help="Folder made by `tvcli data fetch` (or "
                              "`tvcli data eps` for the edge-preserving models)."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder (checkpoints; resumes "
                             "if it holds one). Default: runs/MODEL-sSIGMA, or "
                             "runs/MODEL-blind with --sigma-range."),
    sigma: float = typer.Option(25.0, "--sigma", min=0, max=255,
                                help="Noise std in 0-255 units (the validation level "
                                "with --sigma-range)."),
    sigma_range: str = typer.Option(None, "--sigma-range", metavar="LO,HI",
                                    help="Blind-range training for models with a "
                                    "noise-level input (ffdnet, ffdnet-tv): each patch "
                                    "gets a sigma drawn uniformly from [LO, HI] (0-255)."),
    steps: int = typer.Option(3000, "--steps", min=1,
                              help="Optimizer steps in total. Rerunning a run folder with "
                              "more steps continues it, the cosine schedule stretched over "
                              "the new total."),
    batch: int = typer.Option(16, "--batch", min=1,
                              help="Patches per step; under torchrun per process (the "
                              "global batch is WORLD_SIZE x BATCH; see docs/scaling.md)."),
    patch: int = typer.Option(40, "--patch", min=8, help="Patch side, pixels."),
    lr: float = typer.Option(1e-3, "--lr", help="Initial learning rate (cosine to 1e-5)."),
    seed: int = typer.Option(0, "--seed"),
    val_every: int = typer.Option(250, "--val-every", min=1),
    ckpt_every: int = typer.Option(100, "--ckpt-every", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    depth: int = typer.Option(None, "--depth", min=3,
                              help="Conv layers (default: the model's: 17 for DnCNN, 10 "
                              "for FFDNet)."),
    width: int = typer.Option(None, "--width", min=4, help="Feature channels (default 64)."),
    init_from: Path = typer.Option(None, "--init-from", help="Start from these model "
                                   "weights (a safetensors file, e.g. a shipped one): a "
                                   "warm start, recorded in the manifest."),
    max_wall: float = typer.Option(None, "--max-wall", min=1,
                                   help="Stop (checkpointed) after this many seconds of "
                                   "training; the schedule still spans --steps."),
    export: Path = typer.Option(None, "--export", help="When done, write the weights and "
                                "their manifest entry into this folder (e.g. weights/)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a model: denoisers on random noisy patches; eps / eps-tv on the substitute
    EPS benchmark's photos and ground truths. Checkpoints let it resume.

    Data-parallel on several processes / GPUs / nodes: launch it with torchrun
    (e.g. `torchrun --standalone --nproc_per_node=4 -m tvcli train ...`);
    rank 0 writes checkpoints and exports. See docs/scaling.md.
    """
    import torch

    from tvcli.models import MODELS
    from tvcli.train import TrainConfig, export_weights, train

    if model not in MODELS:
        raise CLIError(f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
    if getattr(MODELS[model].builder, "is_edge_detector", False):
        raise CLIError(f"{model} is an edge detector: train it on BSDS500 with "
                       "benchmarks/edges_train.py (docs/edges.md)")
    if not (data / "manifest.json").exists():
        raise CLIError(f"{data} has no manifest.json: run `tvcli data fetch {data}` first")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError("--device cuda asked for, but no CUDA device is available")
    srange = None
    if sigma_range is not None:
        try:
            srange = [float(v) for v in sigma_range.split(",")]
        except ValueError:
            srange = []
        if len(srange) != 2 or not 0 <= srange[0] <= srange[1] <= 255:
            raise CLIError(f"--sigma-range must be LO,HI with 0 <= LO <= HI <= 255, got "
                           f"{sigma_range!r}")
        if not getattr(MODELS[model].builder, "takes_sigma", False):
            raise CLIError(f"model {model!r} has no noise-level input; give one --sigma")
    if init_from is not None and not init_from.is_file():
        raise CLIError(f"--init-from {init_from}: no such file")
    task = getattr(MODELS[model].builder, "train_task", "denoise")
    if task != "denoise" and (srange is not None or depth is not None):
        raise CLIError(f"model {model!r} is trained for {task!r}: --sigma-range and --depth "
                       "do not apply")
    tag = task if task != "denoise" else ("blind" if srange else f"s{int(sigma)}")
    out = out or Path("runs") / f"{model}-{tag}"
    model_config = {k: v for k, v in (("depth", depth), ("width", width)) if v is not None}
    cfg = TrainConfig(model=model, data=str(data), out=str(out), sigma=sigma,
                      sigma_range=srange, steps=steps, batch=batch, patch=patch, lr=lr,
                      seed=seed, val_every=val_every, ckpt_every=ckpt_every, device=device,
                      model_config=model_config,
                      init_from=str(init_from) if init_from else None, max_wall_s=max_wall,
                      task=task)
    try:
        meta = train(cfg, progress=not quiet)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    from tvcli.distributed import is_main_process

    if not is_main_process():
        return  # under torchrun, rank 0 reports and exports
    last = meta["history"][-1] if meta["history"] else {}
    print(json.dumps({"model": model, "run": str(out), "step": meta["step"],
                      "wall_s": round(meta["wall_s"], 1),
                      **{k: v for k, v in last.items() if k.startswith("val_")}}))
    if export is not None:
        entry = export_weights(out, export)
        print(f"wrote {export / entry['file']} (sha256 {entry['sha256'][:12]}...)")


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the learned models, their shipped weights and provenance."""
    from tvcli.models import MODELS, list_weights

    weights = list_weights()
    if as_json:
        print(json.dumps({"models": {k: v.description for k, v in MODELS.items()},
                          "weights": weights}, indent=1))
        return
    rows = []
    for name in MODELS:
        mine = [w for w in weights if w["model"] == name] or [None]
        for w in mine:
            if w is None:
                rows.append((name, "-", "no weights shipped", "-", "-", "-"))
            else:
                if w.get("task") == "edges":  # an edge detector: no noise level, no PSNR
                    rows.append((name, "-", w["file"], str(w["steps"]),
                                 f"{w['wall_s'] / 60:.0f} min", "-"))
                    continue
                sig = (f"{w['sigma']:g}" if w.get("sigma") is not None else
                       "{:g}-{:g} (blind)".format(*w["sigma_range"]) if w.get("sigma_range")
                       else "-")
                val = (f"{w['val_psnr_crop']:.2f}" if w.get("val_psnr_crop") is not None else
                       f"WRMSE {w['val_wrmse']:.2f}" if w.get("val_wrmse") is not None else "-")
                rows.append((name, sig, w["file"], str(w["steps"]),
                             f"{w['wall_s'] / 60:.0f} min", val))
    header = ("model", "sigma", "file", "steps", "train time", "val PSNR*")
    if not sys.stdout.isatty():
        # Piped: tab-separated and never cut to a terminal width (rich would fold
        # or ellipsize long names at its default 80 columns).
        for row in (header, *rows):
            print("\t".join(row))
        for name, spec in MODELS.items():
            print(f"{name}: {spec.description}")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="tvcli models")
        for col in header:
            table.add_column(col, no_wrap=col in ("model", "file"))
        for row in rows:
            table.add_row(*row)
        console = Console()
        console.print(table)
        for name, spec in MODELS.items():
            console.print(f"[bold]{name}[/bold]: {spec.description}", highlight=False)
    print("* validation PSNR (denoisers) or WRMSE (eps models, 8-bit levels) on center "
          "crops during training; full results in docs/denoising.md and docs/eps.md")
