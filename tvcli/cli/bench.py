"""``tvcli bench``: solver timings (paper Table 1 workload, 2-D, sweeps) against peers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tvcli.cli._app import CLIError, app, apply_threads
from tvcli.cli._jsonout import dumps


@app.command("bench")
def bench_cmd(
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes and 3 runs (smoke test)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of "
                                                       "tables."),
    plot: Annotated[Path | None, typer.Option("--plot", help="Also write a PNG of the sweeps "
                                                             "and ratios (needs matplotlib).")]
    = None,
    repeats: int = typer.Option(25, "--repeats", help="Timed runs per entry."),
    section: str = typer.Option("table1,2d,length,batch,variants", "--section",
                                help="Comma list of sections: table1, 2d, length, batch, "
                                     "variants (iso / colour / 3-D TV against scikit-image, "
                                     "pyproximal, proxTV), and the device workloads layer, "
                                     "converged, large (docs/gpu.md)."),
    device: str = typer.Option("all", "--device", help="all (cpu, and cuda when present), "
                                                       "cpu or cuda."),
    no_peers: bool = typer.Option(False, "--no-peers", help="Skip proxTV and cvxpylayers."),
    cvx_batch: int = typer.Option(256, "--cvx-batch", help="Signals cvxpylayers is timed on "
                                                           "(then scaled linearly to 8192)."),
    threads: int | None = typer.Option(None, "--threads", help="torch intra-op threads (default: "
                                                        "torch's)."),
) -> None:
    """Time the TV solvers against proxTV and cvxpylayers.

    The paper's Table 1 workload (forward, backward, every solver and device),
    the 2-D comparison, a length sweep (N = 32 ... 10^6), a batch sweep and the
    isotropic / colour / 3-D variants, next to the peers that are installed
    (pip install 'tvcli\\[bench]').

    Medians of >= 25 runs with the spread; cvxpylayers is timed on a smaller
    batch and extrapolated linearly (every row says so). Nothing is asserted:
    numbers depend on the machine and its load, which is printed with them.
    """
    from tvcli.bench import suite as benchsuite

    secs = tuple(s.strip().lower() for s in section.split(",") if s.strip())
    bad = [s for s in secs if s not in benchsuite.SECTIONS]
    if bad or not secs:
        raise CLIError(f"unknown section {bad[0] if bad else section!r}; choose from "
                       + ", ".join(benchsuite.SECTIONS), 2)
    if repeats < 1:
        raise CLIError("--repeats must be >= 1", 2)
    if cvx_batch < 1:
        raise CLIError("--cvx-batch must be >= 1", 2)
    if threads is not None and threads < 1:
        raise CLIError("--threads must be >= 1", 2)
    if threads is not None:  # clamped to the machine: OpenMP crashes on huge counts
        threads = apply_threads(threads)
    if plot is not None:
        if not plot.parent.exists():
            raise CLIError(f"--plot: folder {plot.parent} does not exist", 2)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install 'tvcli[plot]'", 2) from None
    if device not in ("all", "cpu", "cuda"):
        raise CLIError(f"--device must be all, cpu or cuda, got {device!r}", 2)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda: CUDA is not available; use --device cpu", 2)
    if quick:
        repeats = min(repeats, 3)

    def progress(name: str) -> None:
        print(f"tvcli bench: {name} ...", file=sys.stderr, flush=True)

    with benchsuite.torch_threads(threads):
        result = benchsuite.run(quick=quick, repeats=repeats, peers=not no_peers,
                                sections=secs, cvx_batch=cvx_batch,
                                progress=None if as_json else progress,
                                devices=None if device == "all" else (device,))
    if plot is not None:
        benchsuite.plot(result, str(plot))
        result["plot"] = str(plot)
    if as_json:
        print(dumps(result))  # NaN (entries not measured) becomes null
    else:
        benchsuite.print_report(result)
        if plot is not None:
            print(f"plot written to {plot}")
