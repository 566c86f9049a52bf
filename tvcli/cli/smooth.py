"""``tvcli smooth`` and ``tvcli sharpen``: TV-filter image files and folders.

Both commands share their options and their driver, :func:`run_filter`. Heavy
modules (torch, numpy, the image codecs) are imported only when a command runs, so that
``tvcli --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import typer

from tvcli.cli._app import (
    INCLUDE_OUTPUTS_HELP,
    METADATA_NOTE,
    CLIError,
    app,
    apply_threads,
    clamp_cli_threads,
    write_stdout,
)
from tvcli.cli.shard import (
    SHARD_HELP,
    SUMMARY_HELP,
    owner_filter,
    parse_shard,
    run_batch,
    summary_path,
)

LAM_HELP = ("TV weight in [0, 1] intensity units, the same for 8-bit, 16-bit and float "
            "images. Typical with the default colour TV: 0.05 / 0.1 / 0.23 against noise "
            "of sigma 15 / 25 / 50 (of 255), larger for a cartoon look; --tv aniso "
            "smooths more at the same lam (about 0.6x the value). 0 = unchanged.")
# float32's largest value: a larger --lam is solved as inf (tvcli.cli.tvfilter.solver_lam).
_FLOAT32_MAX = 3.4028234663852886e38
_DTYPE_OF_DEPTH = {"keep": None, "8": "uint8", "16": "uint16", "float": "float32"}
# Converged smoothing (2-D and --tv iso) stops on a certified RMS error bound; the
# default is the loosest bound whose output a user cannot tell from the exact prox
# at the output's precision (benchmarks/cli_tol.py, docs/cli.md "Converged
# smoothing: defaults"): on photos of Kodak24, CBSD68 and BSDS500 at lam 0.02-0.5,
# outputs differ from a float64 solve to 1e-7 by at most one level. Anisotropic TV:
# 8-bit at 5e-4 (1e-3 gave two levels on some), 16-bit at 3e-6 (1e-5 gave up to
# four on whole photos at lam 0.02). Isotropic (colour) TV, whose dual solver's
# actual error sits further below its bound: 8-bit at 5e-4, 16-bit at 1e-5 (3e-5
# gave two). One level on ~1 % of samples remains at any tolerance: float32 and
# float64 round samples that lie on a level boundary to different sides. Float
# outputs get the 16-bit tolerance. The study's tolerances are in the former bound,
# sqrt(2 gap / n); the bound is now sqrt(gap / n) (sqrt(2) tighter, csrc/core/
# tv_common.h), so the same stops are at tol / sqrt(2), rounded down: 3.5e-4 for
# 5e-4, 2e-6 for 3e-6, 7e-6 for 1e-5. Isotropic 8-bit was studied again under the
# merged-region certificate (2026-12-07; its bound sits 2-7x closer to the actual
# error): 5e-4 kept every output within one level (45 photo crops, 48 whole photos,
# 12 noisy crops at the tuned lams), 7e-4 gave two levels on one whole photo, 1e-3
# on 14 solves. Keys: (tv, 8-bit output?).
DEFAULT_TOLS = {("aniso", True): 3.5e-4, ("aniso", False): 2e-6,
                ("iso", True): 5e-4, ("iso", False): 7e-6}
# A cap on iterations so that a hard image cannot run for long; text mode says when
# a cap stopped a solve, with its certified error bound. Anisotropic: photos needed
# up to 65 iterations at 5e-4 and 321 at 1e-6 (200 bound a 12-megapixel photo at
# about 8 CPU-minutes, one thread). Isotropic: the dual solver takes many more,
# cheaper iterations, and its tail is slow: on 256^2 photo crops up to 680 at 5e-4
# and 16725 at 1e-5 (lam 0.23, ~210 CPU s per megapixel: for 16-bit outputs
# --tv aniso is ~15x cheaper).
DEFAULT_MAX_ITERS = {("aniso", True): 200, ("aniso", False): 2000,
                     ("iso", True): 2000, ("iso", False): 20000}


def _tol_text(v: float) -> str:
    """A tolerance as --help writes it: 3.5e-4, 5e-4, 2e-6."""
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def default_tol(stored: str, tv: str = "aniso") -> float:
    """The default ``--tol`` for an output stored as ``stored`` ("uint8", "uint16",
    "float32") of TV model ``tv``: at most one level from the exact prox (8-bit
    levels for 8-bit outputs, 16-bit levels else)."""
    return DEFAULT_TOLS[tv, stored == "uint8"]


def default_max_iter(stored: str, tv: str = "aniso") -> int:
    """The default ``--max-iter`` for an output stored as ``stored`` of model ``tv``."""
    return DEFAULT_MAX_ITERS[tv, stored == "uint8"]


# The default TV model of smooth / sharpen: isotropic colour TV (--tv iso --color
# joint). Chosen by measurement (benchmarks/tv_variants_defaults.py, docs/tv_variants.md
# "Choosing the defaults"): on Kodak24 + CBSD68 at sigma 15 / 25 / 50, each model at
# its tuned lam, colour TV was 0.5-1.2 dB PSNR (and 0.014-0.09 SSIM) above
# anisotropic, isotropic-per-channel TV and scikit-image on average, and above each
# of them on every one of the 84 scored image / sigma pairs (256^2 crops and whole
# images). --iters and --mode rows/cols keep anisotropic TV.
DEFAULT_TV = "iso"


def resolve_tv(tv: str | None, color: str | None, mode: str,
               iters: int | None) -> tuple[str, str]:
    """The TV model when --tv / --color are not given: iso (colour TV: --color joint)
    for the converged 2-D and volume operators; aniso where only it exists (--iters,
    --mode rows/cols). An unset --color is joint for iso and separate for aniso."""
    if tv is None:
        tv = DEFAULT_TV if mode == "2d" and iters is None else "aniso"
    if color is None:
        color = "joint" if tv == "iso" else "separate"
    return tv, color


def parse_lam(text: str) -> float:
    """``--lam`` as a float >= 0; CLIError (exit 2) otherwise."""
    try:
        lam = float(text)
    except ValueError:
        raise CLIError(f"--lam must be a number >= 0, got {text!r}") from None
    if math.isnan(lam) or lam < 0:
        raise CLIError(f"--lam must be a number >= 0, got {text!r}")
    return lam


def resolve_device(device: str, ops: tuple[str, ...] = ("prox_tv1d",)) -> str:
    """'auto' -> 'cuda' where usable else 'cpu'; CLIError for an unusable 'cuda'.

    ``ops``: the compiled ops (``tvcli::<op>``) the work runs on. 'auto' picks
    CUDA only when every one of them has CUDA kernels: otherwise the work would
    take the slow route there (e.g. the 2-D operator as a Python loop over the
    1-D op), which is slower than the CPU engine.
    """
    import torch

    from tvcli._extension import ext_has_device

    if device == "cpu":
        return "cpu"
    usable = torch.cuda.is_available()
    if device == "auto":
        native = all(ext_has_device("cuda", op) for op in ops)
        return "cuda" if usable and native else "cpu"
    if device != "cuda":
        raise CLIError(f"--device must be auto, cpu or cuda, got {device!r}")
    if not usable:
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "no CUDA GPU is visible")
        raise CLIError(f"--device cuda: CUDA is not available ({why}); use --device cpu")
    return "cuda"


def ops_for_mode(mode: str, iters: int | None) -> tuple[str, ...]:
    """The compiled op behind ``--mode`` (2d: paper mode with --iters, else converged)."""
    if mode != "2d":
        return ("prox_tv1d",)
    return ("prox_tv2d_dykstra",) if iters is not None else ("prox_tv2d_solve",)


def check_solver(solver: str, device: str) -> None:
    """CLIError when ``solver`` is unknown or not built into this installation."""
    import torch

    import tvcli

    if solver not in tvcli.SOLVERS:
        raise CLIError(f"--solver must be one of {', '.join(tvcli.SOLVERS)}, got {solver!r}")
    try:
        tvcli.prox_tv1d(torch.zeros(1, 2, device=device), 0.1, solver=solver)
    except (RuntimeError, NotImplementedError) as exc:
        raise CLIError(f"--solver {solver} is not available here: "
                       f"{str(exc).removeprefix('tvcli: ')}") from None


def _tv2d_takes_solver() -> bool:
    """Whether this build's prox_tv2d accepts a ``solver`` argument."""
    import inspect

    import tvcli

    return "solver" in inspect.signature(tvcli.prox_tv2d).parameters


