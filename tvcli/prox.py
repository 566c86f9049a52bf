"""Differentiable 1-D total-variation proximity operator (the public functional API)."""

from __future__ import annotations

from numbers import Real

import torch

from tvcli import (
    _ops,  # noqa: F401  (registers autograd / fake kernels)
    fallback,
)
from tvcli._extension import ext_fast_path, ext_has_device, warn_fallback

__all__ = ["prox_tv1d", "SOLVERS"]

SOLVERS = ("direct", "pn")
_COMPUTE_DTYPES = (torch.float32, torch.float64)

# tvcli._C.prox_tv1d_fast (csrc/tv1d_autograd.cpp), or None without the engine: the
# common call (a plain float32/float64 tensor on a device with kernels, lam a
# non-negative number or a broadcastable tensor) handled in one C++ call; it
# returns None for anything else, which then takes the checks below.
_fast = ext_fast_path()
_is_compiling = torch.compiler.is_compiling


def _check_lam_values(lam: float | torch.Tensor) -> None:
    """Raises ValueError for a negative or NaN lam, without ever waiting for a GPU.

    Numbers and CPU tensors are checked here (a CPU tensor costs one reduction:
    ``~(lam >= 0)`` is true for negatives and NaN alike; which of the two it was is
    worked out only on error). Tensors on another device (CUDA) are *not* checked:
    reading the result would block the host until the device caught up (a K = 4
    layer would wait ~9 times per forward, and could not be captured in a CUDA
    graph). There the kernels themselves turn a negative or NaN lam into NaN
    outputs (csrc/core/tv1d_direct.h), so a bad value is visible, not silent.
    Skipped while tracing.
    """
    if not isinstance(lam, torch.Tensor):
        bad = not lam >= 0
        is_nan = lam != lam
    else:
        if torch.compiler.is_compiling() or lam.device.type != "cpu":
            return
        lam = _ops.concrete(lam).detach()  # under vmap: every entry's lam
        bad = bool(torch.any(~(lam >= 0)))
        is_nan = bad and bool(torch.any(torch.isnan(lam)))
    if is_nan:
        raise ValueError("tvcli: lam must not be NaN")
    if bad:
        raise ValueError("tvcli: lam must be >= 0 everywhere (got a negative value)")


def _broadcast_lam(
    lam: float | torch.Tensor, x: torch.Tensor, dims: int | tuple[int, ...],
    compute_dtype: torch.dtype,
) -> torch.Tensor:
    """lam as a tensor of x's rank with size 1 along ``dims`` (a broadcast view).

    ``dims`` are the problem's dimensions (one for a 1-D signal, two for an
    image): lam holds one value per problem, broadcast over the others.
    """
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    what = "dim=" + str(dims[0]) if len(dims) == 1 else f"dims={dims}"
    per = "signal" if len(dims) == 1 else "image"
    target = list(x.shape)
    for d in dims:
        target[d] = 1
    if isinstance(lam, torch.Tensor):
        if lam.is_complex() or not (lam.is_floating_point() or lam.dtype in (torch.int32,
                                                                             torch.int64)):
            raise TypeError(f"tvcli: lam must be a real tensor, got {lam.dtype}")
        lam_t = lam.to(device=x.device, dtype=compute_dtype)
        if lam_t.dim() > x.dim():
            raise ValueError(
                f"tvcli: lam has {lam_t.dim()} dimensions but x has only {x.dim()}"
            )
        shape = [1] * (x.dim() - lam_t.dim()) + list(lam_t.shape)
        if any(shape[d] != 1 for d in dims):
            raise ValueError(
                f"tvcli: lam must have size 1 along {what} (one lam per {per}), "
                f"got lam of shape {tuple(lam.shape)} for x of shape {tuple(x.shape)}"
            )
        try:
            return lam_t.reshape(shape).expand(target)
        except RuntimeError:
            raise ValueError(
                f"tvcli: lam of shape {tuple(lam.shape)} does not broadcast to "
                f"x of shape {tuple(x.shape)} with {what}"
            ) from None
    if isinstance(lam, bool) or not isinstance(lam, Real):
        raise TypeError(f"tvcli: lam must be a number or a tensor, got {type(lam).__name__}")
    return torch.full((1,) * x.dim(), float(lam), dtype=compute_dtype, device=x.device).expand(
        target
    )


