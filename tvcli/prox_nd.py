r"""Isotropic, colour (vectorial) and n-D total-variation prox with weight maps.

:func:`prox_tv` solves, for every problem of ``x`` (a slice over ``dims``, plus
``channel_dim`` when the channels are coupled),

.. math:: y^* = \arg\min_y \tfrac12 \|y - x\|^2 + \sum_i w_i \, \|(D y)_i\|,

with forward differences ``D`` along ``dims`` (0 on the last slice: Neumann, the
convention of scikit-image and Chambolle 2004), per-pixel weights ``w`` (``lam``,
a number or a map) and the norm

* ``"aniso"``: ``sum_d |(D_d y)_i|`` (channels separate);
* ``"iso"``: ``sqrt(sum_d (D_d y)_i^2)`` per channel, or, with ``channel_dim``, one
  l2 norm over channels and directions per pixel (colour / vectorial TV: edges line
  up across channels).

It runs FISTA on the dual (chosen over Chambolle-Pock by measurement,
docs/tv_variants.md) until a certified bound on the RMS error against the exact
prox is <= ``tol``: the compiled op ``tvcli::prox_tv_nd`` (csrc/core/tv_nd_fgp.h,
1 to 4 spatial dims) when the engine has kernels for x's device, else the
pure-PyTorch solver :mod:`tvcli.tv_nd_solvers` (same iterations, same certificate).
Anisotropic 2-D problems with one lam per image go to the compiled 2-D engine
(:func:`tvcli.prox_tv2d`). Gradients with respect to ``x`` and ``lam`` (number,
per channel or map) are the exact derivative
of the prox at the computed solution, by implicit differentiation
(:mod:`tvcli.tv_implicit`), not autograd through the iterations.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from tvcli import _ops
from tvcli._extension import HAS_EXT, ext_has_device
from tvcli.prox2d import Tv2dInfo, prox_tv2d
from tvcli.tv_implicit import _FLAT_FACTOR, CG_MAX_ITER, CG_RTOL, implicit_backward
from tvcli.tv_nd_core import (
    ADAPTIVE_CHECKS,
    CHECK_EVERY,
    MERGE_FLAT,
    f32_state_args,
    stalled_f32,
)
from tvcli.tv_nd_ops import pixel_norm
from tvcli.tv_nd_solvers import solve

__all__ = ["NORMS", "TvInfo", "prox_tv"]

NORMS = ("aniso", "iso")
_COMPUTE_DTYPES = (torch.float32, torch.float64)

# Most spatial dims the compiled op takes (csrc/core/tv_nd_fgp.h, kMaxDims).
_OP_MAX_DIMS = 4

# Same fields and meaning as the 2-D engine's info; the batch shape is x's shape
# without ``dims`` (and without ``channel_dim`` when channels are coupled).
TvInfo = Tv2dInfo


def _mean_is_optimal(x: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """Problems whose prox is exactly their (per-channel) mean: a sufficient test.

    ``x - mean = sum_d (m_{d-1} - m_d)`` with ``m_0 = x`` and ``m_d`` the mean over
    the first ``d`` spatial axes. Each term has zero mean along axis ``d``, so it is
    ``D_d^T q_d`` with ``q_d = -cumsum_d(term)`` (0 on the last slice). If that dual
    ``q`` lies in the ball of radius ``w`` everywhere, ``y = mean`` satisfies the
    optimality conditions. Exact for ``lam = inf`` and lam above the data's range.
    x float64 ``(B, C, *S)``, w ``(B, 1, 1, *S)``; returns bool ``(B,)``.
    """
    nd = x.dim() - 2
    q = x.new_empty((x.shape[0], nd, *x.shape[1:]))
    m = x
    for d in range(nd):
        ax = 2 + d
        md = m.mean(dim=ax, keepdim=True)
        q[:, d].copy_(torch.cumsum(m - md, dim=ax).neg_())  # broadcast over axes < ax
        q[:, d].narrow(ax, x.shape[ax] - 1, 1).zero_()
        m = md
    size = q.abs() if norm == "aniso" else pixel_norm(q)
    ok = size <= w
    return ok.reshape(ok.shape[0], -1).all(dim=1)


def use_compiled(x: torch.Tensor) -> bool:
    """Whether the compiled op solves ``x`` (canonical ``(B, C, *S)``)."""
    return (HAS_EXT and x.dim() - 2 <= _OP_MAX_DIMS
            and ext_has_device(x.device.type, "prox_tv_nd"))


def _per_problem_weights(w: torch.Tensor) -> torch.Tensor:
    """``w`` ``(B, 1, 1, *S)`` as a view with size-1 spatial dims when it is the same
    over each problem's pixels (a broadcast number or per-channel lam), else ``w``."""
    spatial = range(3, w.dim())
    if all(w.stride(d) == 0 or w.shape[d] == 1 for d in spatial):
        return w[(slice(None), slice(None), slice(None), *([slice(0, 1)] * (w.dim() - 3)))]
    return w


