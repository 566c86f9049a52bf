"""``tvcli run MODEL INPUT...``: a learned denoiser or edge-preserving smoother over
files and folders.

Same planning, progress, error and atomic-write rules as ``tvcli smooth``
(:mod:`tvcli.cli.batch`); the model is loaded once, its weights checked against
``weights/manifest.json``, and large images run in overlapping tiles.
"""

from __future__ import annotations

import time
import zlib

import typer

from tvcli.cli._app import INCLUDE_OUTPUTS_HELP, CLIError, app, apply_threads, write_stdout
from tvcli.cli.shard import SHARD_HELP, SUMMARY_HELP


def denoise_array(model, img, *, device: str, tile: int | None, overlap: int,
                  add_noise: float | None = None, seed: int = 0, name: str = "",
                  sigma: float | None = None):
    """Denoises the colour channels of a float32 (H, W, C) image in [0, 1].

    ``sigma`` (0-255 units) is the noise level fed to models with a noise-level
    input (FFDNet-style); the others ignore it.

    Gray images go through the colour network as three equal channels and come
    back as their mean; an alpha channel is passed through. ``add_noise`` (0-255
    units) first adds Gaussian noise from a generator seeded by ``seed`` and the
    file ``name``, so a batch is reproducible file by file.
    Returns (output array, the noisy input actually denoised).
    """
    import numpy as np
    import torch

    from tvcli.models.inference import denoise

    channels = img.shape[2]
    color = channels - 1 if channels in (2, 4) else channels
    x = torch.from_numpy(np.ascontiguousarray(img[:, :, :color].transpose(2, 0, 1)))
    if add_noise:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        x = x + add_noise / 255.0 * torch.randn(x.shape, generator=gen)
    noisy = x.permute(1, 2, 0).numpy()
    inp = x.expand(3, -1, -1) if color == 1 else x
    with torch.inference_mode():
        level = None if sigma is None else sigma / 255.0
        y = denoise(model, inp.to(device), tile=tile, overlap=overlap, sigma=level).cpu()
        if color == 1:
            y = y.mean(0, keepdim=True)
        y = y.clamp_(0, 1).permute(1, 2, 0).numpy()
    out = np.empty_like(img)
    out[:, :, :color] = y
    out[:, :, color:] = img[:, :, color:]
    return out, noisy


def check_tiling(tile: int, overlap: int) -> None:
    """CLIError unless tiles advance by at least ``overlap`` pixels (``tile >= 2 overlap``).

    Tiles start every ``tile - overlap`` pixels: ``--tile 32`` with the default
    ``--overlap 48`` would step by 1 pixel and run the network ~1000x per pixel.
    """
    if tile and tile < 2 * overlap:
        raise CLIError(
            f"--tile {tile} is too small for --overlap {overlap}: tiles would advance by "
            f"{max(1, tile - overlap)} px; use --tile {2 * overlap} or more, a smaller "
            "--overlap, or --tile 0 (whole image)")


def trained_sigma_range(entry: dict) -> tuple[float, float] | None:
    """The noise levels (0-255) a manifest entry's weights were trained for:
    ``sigma_range`` for blind models, ``(sigma, sigma)`` for a fixed-sigma
    model; None for models without a noise level (eps, edges, classifiers)."""
    if entry.get("sigma_range"):
        lo, hi = entry["sigma_range"]
        return float(lo), float(hi)
    if entry.get("sigma") is not None:
        return float(entry["sigma"]), float(entry["sigma"])
    return None


def _range_text(lo_hi: tuple[float, float]) -> str:
    lo, hi = lo_hi
    return f"sigma {lo:g}" if lo == hi else f"sigma {lo:g}-{hi:g}"


