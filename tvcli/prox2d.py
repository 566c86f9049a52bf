"""Differentiable 2-D anisotropic total-variation prox and TV sharpening.

Two modes share one function, :func:`prox_tv2d`:

* **paper mode** (``iters=K``): exactly K proximal-Dykstra iterations (Yeh et al.
  2022, Alg. 1), each a 1-D prox over every row then every column. Gradients flow
  through the unrolled iterations by autograd over :func:`tvcli.prox_tv1d`, whose
  backward is exact, so this is the derivative of the K-step map the paper trains.
* **converged mode** (``iters=None``): FISTA on the dual (Chambolle & Pock 2015;
  see ``csrc/cpu/tv2d_cpu.cpp``) until a certified bound on the RMS error is below
  ``tol``. On a 512x512 photo at lam 0.1 it reached max-abs error 1e-3 in 53
  iterations and 1e-4 in 112, where Dykstra was still at 1.3e-3 after 300
  (``docs/convergence_2d.png``). Gradients use the exact derivative of the prox at
  the region structure of the output (constant regions found with a ``tol``-sized
  threshold), not the unrolled iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tvcli import _ops  # noqa: F401  (registers autograd / fake kernels)
from tvcli._extension import ext_has_device
from tvcli.prox import _broadcast_lam, _check_lam_values, prox_tv1d

__all__ = ["Tv2dInfo", "prox_tv2d", "sharpen_tv1d", "sharpen_tv2d"]

_COMPUTE_DTYPES = (torch.float32, torch.float64)


@dataclass
class Tv2dInfo:
    """What stopped :func:`prox_tv2d` and how far it got.

    Attributes:
        stop: ``"iters"`` (paper mode: K iterations done), ``"tol"`` (every image
            reached ``tol``) or ``"max_iter"`` (some image did not).
        iterations: int64 tensor of the batch shape (x's shape without ``dims``):
            iterations run per image.
        error_bound: float64 tensor of the batch shape: a certified upper bound on
            the RMS error ``||Y - Y*||_F / sqrt(H W)`` of each output image against
            the exact prox, ``sqrt(duality_gap / (H W))``; NaN in paper mode
            (no bound is computed there). The max-abs error is at most
            ``sqrt(H W)`` times it and was typically 4-7 times it on photos
            (measured as 3-5 times the former, sqrt(2) looser, bound).
        converged: bool tensor of the batch shape: ``error_bound <= tol``.
    """

    stop: str
    iterations: torch.Tensor
    error_bound: torch.Tensor
    converged: torch.Tensor


def _normalize_dims(x: torch.Tensor, dims: tuple[int, int]) -> tuple[int, int]:
    if len(dims) != 2:
        raise ValueError(f"tvcli: dims must name two dimensions, got {dims!r}")
    d0, d1 = (int(d) for d in dims)
    for d in (d0, d1):
        if not -x.dim() <= d < x.dim():
            raise ValueError(f"tvcli: dim {d} is out of range for x of rank {x.dim()}")
    d0, d1 = d0 % x.dim(), d1 % x.dim()
    if d0 == d1:
        raise ValueError(f"tvcli: dims must be two different dimensions, got {dims!r}")
    return d0, d1


def _dykstra(x: torch.Tensor, lam: torch.Tensor, d0: int, d1: int, iters: int) -> torch.Tensor:
    """Paper Alg. 1: K proximal-Dykstra iterations, rows (along d1) then columns (d0).

    The fallback for devices without the fused op. Images with lam = 0 return x
    exactly, as the fused op does: the loop alone would turn an Inf pixel into NaN
    (P = A - Z = Inf - Inf)."""
    y = x
    p: torch.Tensor | None = None
    q: torch.Tensor | None = None
    for k in range(iters):
        last = k == iters - 1
        a = y if p is None else y + p
        z = prox_tv1d(a, lam, d1)
        if not last:  # P and Q are not needed after the final iteration
            p = a - z
        b = z if q is None else z + q
        y = prox_tv1d(b, lam, d0)
        if not last:
            q = b - y
    # With lam = 0 every 1-D prox is the identity, so y == x except where P or Q
    # became Inf - Inf = NaN; elementwise, no host sync.
    return torch.where((lam == 0) & torch.isnan(y), x, y)


def _finite_lam(lam: torch.Tensor) -> bool:
    """Whether every lam is finite (the CPU op needs it; lam = inf goes through
    prox_tv1d, which handles it). Assumed true while tracing and on other devices:
    the CUDA op's 1-D passes take lam = inf themselves (Condat's solver returns the
    mean), and reading lam back would wait for the GPU."""
    if torch.compiler.is_compiling() or lam.device.type != "cpu":
        return True
    return bool(torch.isfinite(_ops.concrete(lam).detach()).all())


def _dykstra_fused(
    x: torch.Tensor, lam: torch.Tensor, d0: int, d1: int, iters: int, sharp: bool = False
) -> torch.Tensor:
    """Alg. 1 in one C++ op per call (same arithmetic as :func:`_dykstra`): each
    image's iterates stay in cache and the backward replays only saved jump signs.
    Images holding NaN/Inf give NaN, as prox_tv1d would make them. ``sharp``: the op
    returns ``2 * x - prox`` itself, and its backward that of the difference (the
    bits of the expression through autograd; see :func:`_sharpen_paper`)."""
    xm = x.movedim((d0, d1), (-2, -1))
    h, w = xm.shape[-2], xm.shape[-1]
    x3 = xm.reshape(-1, h, w)
    lam3 = lam.movedim((d0, d1), (-2, -1)).expand(*xm.shape[:-2], 1, 1).reshape(-1)
    if x3.shape[0] == 0 or h * w == 0:
        return 2 * x - x if sharp else x.clone()
    # NaN/Inf images are handled inside the op (no extra pass over x here: on a
    # layer's 16 MB activations a torch.isfinite check cost as much as 2 prox passes).
    y3, _signs = _ops.call("prox_tv2d_dykstra", x3.contiguous(), lam3.contiguous(), iters,
                           sharp)
    return y3.reshape(xm.shape).movedim((-2, -1), (d0, d1))


def _fista_torch(
    x3: torch.Tensor, lam3: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The converged-mode loop in plain PyTorch over prox_tv1d (used without the
    compiled 2-D op). x3 (B, H, W), lam3 (B, 1, 1). Returns y and info (B, 3)."""
    b, h, w_ = x3.shape
    v = torch.zeros_like(x3)
    w = torch.zeros_like(x3)
    t = 1.0
    info = torch.zeros(b, 3, dtype=torch.float64, device=x3.device)
    y = x3
    for it in range(1, max_iter + 1):
        z = w + prox_tv1d(x3 - w, lam3, -1)
        y = prox_tv1d(z, lam3, -2)
        vn = z - y
        tn = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        w = vn + ((t - 1.0) / tn) * (vn - v)
        v, t = vn, tn
        with torch.no_grad():
            yd = y.double()
            tv = (yd[:, :, 1:] - yd[:, :, :-1]).abs().sum((1, 2)) + (
                yd[:, 1:, :] - yd[:, :-1, :]
            ).abs().sum((1, 2))
            gap = lam3.reshape(-1).double() * tv + (yd * (yd - x3.double())).sum((1, 2))
            bound = (gap.clamp_min(0) / (h * w_)).sqrt()
        info[:, 0] = it
        info[:, 1] = bound
        if bool((bound <= tol).all()):
            break
    info[:, 2] = (info[:, 1] <= tol).double()
    return y, info