def run_filter(
    operation: str,
    inputs: list[str],
    output: str | None,
    lam_text: str,
    mode: str,
    iters: int | None,
    tol: float | None,
    max_iter: int | None,
    solver: str,
    device: str,
    threads: int | None,
    bit_depth: str,
    recursive: bool,
    overwrite: bool,
    skip_existing: bool,
    compare: bool,
    compare_out: str | None,
    as_json: bool,
    quiet: bool,
    shard: str | None = None,
    summary: str | None = None,
    tv: str | None = None,
    color: str | None = None,
    include_outputs: bool = False,
    volume: bool = False,
    lam_map: str | None = None,
) -> int:
    """Checks the options, plans the jobs, runs them (this ``shard``'s share, see
    :mod:`tvcli.cli.shard`); returns the exit status."""
    lam = parse_lam(lam_text)
    try:
        shard_spec = parse_shard(shard)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if mode not in ("2d", "rows", "cols"):
        raise CLIError(f"--mode must be 2d, rows or cols, got {mode!r}")
    if overwrite and skip_existing:
        raise CLIError("--overwrite and --skip-existing exclude each other")
    if iters is not None and tol is not None:
        raise CLIError("give --iters (fixed iterations) or --tol (converged), not both")
    if mode != "2d" and (iters is not None or tol is not None or max_iter is not None):
        raise CLIError("--iters, --tol and --max-iter apply to --mode 2d only "
                       "(rows and cols are exact)")
    tv, color = resolve_tv(tv, color, mode, iters)
    if tv not in ("aniso", "iso"):
        raise CLIError(f"--tv must be aniso or iso, got {tv!r}")
    if color not in ("separate", "joint"):
        raise CLIError(f"--color must be separate or joint, got {color!r}")
    if tv == "iso" and (mode != "2d" or iters is not None):
        raise CLIError("--tv iso is a converged 2-D operator: not with --mode rows/cols "
                       "or --iters")
    if color == "joint" and tv != "iso":
        raise CLIError("--color joint needs --tv iso (anisotropic TV has no channel "
                       "coupling)")
    if volume and (mode != "2d" or iters is not None):
        raise CLIError("--volume is a converged 3-D operator: not with --mode rows/cols or "
                       "--iters")
    if volume and output == "-":
        raise CLIError("--volume writes TIFF stacks to files; give -o FILE.tif, not -o -")
    if lam_map is not None and (mode != "2d" or iters is not None):
        raise CLIError("--lam-map needs the converged operator: not with --mode rows/cols or "
                       "--iters")
    if lam_map is not None and not lam <= _FLOAT32_MAX:  # solved as inf (tvfilter.solver_lam)
        raise CLIError("--lam inf cannot be combined with --lam-map (a map holding zeros "
                       "would make 0 x inf); give a finite --lam")
    if bit_depth not in _DTYPE_OF_DEPTH:
        raise CLIError(f"--bit-depth must be keep, 8, 16 or float, got {bit_depth!r}")
    if as_json and output == "-":
        raise CLIError("--json cannot be used with -o - (stdout carries the image)")

    from tvcli.cli import batch, fast_filter
    from tvcli.cli.tvfilter import FilterSettings, has_prox_tv2d
    from tvcli.threads import default_threads

    weights = None if lam_map is None else read_lam_map(lam_map, volume)
    skipped: list[str] = []
    try:
        summary_file = summary_path(summary, shard_spec)
        jobs = batch.plan_jobs(
            inputs, output, operation, recursive=recursive, overwrite=overwrite,
            skip_existing=skip_existing, compare=compare, compare_out=compare_out,
            extra_outputs=[summary_file] if summary_file else (),
            owns=owner_filter(inputs, shard_spec), include_outputs=include_outputs,
            skipped_outputs=skipped, extensions=_TIFF_EXTENSIONS if volume else None,
            extra_inputs=[lam_map] if lam_map is not None else ())
        batch.refuse_binary_to_terminal(jobs)
        if volume:
            refuse_non_tiff_outputs(jobs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if any(j.target == batch.STDIO for j in jobs) and as_json:
        raise CLIError("--json cannot be used when the image goes to stdout; give -o FILE")
    batch.note_skipped_outputs(skipped, quiet)

    cpu_threads = None
    if fast_filter.usable(device, mode, iters, tv, lam_map, solver):
        # The default model on the CPU: solved without importing torch (~1.3 s of a
        # small image's run), by tvcli._core on torch's thread count.
        dev = "cpu"
        cpu_threads = default_threads() if threads is None else clamp_cli_threads(threads)
    else:
        apply_threads(threads)
        dev = resolve_device(device, ops_for_mode(mode, iters))
        if mode == "2d" and not has_prox_tv2d():
            raise CLIError("--mode 2d needs tvcli.prox_tv2d, which this build lacks; "
                           "use --mode rows or --mode cols")
        if solver != "direct":
            check_solver(solver, dev)
            if mode == "2d" and not _tv2d_takes_solver():
                raise CLIError("--solver applies to --mode rows / cols; the 2-D operator "
                               "picks its own inner 1-D solver")
    # tol / max_iter None: the defaults for each output's sample type (process_job,
    # process_volume_job)
    settings = FilterSettings(operation, lam, mode, iters, tol, max_iter, solver, dev, tv,
                              color, volume, weights, lam_map, cpu_threads)
    dtype = _DTYPE_OF_DEPTH[bit_depth]
    process = process_volume_job if volume else process_job
    return run_batch(operation, inputs, jobs, lambda job: process(job, settings, dtype),
                     shard=shard_spec, summary=summary, as_json=as_json, quiet=quiet,
                     label=operation)


_TIFF_EXTENSIONS = (".tif", ".tiff")


def refuse_non_tiff_outputs(jobs) -> None:
    """--volume: marks the jobs whose result or comparison is not a .tif / .tiff file
    (a per-file error: a stack has no other format here)."""
    from pathlib import Path

    from tvcli.cli.batch import STDIO

    for job in jobs:
        if job.error is not None or job.skip or job.target == STDIO:
            continue
        for out in (job.target, job.compare):
            if out is not None and Path(out).suffix.lower() not in _TIFF_EXTENSIONS:
                job.error = (f"{job.source}: --volume writes TIFF stacks; {out} is not a "
                             ".tif / .tiff file")
                break


def read_lam_map(path: str, volume: bool):
    """The ``--lam-map`` file as float64 weights in [0, 1] units of --lam: (H, W), or
    (Z, H, W) with ``volume`` (a one-page map: Z = 1, the same for every slice).

    8-bit maps are divided by 255 and 16-bit ones by 65535 (white = 1: the weight
    there is --lam; black = 0: no smoothing across that pixel's differences);
    float TIFF maps are used as stored and must be >= 0. The map must be grey: an
    RGB file is accepted when its three channels are equal (a grey picture saved
    as RGB); a colour map or an alpha channel is refused (CLIError, exit 2).
    """
    import numpy as np

    from tvcli import io

    try:
        if volume and io.sniff_format(_head(path)) == "tiff":
            arr, meta = io.read_volume(path)
            channels = meta.channels
        else:
            img, meta2 = io.read_image(path)
            arr, channels = img[None], meta2.channels
    except (io.ImageError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(f"--lam-map: {msg}") from None
    if channels in (2, 4):
        raise CLIError(f"--lam-map {path}: has an alpha channel; the map must be one grey "
                       "channel")
    if channels == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1])
                and np.array_equal(arr[..., 0], arr[..., 2])):
            raise CLIError(f"--lam-map {path}: is a colour image; the map must be grey (one "
                           "weight per pixel; an RGB file with three equal channels is "
                           "accepted)")
    weights = np.asarray(arr[..., 0], dtype=np.float64)
    if (weights < 0).any():
        raise CLIError(f"--lam-map {path}: holds negative values; weights must be >= 0")
    return weights if volume else weights[0]


