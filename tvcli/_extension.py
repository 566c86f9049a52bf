"""Loads the compiled engine (``tvcli._C``) and says which backends it has.

Importing ``tvcli._C`` runs the C++ ``TORCH_LIBRARY`` registrations, after which
the ops are reachable as ``torch.ops.tvcli.*``. When the extension was not built
(no compiler, ``TVCLI_NO_EXT=1``), tvcli falls back to pure PyTorch and warns once.
"""

from __future__ import annotations

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


def _probe_device_kernels() -> frozenset[str]:
    if not HAS_EXT:
        return frozenset()
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return frozenset(d for d, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                     if has("tvcli::prox_tv1d", key))


# Probed once at import: a plain set lookup is also what torch.compile can trace.
_EXT_DEVICES = _probe_device_kernels()


def ext_has_device(device_type: str) -> bool:
    """Whether the compiled engine has kernels for ``device_type`` ('cpu', 'cuda')."""
    return device_type in _EXT_DEVICES


def built_backends() -> list[str]:
    """Backends of the compiled engine, e.g. ``['cpu']`` or ``['cpu', 'cuda']``."""
    return sorted(_EXT_DEVICES)


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