class _FallbackProx(torch.autograd.Function):
    """Pure-PyTorch prox with the same exact backward as the compiled op."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: torch.Tensor, dim: int) -> torch.Tensor:
        xr = x.movedim(dim, -1)
        shape = xr.shape
        x2 = xr.reshape(-1, shape[-1])
        lam2 = lam.movedim(dim, -1).reshape(-1, 1)
        y2 = fallback.prox_tv1d_rows(x2, lam2)
        ctx.save_for_backward(y2, lam2)
        ctx.dim, ctx.shape, ctx.lam_shape = dim, shape, lam.movedim(dim, -1).shape
        return y2.reshape(shape).movedim(-1, dim)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        y2, lam2 = ctx.saved_tensors
        g2 = grad_y.movedim(ctx.dim, -1).reshape(y2.shape)
        gx, gl = fallback.prox_tv1d_rows_backward(g2, y2, lam2)
        gx = gx.reshape(ctx.shape).movedim(-1, ctx.dim)
        gl = gl.reshape(ctx.lam_shape).movedim(-1, ctx.dim)
        return gx, gl, None


def prox_tv1d(
    x: torch.Tensor,
    lam: float | torch.Tensor,
    dim: int = -1,
    *,
    solver: str = "direct",
) -> torch.Tensor:
    r"""1-D total-variation proximity operator along one dimension.

    For every 1-D signal :math:`x` along ``dim`` it returns

    .. math:: y = \arg\min_y \tfrac12 \|y - x\|_2^2 + \lambda \sum_n |y_{n+1} - y_n|,

    exactly (the direct solver's output is exactly constant on each segment).
    Differentiable in ``x`` and ``lam`` with the exact O(N) backward.

    Args:
        x: tensor of any shape, float32 or float64 (float16 / bfloat16 are computed
            in float32 and returned in the input dtype). Any layout.
        lam: regularization weight in the units of ``x``; a Python number, or a
            tensor broadcastable to ``x`` with size 1 along ``dim`` (scalar, per
            channel, per sample, per signal). Must be >= 0.
        dim: the signal dimension (negative counts from the end).
        solver: ``"direct"`` (exact, Condat's algorithm) or ``"pn"`` (the paper's
            projected Newton, polished to the exact solution) where built.

    Returns:
        Tensor of ``x``'s shape and dtype (contiguous).

    Special cases (per signal):
        * ``lam == 0`` returns the input exactly, NaN/Inf included;
        * a signal holding a NaN or +-Inf (with ``lam > 0``) returns all-NaN, and
          its gradients are NaN; other signals are unaffected;
        * ``lam = +inf`` (or any lam above N * (max - min) / 4) returns the mean;
        * empty tensors and length-1 signals are returned unchanged.

    Raises:
        ValueError: lam negative or NaN anywhere (a number or a CPU tensor; a lam
            tensor on a GPU is not read back, to keep the call free of host syncs:
            there the affected signals come out NaN), lam not broadcastable, bad
            ``dim`` or ``solver``.
        TypeError: x not floating point, lam not a number or real tensor.

    Example:
        >>> x = torch.tensor([0.0, 0.1, 1.0, 0.9], requires_grad=True)
        >>> y = prox_tv1d(x, 0.05)
    """
    # The fast path is a C function, which dynamo cannot trace: torch.compile
    # takes the general path, which calls the same op through torch.ops.
    if _fast is not None and not _is_compiling():
        y = _fast(x, lam, dim, solver)
        if y is not None:
            return y
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"tvcli: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"tvcli: x must be a floating-point tensor, got {x.dtype}")
    if solver not in SOLVERS:
        raise ValueError(f"tvcli: unknown solver {solver!r}; expected one of {SOLVERS}")
    if x.dim() == 0:
        raise ValueError("tvcli: x must have at least one dimension")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"tvcli: dim={dim} is out of range for x of rank {x.dim()}")
    dim = dim % x.dim()
    compute_dtype = x.dtype if x.dtype in _COMPUTE_DTYPES else torch.float32
    lam_b = _broadcast_lam(lam, x, dim, compute_dtype)  # also rejects non-numbers
    _check_lam_values(lam if isinstance(lam, torch.Tensor) else float(lam))
    xc = x.to(compute_dtype)
    if ext_has_device(xc.device.type):
        y = _ops.call("prox_tv1d", xc, lam_b, dim, solver)
    else:
        warn_fallback(xc.device.type)
        y = _FallbackProx.apply(xc, lam_b, dim)
    return y.to(x.dtype)
