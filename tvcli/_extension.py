"""Loads the compiled engine (``tvcli._C``) and says which backends it has.

Importing ``tvcli._C`` runs the C++ ``TORCH_LIBRARY`` registrations, after which
the ops are reachable as ``torch.ops.tvcli.*``. When the extension was not built
(no compiler, ``TVCLI_NO_EXT=1``), tvcli falls back to pure PyTorch and warns once.
"""

from __future__ import annotations

import os
import warnings

import torch

try:
    from tvcli import _C  # noqa: F401  (imported for its op registrations)

    HAS_EXT = True
    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # not built, or built against another torch
    HAS_EXT = False
    _IMPORT_ERROR = str(exc)

_warned = False


_OPS = ("prox_tv1d", "prox_tv1d_pn_stats", "prox_tv2d_solve", "prox_tv2d_dykstra",
        "prox_tv_nd", "prox_tv_nd_backward")


def _probe_device_kernels() -> dict[str, frozenset[str]]:
    """For each op, the devices ('cpu', 'cuda') the compiled engine has kernels for."""
    if not HAS_EXT:
        return {op: frozenset() for op in _OPS}
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return {op: frozenset(d for d, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                          if has(f"tvcli::{op}", key)) for op in _OPS}


# Probed once at import: a plain dict/set lookup is also what torch.compile can trace.
_EXT_DEVICES = _probe_device_kernels()


def ext_has_device(device_type: str, op: str = "prox_tv1d") -> bool:
    """Whether the compiled engine has ``tvcli::<op>`` kernels for ``device_type``.

    A CUDA build registers every op for both devices (csrc/cuda/); without the
    kernels for a device, tvcli.prox_tv2d composes the 1-D op in Python instead.
    """
    return device_type in _EXT_DEVICES.get(op, ())


def ext_fast_path():
    """``tvcli._C.prox_tv1d_fast`` (csrc/tv1d_autograd.cpp), or None without it.

    ``prox_tv1d_fast(x, lam, dim, solver)`` returns prox_tv1d's result, or None
    for a call it leaves to the Python path (other dtypes, devices, subclasses,
    a bad argument). ``TVCLI_NO_FAST_PATH=1`` turns it off (for comparisons).
    """
    if not HAS_EXT or os.environ.get("TVCLI_NO_FAST_PATH", "0") == "1":
        return None
    return getattr(_C, "prox_tv1d_fast", None)


def built_backends() -> list[str]:
    """Backends of the compiled engine, e.g. ``['cpu']`` or ``['cpu', 'cuda']``."""
    return sorted(_EXT_DEVICES["prox_tv1d"])


def warn_fallback(device_type: str) -> None:
    """Warns once per process that the pure-PyTorch path is in use."""
    global _warned
    if _warned:
        return
    _warned = True
    why = (
        f"the compiled engine is not built ({_IMPORT_ERROR})"
        if not HAS_EXT
        else f"the compiled engine has no {device_type} kernels"
    )
    warnings.warn(
        f"tvcli: {why}; using the slower pure-PyTorch solver. "
        "Build it with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=3,
    )