def _head(path: str) -> bytes:
    """The first bytes of ``path`` (for the format sniffer); b'' if unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError:
        return b""


def check_map_size(weights, shape: tuple[int, ...], source: str, map_path: str) -> None:
    """ValueError (a per-file error) when the --lam-map does not fit the image:
    (H, W) must equal the image's; a volume's map has 1 or Z slices."""
    if weights is None:
        return
    if weights.shape[-2:] != tuple(shape[-2:]) or (
            len(shape) == 3 and weights.shape[0] not in (1, shape[0])):
        def size(s):
            return f"{s[-1]}x{s[-2]}" + (f"x{s[0]}" if len(s) == 3 else "")

        raise ValueError(f"{source}: --lam-map {map_path} is {size(weights.shape)} but the "
                         f"image is {size(tuple(shape))} (width x height"
                         f"{' x slices' if len(shape) == 3 else ''}); they must match")


def process_job(job, settings, dtype: str | None):
    """Reads, filters and writes one job; returns its :class:`batch.Record`."""
    from pathlib import Path

    import numpy as np

    from tvcli import io
    from tvcli.cli.batch import STDIO, Record
    from tvcli.cli.fast_filter import apply_to_image

    start = time.perf_counter()
    job.status("reading")
    try:
        if job.source == STDIO:
            img, meta = io.decode_image(sys.stdin.buffer.read(), "<stdin>")
        else:
            img, meta = io.read_image(job.source)
    except io.UnsupportedFormatError as exc:
        if "multi-page TIFF" in str(exc) or "3-D TIFF" in str(exc):
            raise io.UnsupportedFormatError(
                f"{exc}; tvcli {settings.operation} --volume smooths it as a 3-D stack "
                "(pages are never dropped)") from None
        raise
    if settings.lam_map is not None:
        check_map_size(settings.lam_map, img.shape[:2], job.source, _map_name(settings))
    t_read = time.perf_counter()
    # The output's sample type, known before solving: it sets the default --tol (and
    # an impossible --bit-depth for the format fails here, before the work).
    fmt = "png" if job.target == STDIO else io.format_from_path(job.target)
    stored = io.choose_dtype(fmt, dtype or meta.dtype, strict=dtype is not None)
    settings = _with_default_tol(settings, stored)
    # Without a comparison picture the input array is not needed afterwards.
    out, facts = apply_to_image(img, settings, inplace=job.compare is None, status=job.status)
    t_solve = time.perf_counter()
    job.status("writing")
    if job.target == STDIO:
        write_stdout(io.encode_image(out, "png", stored, meta))
        written = io.ImageMeta("png", stored, meta.width, meta.height, meta.channels)
    else:
        io.ensure_folder(Path(job.target).parent)
        written = io.write_image(job.target, out, meta, dtype=dtype)
    if job.compare is not None:  # (img is intact: filter_image ran out of place)
        gap = np.ones((img.shape[0], max(4, img.shape[1] // 100), img.shape[2]), np.float32)
        side = np.concatenate([img, gap, out], axis=1)
        io.write_image(job.compare, side, meta, dtype=written.dtype)
    t_write = time.perf_counter()
    return Record(
        input=job.source, output=job.target, status="ok", size=[meta.width, meta.height],
        channels=meta.channels, bit_depth=written.bit_depth, lam=settings.lam,
        iterations=facts.pop("iterations", None),
        seconds=round(time.perf_counter() - start, 4), compare=job.compare,
        extra={"operation": settings.operation, "mode": settings.mode,
               **({"tol": settings.tol} if settings.tol is not None else {}),
               "input_bit_depth": meta.bit_depth, **facts, **_tv_fields(settings),
               "timings": _timings(start, t_read, t_solve, t_write)},
    )


def _with_default_tol(settings, stored: str):
    """``settings`` with an unset --tol / --max-iter replaced by the defaults for an
    output of sample type ``stored`` (converged modes only)."""
    if settings.mode != "2d" or settings.iters is not None:
        return settings
    tv = settings.tv
    return dataclasses.replace(
        settings, tol=default_tol(stored, tv) if settings.tol is None else settings.tol,
        max_iter=default_max_iter(stored, tv) if settings.max_iter is None
        else settings.max_iter)


def _timings(start: float, t_read: float, t_solve: float, t_write: float) -> dict:
    """The JSON record's read / solve / write seconds from perf_counter stamps."""
    return {"read": round(t_read - start, 4), "solve": round(t_solve - t_read, 4),
            "write": round(t_write - t_solve, 4)}