def check_trained_sigma(model_name: str, entry: dict, sigma: float, *, force: bool,
                        shipped: list[dict]) -> None:
    """Refuses (CLIError, exit 2) a ``sigma`` outside what the chosen weights were
    trained for, naming a shipped model whose range covers it; with ``force`` it
    only warns.

    A DnCNN trained at sigma 25 run on sigma-50 noise gave 22.2 dB on McMaster
    where ffdnet-tv (trained for 0-55) gave 25.1 dB: silently running it is the
    surprise this prevents. ``shipped``: the manifest entries of the weights
    folder in use; a ``-tv`` model is offered a ``-tv`` alternative first.
    """
    from tvcli.cli._app import warn

    trained = trained_sigma_range(entry)
    if trained is None or trained[0] <= sigma <= trained[1]:
        return
    covering = []
    for other in shipped:
        rng = trained_sigma_range(other)
        if rng is not None and rng[0] <= sigma <= rng[1] and other["model"] != model_name:
            covering.append((other["model"].endswith("-tv") != model_name.endswith("-tv"),
                             other["model"], rng))
    message = (f"--sigma {sigma:g} is outside what {model_name} was trained for "
               f"({_range_text(trained)}; {entry['file']})")
    if covering:
        _, alt, rng = min(covering)
        message += f"; use {alt} ({_range_text(rng)})"
    else:
        message += "; no shipped model is trained for it"
    if force:
        warn(f"{message}; running {model_name} anyway (--force), its output may be poor")
    else:
        raise CLIError(f"{message}, or pass --force to run {model_name} anyway")


@app.command("run", short_help="Denoise, smooth (edge-preserving), detect edges in or "
                                  "classify images with a learned model (see `tvcli models`).")
