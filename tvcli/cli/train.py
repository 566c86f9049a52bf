"""``tvcli train`` and ``tvcli models``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from tvcli.cli._app import CLIError, app, apply_threads


def _float_pair(text: str | None, rule: str) -> list[float] | None:
    """``"A,B"`` -> ``[A, B]`` (None stays None); anything else is a CLIError saying
    ``rule`` (the range itself is checked by make_config)."""
    if text is None:
        return None
    try:
        pair = [float(v) for v in text.split(",")]
    except ValueError:
        pair = []
    if len(pair) != 2:
        raise CLIError(f"{rule}, got {text!r}")
    return pair


@app.command("train")
def train_cmd(
    model: str = typer.Argument(..., help="Architecture (see `tvcli models`); it decides "
                                "the task: denoisers, eps*, dexined*, allconv*."),
    data: Path = typer.Option(..., "--data", help="Denoisers: a `tvcli data fetch` folder "
                              "(or .pack); eps*: a `tvcli data eps` folder; dexined*: "
                              "BSDS500; allconv*: the CIFAR-10 JPEG .tar.gz or its folder."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder (checkpoints; resumes "
                             "if it holds one). Default: runs/MODEL-TAG (TAG: sSIGMA or "
                             "blind for denoisers, else the task)."),
    sigma: float = typer.Option(None, "--sigma", min=0, max=255,
                                help="Denoisers: noise std in 0-255 units, default 25 (the "
                                "validation level with --sigma-range)."),
    sigma_range: str = typer.Option(None, "--sigma-range", metavar="LO,HI",
                                    help="Blind-range training for models with a "
                                    "noise-level input (ffdnet, ffdnet-tv): each patch "
                                    "gets a sigma drawn uniformly from [LO, HI] (0-255)."),
    steps: int = typer.Option(3000, "--steps", min=1,
                              help="Optimizer steps in total. Rerunning a run folder with "
                              "more steps continues it, the cosine schedule stretched over "
                              "the new total."),
    batch: int = typer.Option(None, "--batch", min=1,
                              help="Samples per step (default: 16 denoise/eps, 4 edges, 32 "
                              "classify); under torchrun per process (the global batch is "
                              "WORLD_SIZE x BATCH; see docs/scaling.md)."),
    patch: int = typer.Option(None, "--patch", min=8, help="Crop side, pixels (default 40; "
                              "160 for edges; not for classifiers: 32x32 images)."),
    lr: float = typer.Option(1e-3, "--lr", help="Initial learning rate (cosine to 1e-5)."),
    seed: int = typer.Option(0, "--seed"),
    val_every: int = typer.Option(None, "--val-every", min=1,
                                  help="Validate every N steps (default 250; 100 edges)."),
    ckpt_every: int = typer.Option(None, "--ckpt-every", min=1,
                                   help="Checkpoint every N steps (default 100; 50 edges "
                                   "and classify)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(None, "--threads", min=1,
                                help="CPU threads for torch (default: torch's choice); "
                                "recorded in the checkpoint and the manifest."),
    depth: int = typer.Option(None, "--depth", min=3,
                              help="Denoisers: conv layers (default: the model's: 17 for "
                              "DnCNN, 10 for FFDNet)."),
    width: int = typer.Option(None, "--width", min=4, help="Feature channels (default: the "
                              "model's; 16 for DexiNed, the shipped width)."),
    dropout: str = typer.Option(None, "--dropout", metavar="IN,MID",
                                help="Classifiers: input and mid-network dropout (default "
                                "All-CNN-C's 0.2,0.5; 0,0 trains faster on short budgets)."),
    train_per_class: int = typer.Option(None, "--train-per-class", min=1,
                                        help="Classifiers: train on the first N images of "
                                        "each class (smoke runs); default all."),
    val_per_class: int = typer.Option(None, "--val-per-class", min=1,
                                      help="Classifiers: validate on the first N test "
                                      "images of each class; default all."),
    val_images: int = typer.Option(None, "--val-images", min=1,
                                   help="eps*: validation photos (default 20)."),
    val_hold: int = typer.Option(None, "--val-hold", min=1,
                                 help="dexined*: BSDS500 val images held out for validation "
                                 "(default 10; the rest trains)."),
    lam_init: float = typer.Option(None, "--lam-init",
                                   help="Models with TV layers: the initial lam of every "
                                   "TV layer (default: the model's; e.g. 0.05 for "
                                   "dexined-tv and allconv-tv-*), in the units of the "
                                   "layer's input."),
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
    """Train any registered model; its registry entry picks the task: denoisers on
    random noisy patches, eps / eps-tv on the substitute EPS benchmark, dexined /
    dexined-tv on BSDS500 edges, allconv* on CIFAR-10. Checkpoints let it resume;
    validations record each TV layer's learned lam (`ckpt.json`, `lam_history`).

    Data-parallel on several processes / GPUs / nodes: launch it with torchrun
    (e.g. `torchrun --standalone --nproc_per_node=4 -m tvcli train ...`);
    rank 0 writes checkpoints and exports. See docs/scaling.md.
    """
    import torch

    from tvcli.learning.train import TrainSetupError, export_weights, make_config, train

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError("--device cuda asked for, but no CUDA device is available")
    srange = _float_pair(sigma_range, "--sigma-range must be LO,HI with 0 <= LO <= HI <= 255")
    drop = _float_pair(dropout, "--dropout must be IN,MID with 0 <= p < 1")
    try:
        cfg = make_config(model, data, out, steps=steps, batch=batch, patch=patch, lr=lr,
                          seed=seed, val_every=val_every, ckpt_every=ckpt_every,
                          device=device, width=width, depth=depth, sigma=sigma,
                          sigma_range=srange, init_from=init_from, max_wall=max_wall,
                          dropout=drop, lam_init=lam_init,
                          task_options={"train_per_class": train_per_class,
                                        "val_per_class": val_per_class,
                                        "val_images": val_images, "val_hold": val_hold})
    except TrainSetupError as exc:
        raise CLIError(str(exc)) from None
    apply_threads(threads)  # clamped to the machine (issue 27)
    try:
        meta = train(cfg, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:  # bad data found while loading it
        raise CLIError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    from tvcli.learning.train.distributed import is_main_process, launched

    if is_main_process():  # under torchrun, rank 0 alone reports and exports
        last = meta["history"][-1] if meta["history"] else {}
        print(json.dumps({"model": model, "task": cfg.task, "run": cfg.out,
                          "step": meta["step"], "wall_s": round(meta["wall_s"], 1),
                          **{k: v for k, v in last.items() if k.startswith("val_")}}))
        if export is not None:
            entry = export_weights(Path(cfg.out), export)
            print(f"wrote {export / entry['file']} (sha256 {entry['sha256'][:12]}...)")
    if launched():
        # Done, written and the process group left. torch 2.14.1's gloo can still
        # abort a rank while the interpreter finalizes ("terminate called without an
        # active exception", SIGABRT: ~1 in 8 clean 2-rank runs here, which fails
        # the whole torchrun job), so a torchrun rank skips finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


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
                if w.get("task") in ("edges", "classify", "wsol"):  # no noise level / PSNR
                    top1, box = w.get("val_top1"), w.get("val_maxboxacc")
                    rows.append((name, "-", w["file"], str(w["steps"]),
                                 f"{w['wall_s'] / 60:.0f} min",
                                 f"top-1 {top1:.1f} %" if top1 is not None else
                                 f"MaxBoxAccV2 {box:.1f}" if box is not None else "-"))
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
          "crops, or top-1 (classifiers, test split), or MaxBoxAccV2 (localizers, "
          "train-fullsup), during training; full results in "
          "docs/denoising.md, docs/eps.md, docs/edges.md, docs/classification.md and docs/wsol.md")