def _map_name(settings) -> str:
    return settings.lam_map_path or "(map)"


def _tv_fields(settings) -> dict:
    """The JSON record's fields for the TV model: tv, color, volume, lam_map."""
    return {"tv": settings.tv, "color": settings.color, "volume": settings.volume,
            "lam_map": settings.lam_map_path}


def process_volume_job(job, settings, dtype: str | None):
    """``--volume``: reads a TIFF stack, filters it with 3-D TV, writes a multi-page
    TIFF of the input's sample type (or ``dtype``) and shape; returns its Record."""
    from pathlib import Path

    import numpy as np

    from tvcli import io
    from tvcli.cli.batch import STDIO, Record
    from tvcli.cli.fast_filter import apply_to_volume

    start = time.perf_counter()
    job.status("reading")
    if job.source == STDIO:
        vol, meta = io.decode_volume(sys.stdin.buffer.read(), "<stdin>")
    else:
        vol, meta = io.read_volume(job.source)
    if settings.lam_map is not None:
        check_map_size(settings.lam_map, vol.shape[:3], job.source, _map_name(settings))
    t_read = time.perf_counter()
    stored = dtype or meta.dtype
    settings = _with_default_tol(settings, stored)
    out, facts = apply_to_volume(vol, settings, status=job.status)
    t_solve = time.perf_counter()
    job.status("writing")
    io.ensure_folder(Path(job.target).parent)
    written = io.write_volume(job.target, out, meta, dtype=stored)
    if job.compare is not None:  # input | output side by side, slice by slice
        gap = np.ones((*vol.shape[:2], max(4, vol.shape[2] // 100), vol.shape[3]), vol.dtype)
        io.write_volume(job.compare, np.concatenate([vol, gap, out], axis=2), meta,
                        dtype=stored)
    t_write = time.perf_counter()
    return Record(
        input=job.source, output=job.target, status="ok", size=[meta.width, meta.height],
        channels=meta.channels, bit_depth=written.bit_depth, lam=settings.lam,
        iterations=facts.pop("iterations", None),
        seconds=round(time.perf_counter() - start, 4), compare=job.compare,
        extra={"operation": settings.operation, "mode": "3d", "depth": meta.depth,
               "dtype": written.dtype, "input_dtype": meta.dtype,
               "input_bit_depth": meta.bit_depth, **facts, **_tv_fields(settings),
               "timings": _timings(start, t_read, t_solve, t_write)},
    )


def _register(operation: str, summary: str) -> None:
    """Registers ``tvcli <operation>`` with the shared options."""

    def command(
        inputs: list[str] = typer.Argument(
            ..., metavar="INPUT", show_default=False,
            help="Image files and/or folders; '-' reads one image from stdin."),
        output: str = typer.Option(
            None, "--output", "-o", metavar="OUT",
            help="Output file (one input), or folder (several inputs or a folder: the "
                 "input tree is mirrored); '-' writes PNG to stdout. Default: "
                 f"NAME.{operation}.EXT beside each file, FOLDER-{operation}/ for a "
                 "folder, stdout for stdin."),
        lam: str = typer.Option("0.1", "--lam", "-l", metavar="LAM", help=LAM_HELP),
        mode: str = typer.Option(
            "2d", "--mode", "-m", help="2d: anisotropic 2-D TV; rows / cols: exact 1-D TV "
                                       "along each row / column."),
        iters: int = typer.Option(
            None, "--iters", min=1, help="Run exactly K Dykstra iterations (the paper's "
                                         "layer) instead of converging. 2d only."),
        tol: float = typer.Option(
            None, "--tol", min=0.0, help="Converged 2-D mode: stop when the certified RMS error "
                                         "is below this, in [0, 1] units. Default, iso / aniso: "
                                         f"{_tol_text(DEFAULT_TOLS['iso', True])} / "
                                         f"{_tol_text(DEFAULT_TOLS['aniso', True])} for 8-bit "
                                         f"outputs, {_tol_text(DEFAULT_TOLS['iso', False])} / "
                                         f"{_tol_text(DEFAULT_TOLS['aniso', False])} for "
                                         "16-bit and float ones: at most one level from the "
                                         "exact result."),
        max_iter: int = typer.Option(None, "--max-iter", min=1,
                                     help="Cap on 2-D iterations when converging "
                                          "(default: aniso 200 for 8-bit outputs, 2000 "
                                          "else; iso 2000 and 20000)."),
        solver: str = typer.Option("direct", "--solver",
                                   help="1-D solver for rows / cols: direct or pn."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        threads: int = typer.Option(None, "--threads", "-j", min=1,
                                    help="CPU threads (default: torch's)."),
        bit_depth: str = typer.Option(
            "keep", "--bit-depth", help="Output samples: keep (the input's, where the "
                                        "format allows), 8, 16 or float (TIFF)."),
        recursive: bool = typer.Option(False, "--recursive", "-r",
                                       help="Descend into subfolders of folder inputs."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
        skip_existing: bool = typer.Option(
            False, "--skip-existing", help="Leave existing outputs alone (resume a batch)."),
        compare: bool = typer.Option(
            False, "--compare", help="Also write OUT.compare.EXT: before | after, side by "
                                     "side."),
        compare_out: str = typer.Option(None, "--compare-out", metavar="FILE",
                                        help="Write the side-by-side picture here (one "
                                             "input)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON record per file on "
                                                           "stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
        shard: str = typer.Option(None, "--shard", metavar="K/N|auto", help=SHARD_HELP),
        summary: str = typer.Option(None, "--summary", metavar="FILE.json",
                                    help=SUMMARY_HELP),
        tv: str = typer.Option(
            None, "--tv", show_default=False,
            help="iso (isotropic: round shapes; the default) or aniso (the paper's: "
                 "|row diff| + |column diff|; the only one for --iters and --mode "
                 "rows/cols, and their default)."),
        color: str = typer.Option(
            None, "--color", show_default=False,
            help="With --tv iso: joint (colour TV, one norm over the channels: edges line "
                 "up across them; the default) or separate (each channel alone). "
                 "aniso: separate."),
        include_outputs: bool = typer.Option(False, "--include-outputs",
                                             help=INCLUDE_OUTPUTS_HELP),
        volume: bool = typer.Option(
            False, "--volume", help="TIFF stacks (multi-page or 3-D TIFF): 3-D TV over "
                                    "(slices, rows, columns); written as a TIFF stack of the "
                                    "same sample type and shape. Folders: .tif/.tiff only."),
        lam_map: str = typer.Option(
            None, "--lam-map", metavar="FILE",
            help="Per-pixel weights from a grey image of the input's size: the weight at a "
                 "pixel is LAM x map (8/16-bit: white = LAM, black = 0, no smoothing "
                 "there; float TIFF: as stored). With --volume a one-page map applies to "
                 "every slice, or give a stack of the same depth."),
    ) -> None:
        code = run_filter(operation, inputs, output, lam, mode, iters, tol, max_iter, solver,
                          device, threads, bit_depth, recursive, overwrite, skip_existing,
                          compare, compare_out, as_json, quiet, shard, summary, tv, color,
                          include_outputs, volume, lam_map)
        if code:
            raise typer.Exit(code)

    command.__doc__ = f"{summary}\n\n{METADATA_NOTE}"
    app.command(operation)(command)


_register("smooth", """Smooth images with total variation (edge-preserving, flattens noise).

Examples:  tvcli smooth photo.png --lam 0.1   |   tvcli smooth photos/ -o out/ -r
|   cat a.png | tvcli smooth - --lam 0.05 > b.png""")
_register("sharpen", """Sharpen images with total variation: 2 x - prox(x).

Examples:  tvcli sharpen photo.png --lam 0.05   |   tvcli sharpen photos/ -o out/""")