def run_cmd(
    model_name: str = typer.Argument(..., metavar="MODEL",
                                     help="A learned model (see `tvcli models`): dncnn-tv, "
                                          "dncnn, ffdnet-tv, ffdnet (denoisers); eps-tv, eps "
                                          "(edge-preserving smoothing)."),
    inputs: list[str] = typer.Argument(..., metavar="INPUT", show_default=False,
                                       help="Image files and/or folders; '-' reads stdin."),
    output: str = typer.Option(None, "--output", "-o", metavar="OUT",
                               help="Output file (one input) or folder; '-' writes PNG to "
                                    "stdout. Default: NAME.MODEL.EXT beside each file."),
    sigma: float = typer.Option(25.0, "--sigma", min=0, max=255,
                                help="Noise level of the input (0-255 units): picks the "
                                     "shipped weights trained nearest to it, and is the "
                                     "noise-map input of the FFDNet-style models."),
    add_noise: float = typer.Option(None, "--add-noise", min=0, max=255, metavar="SIGMA",
                                    help="Add Gaussian noise of this std (0-255) first, for "
                                         "demos and evaluation (implies --sigma SIGMA)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --add-noise."),
    tile: int = typer.Option(512, "--tile", min=0,
                             help="Tile side in pixels for memory-bounded inference; 0: "
                                  "whole image at once."),
    overlap: int = typer.Option(None, "--overlap", min=0,
                                help="Pixels shared by tiles (default: the model's, e.g. "
                                     "72 for eps / eps-tv, else 48)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: int = typer.Option(None, "--threads", "-j", min=1, help="CPU threads."),
    recursive: bool = typer.Option(False, "--recursive", "-r"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    skip_existing: bool = typer.Option(False, "--skip-existing",
                                       help="Leave existing outputs alone (resume)."),
    compare: bool = typer.Option(False, "--compare",
                                 help="Also write OUT.compare.EXT: input | output."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
    shard: str = typer.Option(None, "--shard", metavar="K/N|auto", help=SHARD_HELP),
    summary: str = typer.Option(None, "--summary", metavar="FILE.json", help=SUMMARY_HELP),
    include_outputs: bool = typer.Option(False, "--include-outputs",
                                         help=INCLUDE_OUTPUTS_HELP),
    force: bool = typer.Option(False, "--force",
                               help="Run a denoiser even at a --sigma outside the noise "
                                    "levels its weights were trained for (with a warning)."),
    bits: int = typer.Option(None, "--bits", help="Edge models: 8 or 16-bit output maps "
                                                  "(default 8)."),
    thin: bool = typer.Option(False, "--thin", help="Edge models: non-maximum suppression "
                                                    "(one-pixel-wide edges)."),
) -> None:
    """Denoise images with a learned network (DnCNN-TV, the paper's eq. 14; DnCNN;
    the faster FFDNet-style ffdnet-tv / ffdnet, one model for sigma 0-55), smooth
    them while keeping edges (eps-tv, the paper's ResNet-TV; eps, ResNet; --sigma
    does not apply), detect edges (dexined-tv, dexined: PNG edge-probability maps,
    --bits 8/16, --thin for NMS-thinned maps), or classify them (allconv,
    allconv-tv-smooth, allconv-tv-sharp: class and probabilities per image; 32x32
    input, other sizes resized), or localize objects (cam-tv, cam: class, heat-map
    as overlay PNG and 16-bit map, boxes; -o FOLDER; docs/wsol.md).

    Examples:  tvcli run dncnn-tv noisy.png --sigma 25   |
    tvcli run ffdnet-tv photos/ -o clean/ --sigma 50   |
    tvcli run dncnn-tv clean.png --add-noise 25 --compare   |
    tvcli run eps-tv photos/ -o smooth/   |
    tvcli run dexined-tv photos/ -o edges/ --bits 16

    Outputs keep bit depth, alpha, ICC profile, DPI and EXIF where the format can hold
    them; not kept: XMP/IPTC, PNG text and gamma chunks, EXIF in TIFF/BMP, ICC in BMP,
    DPI in WebP (docs/cli.md, I/O guarantees).
    """
    from tvcli.cli import batch
    from tvcli.cli.shard import owner_filter, parse_shard, run_batch, summary_path
    from tvcli.cli.smooth import resolve_device
    from tvcli.models import MODELS, WeightsError, load_pretrained

    try:
        shard_spec = parse_shard(shard)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if model_name not in MODELS:
        raise CLIError(f"unknown model {model_name!r}; known: {', '.join(sorted(MODELS))} "
                       "(see `tvcli models`)")
    from tvcli.cli.classify import is_classifier, run_classifier

    if is_classifier(model_name):  # class + probabilities per image (tvcli.cli.classify)
        code = run_classifier(model_name, inputs, output=output, device=device,
                              threads=threads, recursive=recursive, as_json=as_json,
                              quiet=quiet)
        if code:
            raise typer.Exit(code)
        return
    from tvcli.cli.wsol import is_localizer, run_localizer

    if is_localizer(model_name):  # class + heat-map + boxes per image (tvcli.cli.wsol)
        code = run_localizer(model_name, inputs, output=output, device=device,
                             threads=threads, recursive=recursive, as_json=as_json,
                             quiet=quiet, overwrite=overwrite)
        if code:
            raise typer.Exit(code)
        return
    if overwrite and skip_existing:
        raise CLIError("--overwrite and --skip-existing exclude each other")
    if as_json and output == "-":
        raise CLIError("--json cannot be used with -o - (stdout carries the image)")
    if overlap is not None:  # a default overlap is capped to the tile below
        check_tiling(tile, overlap)
    edge = bool(getattr(MODELS[model_name].builder, "is_edge_detector", False))
    if not edge and (bits is not None or thin):
        raise CLIError(f"--bits and --thin are for edge models; {model_name} is a denoiser")
    if bits is not None and bits not in (8, 16):
        raise CLIError(f"--bits must be 8 or 16, got {bits}")
    if edge and (add_noise is not None or compare):
        raise CLIError("--add-noise and --compare are for denoisers, not edge models")
    if add_noise is not None:
        sigma = add_noise
    skipped: list[str] = []
    try:
        summary_file = summary_path(summary, shard_spec)
        jobs = batch.plan_jobs(inputs, output, model_name, recursive=recursive,
                               overwrite=overwrite, skip_existing=skip_existing,
                               compare=compare,
                               extra_outputs=[summary_file] if summary_file else (),
                               owns=owner_filter(inputs, shard_spec),
                               force_ext=".png" if edge else None,
                               include_outputs=include_outputs, skipped_outputs=skipped)
        batch.refuse_binary_to_terminal(jobs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    batch.note_skipped_outputs(skipped, quiet)
    if not edge:  # before any work: weights trained for another noise level
        from tvcli.models.registry import find_weights, list_weights

        try:
            check_trained_sigma(model_name, find_weights(model_name, sigma), sigma,
                                force=force, shipped=list_weights())
        except (WeightsError, OSError) as exc:
            raise CLIError(str(exc)) from None
    apply_threads(threads)
    dev = resolve_device(device)
    try:
        model, entry = load_pretrained(model_name, None if edge else sigma, device=dev)
    except (WeightsError, OSError) as exc:
        raise CLIError(str(exc)) from None

    if overlap is None:
        overlap = int(getattr(model, "tile_overlap", 48))
        if tile:  # a default overlap never leaves tiles less than half new pixels
            overlap = min(overlap, tile // 2)

    if edge:
        from tvcli.models.inference import EdgeProbability

        prob = EdgeProbability(model).eval()

        def process(job):
            return _edge_job(job, prob, entry, dev, tile or None, overlap, bits or 8, thin)

        code = run_batch("run", inputs, jobs, process, shard=shard_spec, summary=summary,
                         as_json=as_json, quiet=quiet, label=model_name,
                         extra={"model": model_name})
        if code:
            raise typer.Exit(code)
        return

    def process(job):
        return _process_job(job, model, entry, dev, tile or None, overlap, add_noise, seed,
                            sigma)

    code = run_batch("run", inputs, jobs, process, shard=shard_spec, summary=summary,
                     as_json=as_json, quiet=quiet, label=model_name,
                     extra={"model": model_name, "sigma": sigma})
    if code:
        raise typer.Exit(code)


def _process_job(job, model, entry, device, tile, overlap, add_noise, seed, sigma):
    import sys
    from pathlib import Path

    import numpy as np

    from tvcli import io
    from tvcli.cli.batch import STDIO, Record

    start = time.perf_counter()
    job.status("reading")
    if job.source == STDIO:
        img, meta = io.decode_image(sys.stdin.buffer.read(), "<stdin>")
    else:
        img, meta = io.read_image(job.source)
    job.status(f"denoising ({meta.width}x{meta.height})")
    out, noisy = denoise_array(model, img, device=device, tile=tile, overlap=overlap,
                               add_noise=add_noise, seed=seed, name=Path(job.source).name,
                               sigma=sigma)
    job.status("writing")
    if job.target == STDIO:
        stored = io.choose_dtype("png", meta.dtype)
        write_stdout(io.encode_image(out, "png", stored, meta))
    else:
        io.ensure_folder(Path(job.target).parent)
        io.write_image(job.target, out, meta)
    if job.compare is not None:
        before = img.copy()
        color = noisy.shape[2]
        before[:, :, :color] = np.clip(noisy, 0, 1)
        gap = np.ones((img.shape[0], max(4, img.shape[1] // 100), img.shape[2]), np.float32)
        io.write_image(job.compare, np.concatenate([before, gap, out], axis=1), meta)
    return Record(
        input=job.source, output=job.target, status="ok", size=[meta.width, meta.height],
        channels=meta.channels, bit_depth=meta.bit_depth,
        seconds=round(time.perf_counter() - start, 4), compare=job.compare,
        extra={"model": entry["model"], "weights": entry["file"],
               "trained_sigma": entry["sigma"], "sigma_range": entry.get("sigma_range"),
               "sigma": sigma, "added_noise": add_noise},
    )


def edge_map_array(prob_model, img, *, device: str, tile: int | None, overlap: int,
                   thin: bool = False):
    """Edge probability (H, W) float32 in [0, 1] of a float32 (H, W, C) image in
    [0, 1]: gray is repeated to RGB, alpha ignored; ``thin`` applies NMS."""
    import numpy as np
    import torch

    from tvcli.models.inference import denoise

    channels = img.shape[2]
    color = channels - 1 if channels in (2, 4) else channels
    x = torch.from_numpy(np.ascontiguousarray(img[:, :, :color].transpose(2, 0, 1)))
    x = x.expand(3, -1, -1) if color == 1 else x[:3]
    with torch.inference_mode():
        e = denoise(prob_model, x.to(device), tile=tile, overlap=overlap)[0].float().cpu()
    e = e.numpy()
    if thin:
        from tvcli.edge_eval import nms

        e = nms(e).astype(np.float32)
    return np.clip(e, 0, 1)


def _edge_job(job, prob_model, entry, device, tile, overlap, bits, thin):
    import sys
    from pathlib import Path

    from tvcli import io
    from tvcli.cli.batch import STDIO, Record

    start = time.perf_counter()
    if job.source == STDIO:
        img, meta = io.decode_image(sys.stdin.buffer.read(), "<stdin>")
    else:
        img, meta = io.read_image(job.source)
    e = edge_map_array(prob_model, img, device=device, tile=tile, overlap=overlap, thin=thin)
    dtype = "uint16" if bits == 16 else "uint8"
    if job.target == STDIO:
        write_stdout(io.encode_image(e[:, :, None], "png", dtype))
    else:
        io.ensure_folder(Path(job.target).parent)
        try:
            io.write_image(job.target, e, dtype=dtype)
        except io.ImageError as exc:
            raise io.ImageWriteError(f"{job.target}: {exc} (edge maps need PNG or TIFF for "
                                     "16 bits)") from None
    return Record(
        input=job.source, output=job.target, status="ok", size=[meta.width, meta.height],
        channels=1, bit_depth=bits, seconds=round(time.perf_counter() - start, 4),
        compare=None, extra={"model": entry["model"], "weights": entry["file"],
                             "thin": thin},
    )
