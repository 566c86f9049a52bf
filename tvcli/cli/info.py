"""``tvcli info``: versions, built engines, threads and devices."""

from __future__ import annotations

import json
import platform
from importlib import metadata

import typer

from tvcli.cli._app import app


def collect_info() -> dict:
    """Facts about this installation, as a JSON-serialisable dict."""
    import torch

    import tvcli
    from tvcli._extension import _IMPORT_ERROR, HAS_EXT

    cuda = torch.cuda.is_available()
    image_io = {}
    for dist in ("pillow", "imagecodecs", "pypng", "tifffile"):
        try:
            image_io[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            image_io[dist] = None
    return {
        "tvcli": tvcli.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "engine_built": HAS_EXT,
        "engine_error": _IMPORT_ERROR,
        "engines": tvcli.built_backends(),
        "threads": torch.get_num_threads(),
        "parallel_info": torch.__config__.parallel_info().splitlines()[0:3],
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "image_io": [f"{k} {v or 'missing'}" for k, v in image_io.items()],
        "devices": ["cpu"]
        + ([f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
           if cuda else []),
    }


@app.command()
def info(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show versions, which engines are built (cpu, cuda), threads and devices."""
    data = collect_info()
    if as_json:
        print(json.dumps(data))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in data.items():
        if key == "engine_error" and value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        table.add_row(f"[bold]{key}[/bold]", str(value))
    Console().print(table)
