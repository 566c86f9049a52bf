"""Applies a TV smoothing or sharpening to one image array (the CLI's compute step).

Kept free of file handling so that tests can compare the CLI's output with a
direct library call on the same array.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

MODES = ("2d", "rows", "cols")
# Images up to this many colour samples are filtered in one batched call.
_BATCH_SAMPLES = 4 * 1024 * 1024
OPERATIONS = ("smooth", "sharpen")


@dataclass(frozen=True)
class FilterSettings:
    """What to compute. ``lam`` is in [0, 1] intensity units.

    ``iters`` None means the converged 2-D operator (stop at ``tol``); an integer
    runs exactly that many Dykstra iterations (the paper's layer). ``rows`` and
    ``cols`` are exact 1-D proxes along image rows / columns.

    ``volume``: 3-D TV over (slices, rows, columns) of a stack (:func:`filter_volume`).
    ``cpu_threads``: see :mod:`tvcli.cli.fast_filter` (None: not the torch-free path).
    ``lam_map``: per-pixel weights in [0, 1] units of ``lam`` (the weight at a
    pixel is ``lam * lam_map``), float (H, W), or (Z, H, W) / (1, H, W) for a
    volume; None: ``lam`` everywhere. Converged modes only.
    """

    operation: str = "smooth"
    lam: float = 0.1
    mode: str = "2d"
    iters: int | None = None
    tol: float | None = 1e-4  # None only with iters (paper mode) or rows / cols
    max_iter: int | None = None
    solver: str = "direct"
    device: str = "cpu"
    tv: str = "aniso"
    color: str = "separate"
    volume: bool = False
    lam_map: np.ndarray | None = field(default=None, compare=False, repr=False)
    lam_map_path: str | None = None
    # Set by the command line when it left torch out (tvcli.cli.fast_filter): the
    # CPU threads of the torch-free solver, and of torch should it be needed.
    cpu_threads: int | None = None


def has_prox_tv2d() -> bool:
    """Whether this tvcli build has the 2-D operator."""
    import tvcli

    return hasattr(tvcli, "prox_tv2d")


def _summarize_info(info: object) -> dict:
    """Iterations (max over channels), stop reason and error bound from prox_tv2d's info."""
    import torch

    out: dict = {}
    iterations = getattr(info, "iterations", None)
    if isinstance(iterations, torch.Tensor):
        out["iterations"] = int(iterations.max()) if iterations.numel() else 0
    elif iterations is not None:
        out["iterations"] = int(iterations)
    if getattr(info, "stop", None) is not None:
        out["stop"] = str(info.stop)
    bound = getattr(info, "error_bound", None)
    if isinstance(bound, torch.Tensor) and bound.numel() and not bool(bound.isnan().any()):
        out["error_bound"] = float(bound.max())
    return out


# The largest float32: the solvers compute in float32, and any larger lam (finite
# or not) already gives the same result, the flat limit, so it is passed as inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def solver_lam(lam: float) -> float:
    """``lam`` as the float32 solvers take it: values above float32's range -> inf.

    For [0, 1] images every lam far smaller than that (about the image's size in
    pixels) already gives the flat limit, which is what inf computes exactly.
    """
    return lam if lam <= _FLOAT32_MAX else float("inf")


def _lam_weights(settings: FilterSettings, x):
    """``lam``, or with a map the weights ``lam * map`` as a tensor broadcastable to
    ``x`` ((C, H, W), or (C, Z, H, W) for a volume), in x's dtype and device."""
    import torch

    lam = solver_lam(settings.lam)
    if settings.lam_map is None:
        return lam
    # float64 product, then x's dtype: the solver computes its state in float64.
    w = torch.from_numpy(np.asarray(settings.lam_map, dtype=np.float64)) * lam
    return w.to(device=x.device, dtype=x.dtype)


def _prox(x, settings: FilterSettings):
    """prox of a (C, H, W) tensor, or (C, Z, H, W) with ``settings.volume``; returns
    (y, info dict: iterations, stop, error_bound)."""
    import tvcli

    lam = _lam_weights(settings, x)
    if settings.volume or settings.lam_map is not None:
        # 3-D TV, or weight maps: tvcli.prox_tv (the compiled 2-D engine takes one lam
        # per image). --color joint: one norm over the channels (colour TV).
        joint = settings.tv == "iso" and settings.color == "joint" and x.shape[0] > 1
        dims = (-3, -2, -1) if settings.volume else (-2, -1)
        y, info = tvcli.prox_tv(x, lam, dims=dims, norm=settings.tv,
                                channel_dim=0 if joint else None, tol=settings.tol,
                                max_iter=settings.max_iter or 5000, return_info=True)
        return y, _summarize_info(info)
    if settings.mode == "rows":
        return tvcli.prox_tv1d(x, lam, dim=-1, solver=settings.solver), {}
    if settings.mode == "cols":
        return tvcli.prox_tv1d(x, lam, dim=-2, solver=settings.solver), {}
    if settings.mode != "2d":
        raise ValueError(f"unknown mode {settings.mode!r}; expected one of {MODES}")
    if settings.tv == "iso":
        # Isotropic TV (tvcli.prox_tv); --color joint: one norm over the channels.
        joint = settings.color == "joint" and x.shape[0] > 1
        y, info = tvcli.prox_tv(x, lam, norm="iso", channel_dim=0 if joint else None,
                                tol=settings.tol, max_iter=settings.max_iter or 5000,
                                return_info=True)
        return y, _summarize_info(info)
    prox_tv2d = tvcli.prox_tv2d
    kwargs: dict = {"iters": settings.iters, "return_info": True}
    if settings.tol is not None:
        kwargs["tol"] = settings.tol
    if settings.max_iter is not None:
        kwargs["max_iter"] = settings.max_iter
    if "solver" in inspect.signature(prox_tv2d).parameters:
        kwargs["solver"] = settings.solver
    y, info = prox_tv2d(x, lam, dims=(-2, -1), **kwargs)
    return y, _summarize_info(info)


def _merge_facts(per_group: list[dict]) -> dict:
    """One summary for the image: most iterations, worst bound, worst stop reason."""
    merged: dict = {}
    for facts in per_group:
        if "iterations" in facts:
            merged["iterations"] = max(merged.get("iterations", 0), facts["iterations"])
        if "error_bound" in facts:
            merged["error_bound"] = max(merged.get("error_bound", 0.0), facts["error_bound"])
        if "stop" in facts and merged.get("stop") != "max_iter":
            merged["stop"] = facts["stop"]
    return merged


def _status_text(c0: int, group: int, color: int, done: list[dict],
                 settings: FilterSettings) -> str:
    """'channel 2/3 (so far 83 iterations)' for the live progress line."""
    what = {"2d": "2-D TV" if settings.iters is None else f"{settings.iters} Dykstra "
            "iterations", "rows": "rows", "cols": "columns"}[settings.mode]
    part = (f"channel {c0 + 1}/{color}" if group == 1 else
            f"{color} channels" if color > 1 else "1 channel")
    its = [f["iterations"] for f in done if "iterations" in f]
    so_far = f" (previous channels: {', '.join(map(str, its))} iterations)" \
        if its and settings.iters is None else ""
    return f"{what}, {part}{so_far}"


def filter_image(
    img: np.ndarray, settings: FilterSettings, *, inplace: bool = False,
    status: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Smooths or sharpens the colour channels of a float32 (H, W, C) image.

    Each colour channel is filtered on its own (``settings.color == "joint"``: the
    colour channels together, colour TV); an alpha channel (C = 2 or 4)
    is copied through untouched. Sharpening is ``2 x - prox(x)`` (paper eq. 4);
    both are the identity at lam = 0. ``status`` is called with a short phrase
    before each solver call (which channel, iterations so far), for a live
    progress line. With ``inplace`` the result overwrites
    ``img`` (one image-sized buffer less at the solver's peak; each channel
    group is copied out before it is overwritten).

    Returns:
        (filtered float32 (H, W, C) array, solver facts: for 2d ``iterations``
        (max over channels), ``stop`` ("tol", "max_iter", "iters") and, when
        converged, ``error_bound`` (certified RMS error); empty for rows/cols,
        which are exact and not iterative).
    """
    import torch

    channels = img.shape[2]
    color = channels - 1 if channels in (2, 4) else channels
    out = img if inplace else np.empty_like(img)
    per_group: list[dict] = []
    # Small images: all colour channels in one call (the engine parallelises over
    # images, and per-call overhead is paid once: ~2x less CPU on a 256^2 RGB photo).
    # Large images: one channel at a time, so that the solver's temporaries scale with
    # one channel (a 24-megapixel RGB photo: ~1 GB less peak memory in 2-D mode).
    # Channels are independent problems, so the results are the same either way.
    # Colour TV (--color joint) couples the channels: always one call.
    group = color if (img.shape[0] * img.shape[1] * color <= _BATCH_SAMPLES
                      or settings.color == "joint") else 1
    with torch.inference_mode():
        for c0 in range(0, color, group):
            if status is not None:
                status(_status_text(c0, group, color, per_group, settings))
            chw = np.ascontiguousarray(img[:, :, c0:c0 + group].transpose(2, 0, 1))
            x = torch.from_numpy(chw).to(settings.device)
            y, facts = _prox(x, settings)
            if settings.operation == "sharpen":
                y = y.mul_(-1).add_(x, alpha=2)  # 2x - prox(x) in place (rounds as 2*x - y)
            elif settings.operation != "smooth":
                raise ValueError(f"unknown operation {settings.operation!r}")
            out[:, :, c0:c0 + group] = y.permute(1, 2, 0).cpu().numpy()
            per_group.append(facts)
            del x, y, chw
    if color < channels and not inplace:
        out[:, :, color:] = img[:, :, color:]
    facts = _merge_facts(per_group)
    return out, facts


def filter_volume(
    vol: np.ndarray, settings: FilterSettings, *, status: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Smooths or sharpens a (Z, H, W, C) stack with 3-D TV over (Z, H, W).

    ``vol`` is float32 or float64 (kept: a float64 stack is solved and returned in
    float64). Colour channels are separate problems, or one colour-TV problem with
    ``settings.color == "joint"`` (needs ``tv == "iso"``); an alpha channel (C = 2
    or 4) is copied through. Large stacks are solved one channel at a time, as in
    :func:`filter_image`. Only the converged operator (``settings.iters`` None,
    mode 2d) applies.

    Returns:
        (filtered (Z, H, W, C) array of ``vol``'s dtype, solver facts as
        :func:`filter_image`'s).
    """
    import torch

    if settings.mode != "2d" or settings.iters is not None:
        raise ValueError("a volume takes the converged 3-D operator only (no --iters, "
                         "no --mode rows/cols)")
    settings = settings if settings.volume else replace(settings, volume=True)
    channels = vol.shape[3]
    color = channels - 1 if channels in (2, 4) else channels
    out = np.empty_like(vol)
    per_group: list[dict] = []
    group = color if (vol[..., 0].size * color <= _BATCH_SAMPLES
                      or settings.color == "joint") else 1
    with torch.inference_mode():
        for c0 in range(0, color, group):
            if status is not None:
                part = f"channel {c0 + 1}/{color}" if group == 1 else \
                    (f"{color} channels" if color > 1 else "1 channel")
                status(f"3-D TV, {part}")
            czhw = np.ascontiguousarray(np.moveaxis(vol[..., c0:c0 + group], 3, 0))
            x = torch.from_numpy(czhw).to(settings.device)
            y, facts = _prox(x, settings)
            if settings.operation == "sharpen":
                y = y.mul_(-1).add_(x, alpha=2)
            elif settings.operation != "smooth":
                raise ValueError(f"unknown operation {settings.operation!r}")
            out[..., c0:c0 + group] = np.moveaxis(y.cpu().numpy(), 0, 3)
            per_group.append(facts)
    if color < channels:
        out[..., color:] = vol[..., color:]
    return out, _merge_facts(per_group)