def _solve_compiled(
    x: torch.Tensor, w: torch.Tensor, norm: str, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The compiled op on finite problems: x ``(B, C, *S)`` float32/float64, w
    ``(B, 1, 1, *S)`` or ``(B, 1, 1, 1...)`` (x's dtype, finite, >= 0). Returns y
    (x's dtype), the certified bound and the iterations, ``(B,)`` float64 each."""
    nd = x.dim() - 2
    wk = w.squeeze(1).contiguous()
    xk = x.contiguous()
    # On the CPU: a float32 state that turns float64 near tol, certificates where
    # the bound's decay predicts tol, and the merged-region certificate near tol.
    # CUDA: one state type per solve, fixed check spacing, the plain certificate.
    cpu = x.device.type == "cpu"
    f32 = x.dtype == torch.float32
    wmax = float(wk.max()) if f32 and not cpu else 0.0  # a device sync: only where used
    f32_state, f32_until = f32_state_args(f32, tol, wmax, can_switch=cpu)
    adaptive, merge = ADAPTIVE_CHECKS and cpu, MERGE_FLAT and cpu
    y, info = torch.ops.tvcli.prox_tv_nd(xk, wk, nd, norm, float(tol), int(max_iter),
                                         CHECK_EVERY, f32_state, True, adaptive, merge,
                                         f32_until)
    if f32_state:
        # A float32 state that stalled above tol: those problems again in float64.
        again = stalled_f32(info.tolist(), max_iter)
        if again:
            ya, ia = torch.ops.tvcli.prox_tv_nd(xk[again], wk[again].contiguous(), nd, norm,
                                                float(tol), int(max_iter), CHECK_EVERY, False,
                                                True, adaptive, merge)
            y[again], info[again] = ya, ia
    return y, info[:, 1], info[:, 0]


def _mean_candidates(x: torch.Tensor, wmax: torch.Tensor) -> torch.Tensor:
    """A cheap necessary condition for :func:`_mean_is_optimal`, bool ``(B,)``.

    That test's dual on the first slice of axis 0 is ``-(x[0] - mean_0 x)``; if one
    of its entries exceeds the largest weight (with a margin for rounding), the
    test fails. First on 16 of each problem's lines along axis 0 (channel and place:
    a problem whose weight is below its data's variation fails there, at a fraction
    of the cost), then one pass over the problems left, no float64 copy of x.
    """
    b, c, s0 = x.shape[:3]
    rest = math.prod(x.shape[3:])
    lines = c * rest  # lines along axis 0 per problem
    if lines > 16:
        # 16 lines (channel, place) of each problem: (16, B, s0)
        pick = torch.linspace(0, lines - 1, 16, device=x.device).long()
        xs = x.reshape(b, c, s0, rest)[:, pick // rest, :, pick % rest]
        m0 = xs.mean(dim=2, keepdim=True, dtype=torch.float64)
        dev = (xs.narrow(2, 0, 1).double() - m0).abs().amax(dim=(0, 2))
        # a margin beyond the full test's: the sample's means may round differently
        # (a float64 mean of s0 values errs by at most ~s0 eps max|x|)
        mag = xs.abs().amax(dim=(0, 2)).double()
        cand = dev <= wmax * (1.0 + 4e-9) + 4.5e-16 * s0 * mag + 1e-300
        if not bool(cand.any()):
            return cand
    else:
        cand = torch.ones(b, dtype=torch.bool, device=x.device)
    sel = cand.nonzero().squeeze(1)
    xc = x if sel.numel() == b else x[sel]
    m0 = xc.mean(dim=2, keepdim=True, dtype=torch.float64)
    dev = (xc.narrow(2, 0, 1).double() - m0).abs().amax(dim=tuple(range(1, x.dim())))
    cand[sel] = dev <= wmax[sel] * (1.0 + 1e-9) + 1e-300
    return cand


def _finite_problems(x: torch.Tensor) -> torch.Tensor:
    """Whether each problem of x ``(B, ...)`` is all finite, bool ``(B,)``: its sum
    is finite then (a NaN or an infinity makes the sum NaN or infinite), which is one
    fast reduction; a non-finite sum (also an overflow of finite data) is settled
    element by element."""
    b = x.shape[0]
    ok = torch.isfinite(x.reshape(b, -1).sum(dim=1))
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1)
        ok[bad] = torch.isfinite(x[bad]).reshape(bad.numel(), -1).all(dim=1)
    return ok


class _ProxTvNd(torch.autograd.Function):
    """Canonical-layout prox: x ``(B, C, *S)``, w ``(B, 1, 1, *S)`` (compute dtype).

    Returns y (x's dtype) and info ``(B, 3)`` float64: iterations, RMS error bound,
    converged. The backward is :func:`tvcli.tv_implicit.implicit_backward` (y and
    w are kept in float64 for it only when a gradient is wanted). Forward and
    ``setup_context`` are separate, so that ``torch.func`` transforms (grad, vjp,
    jacrev) can differentiate it.
    """

    @staticmethod
    def forward(x, w, norm: str, tol: float, max_iter: int):
        xc, wc = x.detach(), w.detach()
        b = xc.shape[0]
        # over the per-problem view: a broadcast lam is not read n times
        wu = _per_problem_weights(wc)
        wmax = wu.amax(dim=tuple(range(1, wu.dim()))).double()
        zero = wmax == 0
        finite_x = _finite_problems(xc)
        inf_w = torch.isinf(wmax)
        info = torch.zeros(b, 3, dtype=torch.float64, device=xc.device)
        info[:, 2] = 1.0
        todo = ~zero & finite_x
        y = None  # x's copy, made only when some problem is not solved (a copy less)

        def y_out() -> torch.Tensor:
            nonlocal y
            if y is None:
                y = xc.clone()
                y[~zero & ~finite_x] = math.nan
            return y

        if bool(todo.any()):
            mean_ok = torch.zeros(b, dtype=torch.bool, device=xc.device)
            cand = (todo & _mean_candidates(xc, wmax)).nonzero().squeeze(1)
            if cand.numel():
                mean_ok[cand] = _mean_is_optimal(xc[cand].double(), wc[cand].double(), norm)
            bad = todo & inf_w & ~mean_ok
            if bool(bad.any()):
                raise ValueError(
                    "tvcli: lam = inf is supported for a whole image (or where the prox "
                    "is the mean), not in part of a lam map"
                )
            mean_sel = (todo & mean_ok).nonzero().squeeze(1)
            if mean_sel.numel():
                xm = xc[mean_sel].double()
                spatial = tuple(range(2, xm.dim()))
                y_out()[mean_sel] = xm.mean(dim=spatial, keepdim=True).expand_as(xm).to(xc.dtype)
            run = (todo & ~mean_ok).nonzero().squeeze(1)
            if run.numel():
                every = run.numel() == b
                if use_compiled(xc):
                    yr, bound, it = _solve_compiled(xc if every else xc[run],
                                                    wu if every else wu[run], norm, tol,
                                                    max_iter)
                else:
                    yr, it, bound = solve(xc[run].double(), wc[run].double(), norm, tol,
                                          max_iter)
                if every:
                    y = yr.to(xc.dtype)
                else:
                    y_out()[run] = yr.to(xc.dtype)
                info[run, 0] = it.double()
                info[run, 1] = bound
                info[run, 2] = (bound <= tol).double()
        return y_out(), info

    @staticmethod
    def vmap(info, in_dims, x, w, norm: str, tol: float, max_iter: int):
        """vmap's dim joins the batch of problems B: the forward on the stacked
        problems (its shortcuts read values, which vmap's batched tensors forbid)."""
        n = info.batch_size
        xb = _ops.merge_vmap_dim(x, in_dims[0], n)
        # weights the same over each problem's pixels stay a broadcast view, so the
        # solver sees them as it would without vmap (not as a map)
        wbdim = None if in_dims[1] is None else 0
        wf = w if wbdim is None else w.movedim(in_dims[1], 0)
        problem = wf.shape[1:] if wbdim is None else wf.shape[2:]  # (1, 1, *S)
        wb = _ops.merge_vmap_dim(_per_problem_weights(wf), wbdim, n)
        wb = wb.expand(wb.shape[0], *problem)
        y, tv_info = _ProxTvNd.forward(xb, wb, norm, tol, max_iter)
        return (_ops.split_vmap_dim(y, n), _ops.split_vmap_dim(tv_info, n)), (0, 0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _x, w, norm, _tol, _max_iter = inputs
        y, info = output
        ctx.norm = norm
        if any(ctx.needs_input_grad[:2]):
            ctx.save_for_backward(y.double(), w.detach().double(), info[:, 1].clone())
        ctx.mark_non_differentiable(info)

    @staticmethod
    def backward(ctx, grad_y, _grad_info):
        y, w, bound = ctx.saved_tensors
        if use_compiled_backward(y):
            gx, gw = _backward_compiled(grad_y.double(), y, w, bound, ctx.norm)
        else:
            gx, gw = implicit_backward(grad_y.double(), y, w, bound, ctx.norm)
        gx = gx.to(grad_y.dtype) if ctx.needs_input_grad[0] else None
        gw = gw.to(grad_y.dtype) if ctx.needs_input_grad[1] else None
        return gx, gw, None, None, None


def use_compiled_backward(y: torch.Tensor) -> bool:
    """Whether the compiled implicit backward (CPU only) handles ``y``."""
    return (HAS_EXT and y.dim() - 2 <= _OP_MAX_DIMS
            and ext_has_device(y.device.type, "prox_tv_nd_backward"))


def _backward_compiled(
    g: torch.Tensor, y: torch.Tensor, w: torch.Tensor, bound: torch.Tensor, norm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """tvcli::prox_tv_nd_backward with tvcli/tv_implicit.py's constants: g, y float64
    ``(B, C, *S)``, w float64 ``(B, 1, 1, *S)`` (a view), bound ``(B,)``. Returns
    ``(grad_x, grad_w (B, 1, 1, *S))``."""
    nd = y.dim() - 2
    wk = _per_problem_weights(w).squeeze(1).contiguous()
    gx, gw = torch.ops.tvcli.prox_tv_nd_backward(
        g.contiguous(), y.contiguous(), wk, bound.contiguous(), nd, norm, _FLAT_FACTOR,
        CG_RTOL, CG_MAX_ITER)
    return gx, gw.unsqueeze(1)


def _norm_dim(d: int, rank: int, what: str) -> int:
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"tvcli: {what} must be an int, got {d!r}")
    if not -rank <= d < rank:
        raise ValueError(f"tvcli: {what}={d} is out of range for x of rank {rank}")
    return d % rank


def _lam_tensor(lam: float | torch.Tensor, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """lam as a tensor of x's rank broadcast to x's shape (a view)."""
    if isinstance(lam, torch.Tensor):
        if lam.is_complex() or not (lam.is_floating_point() or lam.dtype in (torch.int32,
                                                                             torch.int64)):
            raise TypeError(f"tvcli: lam must be a real tensor, got {lam.dtype}")
        if lam.dim() > x.dim():
            raise ValueError(f"tvcli: lam has {lam.dim()} dimensions but x has only {x.dim()}")
        lam_t = lam.to(device=x.device, dtype=dtype)
        lam_t = lam_t.reshape([1] * (x.dim() - lam_t.dim()) + list(lam_t.shape))
    elif isinstance(lam, bool) or not isinstance(lam, Real):
        raise TypeError(f"tvcli: lam must be a number or a tensor, got {type(lam).__name__}")
    else:
        lam_t = torch.full((1,) * x.dim(), float(lam), dtype=dtype, device=x.device)
    try:
        return lam_t.expand(x.shape)
    except RuntimeError:
        raise ValueError(
            f"tvcli: lam of shape {tuple(lam_t.shape)} does not broadcast to x of shape "
            f"{tuple(x.shape)}"
        ) from None


def _check_lam(lam: float | torch.Tensor) -> None:
    """Rejects negative or NaN lam (numbers and CPU tensors; no device sync)."""
    if isinstance(lam, torch.Tensor):
        if torch.compiler.is_compiling() or lam.device.type != "cpu":
            return
        lam = _ops.concrete(lam).detach()  # under vmap: every entry's lam
        if bool(torch.isnan(lam).any()):
            raise ValueError("tvcli: lam must not be NaN")
        if bool((lam < 0).any()):
            raise ValueError("tvcli: lam must be >= 0 everywhere (got a negative value)")
    elif not lam >= 0:
        raise ValueError(f"tvcli: lam must be >= 0 and not NaN, got {lam!r}")


def prox_tv(
    x: torch.Tensor,
    lam: float | torch.Tensor,
    dims: tuple[int, ...] = (-2, -1),
    *,
    norm: str = "aniso",
    channel_dim: int | None = None,
    tol: float = 1e-4,
    max_iter: int = 5000,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, TvInfo]:
    r"""Total-variation prox in any number of dimensions, isotropic or anisotropic,
    per channel or colour-coupled, with a scalar lam or a weight map.

    For every problem of ``x`` it returns, to a certified accuracy,

    .. math:: y = \arg\min_y \tfrac12 \|y - x\|^2 + \sum_i \mathrm{lam}_i \|(D y)_i\|,

    ``D`` the forward differences along ``dims`` (0 past the last slice).

    Args:
        x: float32 or float64 tensor (half types computed in float32); any layout.
        lam: weight >= 0 in the units of ``x``: a number or a tensor broadcastable to
            ``x`` (per sample, per channel, or a per-pixel map, zeros allowed). With
            colour coupling it must have size 1 along ``channel_dim``. ``inf`` is
            allowed for a whole problem (gives the mean), not in part of a map.
            ``lam_i`` weighs the differences *from* pixel ``i`` to its successors.
        dims: the spatial dimensions of each problem (1, 2, 3 or more): ``(-2, -1)``
            for images, ``(-3, -2, -1)`` for volumes.
        norm: ``"aniso"`` (l1 over directions) or ``"iso"`` (l2 over directions).
        channel_dim: with ``norm="iso"``, the dimension of channels that share one
            norm per pixel (colour / vectorial TV). ``None``: channels are separate
            problems. With ``"aniso"`` the channels decouple anyway and it is
            ignored.
        tol: stop a problem once the certified bound on its RMS error against the
            exact prox, ``sqrt(duality_gap / n)`` (``n`` = its number of
            entries), is <= tol (units of ``x``).
        max_iter: iteration cap (problems that hit it report ``converged=False``).
        return_info: also return a :class:`TvInfo`: stop reason, iterations and the
            error bound per problem (batch shape: ``x``'s shape without ``dims`` and,
            when coupled, ``channel_dim``).

    Returns:
        ``y`` of ``x``'s shape and dtype, or ``(y, info)``.

    Notes:
        * A problem whose lam is 0 everywhere returns ``x`` exactly (NaN/Inf
          included); any other problem holding a NaN or Inf gives NaN.
        * A problem whose prox is provably its mean (``lam = inf``, or lam above a
          cheap sufficient bound) returns the mean without iterating.
        * The solver state is float64; a float32 result adds its own rounding
          (<= 2^-24 |y|) to the certified bound.
        * Anisotropic 2-D problems with one lam per image use the compiled 2-D
          engine (:func:`tvcli.prox_tv2d`, same certificate).
        * Backward: exact derivative of the prox at the active structure of ``y``
          (pixels whose difference vector is below ``8 x`` the error bound count as
          flat), by a conjugate-gradient solve; tight in float64 at a tiny ``tol``.

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> y = prox_tv(x, 0.1, norm="iso")                     # per channel
        >>> y = prox_tv(x, 0.1, norm="iso", channel_dim=1)      # colour TV
        >>> v = prox_tv(torch.rand(1, 32, 32, 32), 0.1, dims=(-3, -2, -1), norm="iso")
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"tvcli: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"tvcli: x must be a floating-point tensor, got {x.dtype}")
    if norm not in NORMS:
        raise ValueError(f"tvcli: norm must be one of {NORMS}, got {norm!r}")
    if isinstance(dims, int):
        dims = (dims,)
    if x.dim() == 0 or len(dims) == 0:
        raise ValueError("tvcli: x must have at least one dimension and dims must name one")
    sdims = tuple(_norm_dim(d, x.dim(), "dims") for d in dims)
    if len(set(sdims)) != len(sdims):
        raise ValueError(f"tvcli: dims must be different dimensions, got {dims!r}")
    cdim = None
    if channel_dim is not None and norm == "iso":
        cdim = _norm_dim(channel_dim, x.dim(), "channel_dim")
        if cdim in sdims:
            raise ValueError("tvcli: channel_dim must not be one of dims")
    if not tol >= 0:
        raise ValueError(f"tvcli: tol must be >= 0, got {tol!r}")
    if isinstance(max_iter, bool) or int(max_iter) < 1:
        raise ValueError(f"tvcli: max_iter must be >= 1, got {max_iter!r}")
    compute_dtype = x.dtype if x.dtype in _COMPUTE_DTYPES else torch.float32
    _check_lam(lam)
    lam_b = _lam_tensor(lam, x, compute_dtype)
    per_image = all(lam_b.stride(d) == 0 or x.shape[d] == 1 for d in sdims)

    if norm == "aniso" and len(sdims) == 2 and per_image and all(x.shape[d] for d in sdims):
        # One lam per image: the compiled 2-D engine (same certificate).
        lam2 = lam_b.narrow(sdims[0], 0, 1).narrow(sdims[1], 0, 1)
        out = prox_tv2d(x, lam2, sdims, tol=tol, max_iter=max_iter, return_info=True)
        # lam = 0 is the identity exactly, NaN/Inf included (as for every norm here;
        # the 2-D engine turns an image holding Inf into NaN even at lam = 0).
        y2 = torch.where(lam2 == 0, x, out[0])
        return (y2, out[1]) if return_info else y2

    if cdim is not None and lam_b.stride(cdim) != 0 and x.shape[cdim] > 1:
        if isinstance(lam, torch.Tensor):
            shape = [1] * (x.dim() - lam.dim()) + list(lam.shape)
            if shape[cdim] != 1:
                raise ValueError(
                    "tvcli: with channel_dim, lam must have size 1 along channel_dim "
                    "(one weight per pixel shared by its channels)"
                )
    # Canonical layout: (B, C, *S), batch dims first in their order.
    other = [d for d in range(x.dim()) if d not in sdims and d != cdim]
    chan = [cdim] if cdim is not None else []
    perm = other + chan + list(sdims)
    xc = x.to(compute_dtype).permute(perm)
    lc = lam_b.permute(perm)
    spatial = tuple(xc.shape[len(other) + len(chan):])
    batch_shape = tuple(xc.shape[: len(other)])
    c = x.shape[cdim] if cdim is not None else 1
    xk = xc.reshape(-1, c, *spatial)
    if cdim is not None:
        lc = lc.narrow(len(other), 0, 1)  # weights shared by the channels
    wk = lc.reshape(-1, 1, 1, *spatial)
    if xk.shape[0] == 0 or xk[0].numel() == 0:
        yk = xk.clone()
        info = torch.zeros(xk.shape[0], 3, dtype=torch.float64)
        info[:, 2] = 1
    else:
        yk, info = _ProxTvNd.apply(xk, wk, norm, float(tol), int(max_iter))
    inv = [0] * len(perm)
    for i, d in enumerate(perm):
        inv[d] = i
    y = yk.reshape(xc.shape).permute(inv).to(x.dtype)
    if not return_info:
        return y
    info = info.detach().cpu()
    conv = info[:, 2].bool().reshape(batch_shape)
    return y, TvInfo(
        stop="tol" if bool(_ops.concrete(conv).all()) else "max_iter",
        iterations=info[:, 0].to(torch.int64).reshape(batch_shape),
        error_bound=info[:, 1].reshape(batch_shape),
        converged=conv,
    )