# Images of more values than this are tested a block of rows at a time (float64).
_CONSTANT_CHUNK = 1 << 20


def _constant_ok(x3: torch.Tensor, lam3: torch.Tensor) -> torch.Tensor:
    """Images whose prox is exactly their mean (sufficient test), shape (B,).

    X - mean = (X - row means) + (row means - mean). The first part is D_row^T p
    with |p| bounded by the largest partial sum along a row; the second, spread
    over all columns, is D_col^T q with |q| bounded by the largest partial sum of
    (row means - mean). If lam is at least both, Y = mean satisfies the optimality
    conditions. Catches lam = inf and lam >> data range exactly and cheaply.
    """
    if x3.numel() <= _CONSTANT_CHUNK:
        xd = x3.detach().double()
        rows = xd - xd.mean(dim=2, keepdim=True)
        rb = rows.cumsum(dim=2).abs().amax(dim=(1, 2))
        rm = xd.mean(dim=2) - xd.mean(dim=(1, 2)).unsqueeze(1)
    else:
        # Large images: the same per-row float64 sums a block of rows at a time, so
        # that no float64 copy of the whole image (8 bytes a value, four of them at
        # once above) is made: a 12000x9000 channel peaked 3.5 GB here (issue 27).
        b, h, w = x3.shape
        step = max(1, _CONSTANT_CHUNK // max(1, b * w))
        row_means = torch.empty(b, h, dtype=torch.float64, device=x3.device)
        rb = torch.zeros(b, dtype=torch.float64, device=x3.device)
        for r0 in range(0, h, step):
            xd = x3[:, r0:r0 + step].detach().double()
            m = xd.mean(dim=2, keepdim=True)
            row_means[:, r0:r0 + step] = m.squeeze(2)
            rb = torch.maximum(rb, (xd - m).cumsum(dim=2).abs().amax(dim=(1, 2)))
            del xd, m
        rm = row_means - row_means.mean(dim=1, keepdim=True)
    cb = rm.cumsum(dim=1).abs().amax(dim=1)
    return lam3.detach().reshape(-1).double() >= torch.maximum(rb, cb)


def _converged(
    x3: torch.Tensor, lam3: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Converged prox of (B, H, W) images with lam (B, 1, 1); returns y and info (B, 3)."""
    finite = torch.isfinite(x3.detach()).all(dim=2).all(dim=1)
    constant = _constant_ok(x3, lam3) & finite
    # Images the solver must not see: non-finite (-> NaN) and exactly constant
    # (-> mean, also covers lam = inf). They run with lam = 0 (the identity, free).
    skip = ~finite | constant
    lam_s = torch.where(skip.reshape(-1, 1, 1), torch.zeros_like(lam3), lam3)
    # The image-sized masking below runs only when some image needs it: each
    # torch.where is another copy of the batch (issue 27: peak memory of large images).
    # Under torch.compile the masks always run (no data-dependent branch in a graph).
    tracing = torch.compiler.is_compiling()
    # Under vmap these tests read every entry's values (a shortcut valid for all).
    all_finite = not tracing and bool(_ops.concrete(finite).all())
    x_s = x3 if all_finite else torch.where(finite.reshape(-1, 1, 1), x3, torch.zeros_like(x3))
    if ext_has_device(x3.device.type, "prox_tv2d_solve"):
        y, info = _ops.call("prox_tv2d_solve", x_s.contiguous(),
                            lam_s.reshape(-1).contiguous(), float(tol), int(max_iter), 1,
                            float(tol))
    else:
        y, info = _fista_torch(x_s, lam_s, tol, max_iter)
    del x_s
    if tracing or bool(_ops.concrete(constant).any()):
        mean = x3.mean(dim=(1, 2), keepdim=True).expand_as(x3)
        y = torch.where(constant.reshape(-1, 1, 1), mean, y)
    if not all_finite:
        y = torch.where(finite.reshape(-1, 1, 1), y, torch.full_like(y, float("nan")))
    return y, info


def prox_tv2d(
    x: torch.Tensor,
    lam: float | torch.Tensor,
    dims: tuple[int, int] = (-2, -1),
    *,
    iters: int | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Tv2dInfo]:
    r"""2-D anisotropic total-variation proximity operator, per image (per channel).

    For every 2-D slice ``X`` of ``x`` over ``dims = (H-dim, W-dim)`` it returns

    .. math:: Y = \arg\min_Y \tfrac12 \|Y - X\|_F^2 + \lambda \Big(\sum_{i,j}
              |Y_{i,j+1} - Y_{i,j}| + |Y_{i+1,j} - Y_{i,j}|\Big),

    exactly in the limit; see ``iters`` and ``tol`` for what is computed.
    Differentiable in ``x`` and ``lam``.

    Args:
        x: tensor of shape ``(*, H, W)`` (or any shape, with ``dims`` naming H and W),
            float32 or float64 (float16 / bfloat16 are computed in float32).
            Intensities in any unit; images read by tvcli are in [0, 1].
        lam: weight in the units of ``x``, >= 0: a number, or a tensor broadcastable
            to ``x`` with size 1 along both ``dims`` (scalar, per channel ``(C, 1, 1)``,
            per sample ``(N, 1, 1, 1)``, per image).
        dims: the (row-index, column-index) dimensions of each image. A "row" is a
            1-D signal along ``dims[1]``, a "column" one along ``dims[0]``.
        iters: ``K`` >= 1 runs exactly K proximal-Dykstra iterations (paper mode,
            Alg. 1: rows then columns; gradients through the unrolled iterations).
            ``None`` runs converged mode.
        tol: converged mode: stop an image once the certified bound on its RMS error
            against the exact prox, ``sqrt(duality_gap / (H W))``, is <= tol (in
            the units of ``x``). Also the threshold below which neighbouring output
            values count as one constant region in the backward.
        max_iter: converged mode: iteration cap.
        return_info: also return a :class:`Tv2dInfo` (stop reason, iterations,
            error bound per image).

    Returns:
        ``Y`` of ``x``'s shape and dtype, or ``(Y, info)`` when ``return_info``.

    Notes:
        * ``lam == 0`` returns ``x`` exactly (both modes).
        * Converged mode: an image holding NaN/Inf gives NaN; an image whose prox is
          exactly its mean (``lam = inf``, or lam above a cheap sufficient bound)
          returns the mean without iterating. Its backward is the exact derivative of
          the prox for the constant regions of ``Y`` (neighbours within ``tol`` are
          merged); it matches finite differences when the solve is tight (tests use
          float64, ``tol=1e-11``); at loose ``tol`` regions may be split or merged
          wrongly and the gradient is then that of a nearby region structure.
        * Work per iteration: two exact 1-D passes (rows, columns) over the image.

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> y = prox_tv2d(x, 0.1)                       # converged, RMS error <= 1e-4
        >>> y4 = prox_tv2d(x, torch.rand(3, 1, 1), iters=4)   # paper layer, per channel
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"tvcli: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"tvcli: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError("tvcli: x must have at least two dimensions")
    d0, d1 = _normalize_dims(x, dims)
    if iters is not None and (isinstance(iters, bool) or int(iters) != iters or iters < 1):
        raise ValueError(f"tvcli: iters must be a positive integer or None, got {iters!r}")
    if not tol >= 0:
        raise ValueError(f"tvcli: tol must be >= 0, got {tol!r}")
    if int(max_iter) < 1:
        raise ValueError(f"tvcli: max_iter must be >= 1, got {max_iter!r}")
    compute_dtype = x.dtype if x.dtype in _COMPUTE_DTYPES else torch.float32
    lam_b = _broadcast_lam(lam, x, (d0, d1), compute_dtype)
    _check_lam_values(lam if isinstance(lam, torch.Tensor) else float(lam))
    xc = x.to(compute_dtype)
    batch_shape = [s for i, s in enumerate(x.shape) if i not in (d0, d1)]

    if iters is not None:
        if ext_has_device(xc.device.type, "prox_tv2d_dykstra") and _finite_lam(lam_b):
            y = _dykstra_fused(xc, lam_b, d0, d1, int(iters)).to(x.dtype)
        else:
            y = _dykstra(xc, lam_b, d0, d1, int(iters)).to(x.dtype)
        if not return_info:
            return y
        info = Tv2dInfo(
            stop="iters",
            iterations=torch.full(batch_shape, int(iters), dtype=torch.int64),
            error_bound=torch.full(batch_shape, float("nan"), dtype=torch.float64),
            converged=torch.zeros(batch_shape, dtype=torch.bool),
        )
        return y, info

    # Converged mode on a (B, H, W) view: images last, one lam per image.
    xm = xc.movedim((d0, d1), (-2, -1))
    h, w = xm.shape[-2], xm.shape[-1]
    x3 = xm.reshape(-1, h, w)
    lam3 = lam_b.movedim((d0, d1), (-2, -1)).expand(*xm.shape[:-2], 1, 1).reshape(-1, 1, 1)
    if x3.shape[0] == 0 or h * w == 0:
        y3, info3 = x3.clone(), torch.zeros(x3.shape[0], 3, dtype=torch.float64)
        info3[:, 2] = 1
    else:
        y3, info3 = _converged(x3, lam3, float(tol), int(max_iter))
    y = y3.reshape(xm.shape).movedim((-2, -1), (d0, d1)).to(x.dtype)
    if not return_info:
        return y
    info3 = info3.detach().cpu()
    conv = info3[:, 2].bool().reshape(batch_shape)
    info = Tv2dInfo(
        stop="tol" if bool(_ops.concrete(conv).all()) else "max_iter",
        iterations=info3[:, 0].to(torch.int64).reshape(batch_shape),
        error_bound=info3[:, 1].reshape(batch_shape),
        converged=conv,
    )
    return y, info


def sharpen_tv1d(
    x: torch.Tensor, lam: float | torch.Tensor, dim: int = -1, **kwargs
) -> torch.Tensor:
    r"""TV sharpening along one dimension (paper eq. 4): ``2 x - prox_tv1d(x, lam, dim)``.

    Adds back the detail that the 1-D TV prox removes. Same arguments, shapes and
    dtypes as :func:`tvcli.prox_tv1d`; ``lam == 0`` returns ``x`` exactly.
    """
    return 2 * x - prox_tv1d(x, lam, dim, **kwargs)


def _sharpen_paper(
    x: torch.Tensor, lam: float | torch.Tensor, dims: tuple[int, int], iters: int
) -> torch.Tensor:
    """``2 * x - prox_tv2d(x, lam, dims, iters=iters)``: the same values and, through
    autograd, the same gradients bit for bit, but where the fused paper-mode op runs
    (float32 / float64 ``x`` on a device with the op, finite lam) the op writes the
    difference itself and its backward returns ``2 g - J^T g`` (the prox's backward
    of ``-g`` plus ``2 g``, as autograd sums them), without the two fresh tensors
    of the expression forward and the three of its backward. Elsewhere (half types,
    whose ``2 * x - y`` rounds in the half type; lam = inf; the fallback without the
    engine) the expression, as ``y = prox_tv2d(...); 2 * x - y``."""
    if (isinstance(x, torch.Tensor) and x.dtype in _COMPUTE_DTYPES and x.dim() >= 2
            and isinstance(iters, int) and not isinstance(iters, bool) and iters >= 1
            and ext_has_device(x.device.type, "prox_tv2d_dykstra")):
        d0, d1 = _normalize_dims(x, dims)
        lam_b = _broadcast_lam(lam, x, (d0, d1), x.dtype)
        _check_lam_values(lam if isinstance(lam, torch.Tensor) else float(lam))
        if _finite_lam(lam_b):
            return _dykstra_fused(x, lam_b, d0, d1, iters, sharp=True)
    # The prox first, then the product, as TVLayer always wrote it: autograd then
    # adds the prox's gradient to 2 g (the order decides only which NaN survives).
    y = prox_tv2d(x, lam, dims, iters=iters)
    return 2 * x - y


def sharpen_tv2d(
    x: torch.Tensor, lam: float | torch.Tensor, dims: tuple[int, int] = (-2, -1), **kwargs
) -> torch.Tensor:
    r"""2-D anisotropic TV sharpening (paper eq. 4): ``2 X - prox_tv2d(X, lam)``.

    Same arguments as :func:`prox_tv2d` (``iters``, ``tol``, ``max_iter``), returns a
    tensor of ``x``'s shape and dtype (``return_info`` is not accepted here).
    ``lam == 0`` returns ``x`` exactly.
    """
    if kwargs.get("return_info"):
        raise ValueError("tvcli: sharpen_tv2d does not return info; call prox_tv2d")
    return 2 * x - prox_tv2d(x, lam, dims, **kwargs)
