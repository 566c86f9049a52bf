"""``tvcli smooth`` / ``sharpen`` without importing torch (issue 28: torch's import
is most of a small image's run time).

The default model, converged isotropic TV (``--tv iso``, colour joint or
separate), on the CPU, is solved by ``tvcli._core`` (:mod:`tvcli.tv_nd_core`): the
torch op's own solver built without torch. This module reproduces what
:func:`tvcli.cli.tvfilter.filter_image` / ``filter_volume`` compute through
:func:`tvcli.prox_tv` in that case (problem layout, float32 weight, float32-state
rule, certificate interval, channel grouping, sharpening's rounding, the solver
facts), so that the output files are the same bit for bit at the same thread
count. Whatever it cannot prove the same takes the torch path: a weight of 0 or
inf, a non-finite image, and any problem whose prox may be its mean (tvcli.prox_tv
then skips the solver: ``_mean_candidates``, with a margin).

``TVCLI_NO_FAST_CLI=1`` turns it off (for comparisons).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tvcli.cli.tvfilter import (
    _BATCH_SAMPLES,
    FilterSettings,
    _merge_facts,
    _status_text,
    filter_image,
    filter_volume,
    solver_lam,
)
from tvcli.tv_nd_core import (
    ADAPTIVE_CHECKS,
    MERGE_FLAT,
    core_module,
    f32_state_args,
    prox_tv_nd,
    stalled_f32,
)

ENV_OFF = "TVCLI_NO_FAST_CLI"
# Magnitudes at which sharpening's 2 x could overflow float32 (torch may fuse
# 2 x - y where numpy rounds 2 x first): such images take the torch path.
_HUGE = 2.0 ** 126


def _load_core():
    """``tvcli._core`` (or None), its OpenMP runtime started with the passive wait
    policy unless the user chose one (OMP_WAIT_POLICY / GOMP_SPINCOUNT): threads
    that wait between the solver's ~2 parallel regions per iteration then sleep
    instead of spinning. On a machine whose cores are busy with other work, the
    spinning made two threads 10x slower than one (docs/cli.md, "Performance").
    libgomp reads the variable once, when it is loaded; the environment is
    restored right after."""
    if "tvcli._core" in sys.modules or any(
            k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        return core_module()
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        return core_module()
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def enabled() -> bool:
    """Whether the torch-free path may run: built, and not turned off."""
    return os.environ.get(ENV_OFF, "0") != "1" and _load_core() is not None


def auto_is_cpu() -> bool:
    """Whether ``--device auto`` is known to pick the CPU without importing torch:
    tvcli's engine was built without CUDA kernels, or torch is a CPU-only build
    (its version.py says ``cuda = None``). False when unsure."""
    core = _load_core()
    if core is not None and not core.cuda_engine:
        return True
    from importlib.util import find_spec

    try:
        spec = find_spec("torch")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        return any(line.replace(" ", "") in ("cuda:Optional[str]=None", "cuda=None")
                   for line in text.splitlines())
    return False


def usable(device: str, mode: str, iters: int | None, tv: str, lam_map: str | None,
           solver: str) -> bool:
    """Whether ``run_filter`` can leave torch out: the converged isotropic model on
    the CPU, no weight map, the torch-free module built and not turned off. (Each
    image may still fall back: :func:`filter_image_fast` returns None.)"""
    if not (mode == "2d" and iters is None and tv == "iso" and lam_map is None
            and solver == "direct"):
        return False
    if not enabled():
        return False
    return device == "cpu" or (device == "auto" and auto_is_cpu())


def _weight(settings: FilterSettings, dtype) -> np.ndarray | None:
    """``lam`` in the solver's dtype as tvcli.prox_tv takes it (a float32 or float64
    number), or None when it is 0 or inf there (the torch path's special cases)."""
    w = np.asarray(solver_lam(settings.lam), dtype=dtype)
    return w if np.isfinite(w) and w > 0 else None


def _joint(settings: FilterSettings, group: int) -> bool:
    return settings.color == "joint" and group > 1


def _solver_runs(v: np.ndarray, settings: FilterSettings) -> bool:
    """Whether tvcli.prox_tv would run the compiled solver on every problem of the
    channel-last block ``v`` (*S, C) (its C channels: one problem when joint, else
    one each), with nothing special: a weight neither 0 nor inf, finite data, and
    no problem that ``tvcli.prox_nd._mean_candidates`` may pass (the deviation of
    the first slice of axis 0 from the mean over that axis, against the weight;
    with a margin for numpy's and torch's different float64 summation)."""
    w = _weight(settings, v.dtype)
    if w is None or settings.tol is None or not np.isfinite(v).all():
        return False
    amax = float(np.abs(v).max())
    if amax >= _HUGE:
        return False
    m0 = v.mean(axis=0, dtype=np.float64)
    dev = np.abs(v[0].astype(np.float64) - m0).reshape(-1, v.shape[-1]).max(axis=0)
    if _joint(settings, v.shape[-1]):
        dev = dev.max(keepdims=True)
    return not bool((dev <= float(w) * (1.0 + 1e-6) + 1e-6 * amax + 1e-300).any())


def _prox(x: np.ndarray, settings: FilterSettings) -> tuple[np.ndarray, dict]:
    """prox of the (C, *S) block ``x`` (C colour channels of one image or volume) as
    ``tvcli.cli.tvfilter._prox`` computes it when :func:`_solver_runs` holds: the
    problems, weight, float32-state rule and solver facts of ``tvcli.prox_tv``."""
    nd = x.ndim - 1
    w = _weight(settings, x.dtype)
    xk = x.reshape(1, *x.shape) if _joint(settings, x.shape[0]) else \
        x.reshape(x.shape[0], 1, *x.shape[1:])
    b = xk.shape[0]
    wk = np.full((b, 1) + (1,) * nd, w, dtype=x.dtype)
    f32, f32_until = f32_state_args(x.dtype == np.float32, settings.tol, float(w), can_switch=True)
    max_iter = settings.max_iter or 5000
    y, info = prox_tv_nd(xk, wk, nd, "iso", settings.tol, max_iter, f32_state=f32,
                         threads=settings.cpu_threads, adaptive_checks=ADAPTIVE_CHECKS,
                         merge_flat=MERGE_FLAT, f32_until=f32_until)
    again = stalled_f32(info.tolist(), max_iter) if f32 else []
    if again:  # as tvcli.prox_nd: a stalled float32 state, again in float64
        y[again], info[again] = prox_tv_nd(np.ascontiguousarray(xk[again]),
                                           np.ascontiguousarray(wk[again]), nd, "iso",
                                           settings.tol, max_iter, f32_state=False,
                                           threads=settings.cpu_threads,
                                           adaptive_checks=ADAPTIVE_CHECKS,
                                           merge_flat=MERGE_FLAT)
    bound = info[:, 1]
    facts: dict = {"iterations": int(info[:, 0].astype(np.int64).max()),
                   "stop": "tol" if bool((bound <= settings.tol).all()) else "max_iter"}
    if not np.isnan(bound).any():
        facts["error_bound"] = float(bound.max())
    return y.reshape(x.shape), facts


def _finish(x: np.ndarray, y: np.ndarray, operation: str) -> np.ndarray:
    """smooth: y; sharpen: 2 x - y, rounded as the torch path's y.mul_(-1).add_(x, 2)."""
    if operation == "sharpen":
        return np.subtract(x * 2, y, out=y)
    return y


def _supported(settings: FilterSettings) -> bool:
    return (settings.cpu_threads is not None and settings.device == "cpu"
            and settings.operation in ("smooth", "sharpen") and settings.mode == "2d"
            and settings.iters is None and settings.tv == "iso"
            and settings.lam_map is None and enabled())


def filter_image_fast(
    img: np.ndarray, settings: FilterSettings, *, inplace: bool = False,
    status: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict] | None:
    """:func:`tvcli.cli.tvfilter.filter_image` for the settings :func:`usable`
    accepts, without torch; None (nothing written) when the torch path must run."""
    if not _supported(settings) or settings.volume or img.dtype != np.float32:
        return None
    channels = img.shape[2]
    color = channels - 1 if channels in (2, 4) else channels
    group = color if (img.shape[0] * img.shape[1] * color <= _BATCH_SAMPLES
                      or settings.color == "joint") else 1
    starts = range(0, color, group)
    if not all(_solver_runs(img[:, :, c0:c0 + group], settings) for c0 in starts):
        return None
    out = img if inplace else np.empty_like(img)
    per_group: list[dict] = []
    for c0 in starts:
        if status is not None:
            status(_status_text(c0, group, color, per_group, settings))
        chw = np.ascontiguousarray(img[:, :, c0:c0 + group].transpose(2, 0, 1))
        y, facts = _prox(chw, settings)
        out[:, :, c0:c0 + group] = _finish(chw, y, settings.operation).transpose(1, 2, 0)
        per_group.append(facts)
        del chw, y
    if color < channels and not inplace:
        out[:, :, color:] = img[:, :, color:]
    return out, _merge_facts(per_group)


def filter_volume_fast(
    vol: np.ndarray, settings: FilterSettings, *,
    status: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict] | None:
    """:func:`tvcli.cli.tvfilter.filter_volume` for the settings :func:`usable`
    accepts, without torch; None when the torch path must run."""
    if not _supported(settings) or vol.dtype not in (np.float32, np.float64):
        return None
    channels = vol.shape[3]
    color = channels - 1 if channels in (2, 4) else channels
    group = color if (vol[..., 0].size * color <= _BATCH_SAMPLES
                      or settings.color == "joint") else 1
    starts = range(0, color, group)
    if not all(_solver_runs(vol[..., c0:c0 + group], settings) for c0 in starts):
        return None
    out = np.empty_like(vol)
    per_group: list[dict] = []
    for c0 in starts:
        if status is not None:
            part = f"channel {c0 + 1}/{color}" if group == 1 else \
                (f"{color} channels" if color > 1 else "1 channel")
            status(f"3-D TV, {part}")
        czhw = np.ascontiguousarray(np.moveaxis(vol[..., c0:c0 + group], 3, 0))
        y, facts = _prox(czhw, settings)
        out[..., c0:c0 + group] = np.moveaxis(_finish(czhw, y, settings.operation), 0, 3)
        per_group.append(facts)
    if color < channels:
        out[..., color:] = vol[..., color:]
    return out, _merge_facts(per_group)


def _torch_threads(settings: FilterSettings) -> None:
    """The torch path after all: torch gets the threads the torch-free path had
    (``run_filter`` did not set them, to leave torch out)."""
    if settings.cpu_threads is not None:
        import torch

        if torch.get_num_threads() != settings.cpu_threads:
            torch.set_num_threads(settings.cpu_threads)


def apply_to_image(img: np.ndarray, settings: FilterSettings, *, inplace: bool = False,
                   status: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict]:
    """The command line's filter step: :func:`filter_image_fast`, else
    :func:`tvcli.cli.tvfilter.filter_image` (same arguments and result)."""
    done = filter_image_fast(img, settings, inplace=inplace, status=status)
    if done is not None:
        return done
    _torch_threads(settings)
    return filter_image(img, settings, inplace=inplace, status=status)


def apply_to_volume(vol: np.ndarray, settings: FilterSettings, *,
                    status: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict]:
    """:func:`filter_volume_fast`, else :func:`tvcli.cli.tvfilter.filter_volume`."""
    done = filter_volume_fast(vol, settings, status=status)
    if done is not None:
        return done
    _torch_threads(settings)
    return filter_volume(vol, settings, status=status)
