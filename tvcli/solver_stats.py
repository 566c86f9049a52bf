"""Solver diagnostics for benchmarks and tests: projected-Newton iteration counts."""

from __future__ import annotations

import torch

from tvcli import _ops  # noqa: F401  (registers fake kernels)
from tvcli._extension import ext_has_device
from tvcli.prox import _broadcast_lam, _check_lam_values

__all__ = ["PN_STATUS", "prox_tv1d_pn_stats"]

#: Meaning of the ``status`` codes returned by :func:`prox_tv1d_pn_stats`
#: (``core::PNStatus`` in ``csrc/core/tv1d_pn.h``).
PN_STATUS = {0: "trivial", 1: "polished", 2: "fallback", 3: "unverified"}


def prox_tv1d_pn_stats(
    x: torch.Tensor, lam: float | torch.Tensor, dim: int = -1, *, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs ``solver="pn"`` and reports how each signal was solved.

    Args:
        x: float32 or float64 tensor of any shape (no autograd).
        lam: as for :func:`tvcli.prox_tv1d`.
        dim: the signal dimension.
        max_iter: Newton iteration cap (default 100, as ``prox_tv1d``); with a low
            cap the polish fails more often and the exact direct solver takes over.

    Returns:
        ``(y, iterations, status)``: ``y`` as ``prox_tv1d(x, lam, dim, solver="pn")``;
        ``iterations`` (int32) and ``status`` (int8, see :data:`PN_STATUS`) of shape
        ``x.shape`` with size 1 along ``dim``, one entry per signal.

    Raises:
        RuntimeError: the compiled engine has no kernels for ``x.device``.
    """
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"tvcli: x must be float32 or float64, got {x.dtype}")
    if not ext_has_device(x.device.type, "prox_tv1d_pn_stats"):
        raise RuntimeError(f"tvcli: the compiled engine has no {x.device.type} kernels")
    dim = dim % x.dim()
    lam_b = _broadcast_lam(lam, x, dim, x.dtype)
    _check_lam_values(lam_b)
    return torch.ops.tvcli.prox_tv1d_pn_stats(x.detach(), lam_b, dim, max_iter)
