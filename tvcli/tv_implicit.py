r"""Exact backward of the n-D TV prox by implicit differentiation.

At the solution ``y`` of ``min 1/2 ||y - x||^2 + sum_i w_i ||(Dy)_i||`` split the
pixels into the *flat* set ``Z`` (``(Dy)_i = 0``) and the rest. Locally (strict
complementarity: the dual is strictly inside its ball on ``Z``) ``y`` stays in the
subspace ``S = {u : (D u)_i = 0 for i in Z}`` -- functions constant on the
connected regions that ``Z``'s edges join -- and on ``S`` the problem is smooth.
Its optimality condition ``P_S (y - x + sum_{i not in Z} D_i^T w_i n_i) = 0``
(``n_i = v_i / ||v_i||``, ``v = Dy``) differentiates to

    M dy = P_S (dx - sum_i D_i^T n_i dw_i),   M = P_S (I + D^T H D) P_S,

with ``H_i = w_i / ||v_i|| (I - n_i n_i^T)`` on the non-flat pixels (0 on ``Z``;
for the anisotropic norm ``H = 0``: its Jacobian is the region average). For an
incoming gradient ``g`` (``M`` is symmetric positive definite on ``S``):

    u = M^{-1} P_S g,    dL/dx = u,    dL/dw_i = -<(D u)_i, n_i>  (0 on Z).

``M`` is applied matrix-free and the system solved by conjugate gradients, per
problem. ``P_S`` is the average over regions, found by label propagation with
pointer jumping. ``Z`` is taken as ``||(Dy)_i|| <= thr`` with ``thr`` 8 sqrt(2)
times the certified RMS error bound of the forward (plus a rounding floor; eight
times the former bound ``sqrt(2 gap / n)``, which was sqrt(2) looser): pixels whose
true difference is 0 fall below it, a true non-zero difference above ``2 thr`` is
never mistaken for flat. Canonical layout as in :mod:`tvcli.tv_nd_ops`, float64.
"""

from __future__ import annotations

import torch

from tvcli.tv_nd_ops import div_t, grad, pixel_norm

__all__ = ["implicit_backward", "CG_RTOL", "CG_MAX_ITER"]

CG_RTOL = 1e-10  # relative residual at which CG stops (per problem)
CG_MAX_ITER = 2000
# thr = factor * certified RMS bound + rounding floor. 8 x the former sqrt(2 gap / n)
# bound; kept the same threshold when the bound became sqrt(gap / n).
_FLAT_FACTOR = 8.0 * 2.0**0.5


def _region_labels(edges: list[torch.Tensor]) -> torch.Tensor:
    """Connected regions of the pixel graph whose edge ``(i, i + e_d)`` exists where
    ``edges[d][i]`` is True (``edges[d]`` of shape ``(B, *S)``, False on the last
    slice along d). Returns int64 region ids ``0..R-1`` of shape ``(B, *S)``."""
    shape = edges[0].shape
    n = edges[0].numel()
    lab = torch.arange(n, device=edges[0].device).reshape(shape)
    while True:
        old = lab.clone()
        for d, e in enumerate(edges):
            ax = 1 + d
            m = shape[ax]
            if m < 2:
                continue
            a = lab.narrow(ax, 0, m - 1)
            b = lab.narrow(ax, 1, m - 1)
            ed = e.narrow(ax, 0, m - 1)
            low = torch.where(ed, torch.minimum(a, b), a)
            a.copy_(low)
            b.copy_(torch.where(ed, torch.minimum(b, low), b))
        flat = lab.reshape(-1)
        while True:  # pointer jumping: follow labels to their roots
            nxt = flat[flat]
            if torch.equal(nxt, flat):
                break
            flat = nxt
        lab = flat.reshape(shape)
        if torch.equal(lab, old):
            break
    return torch.unique(lab, return_inverse=True)[1].reshape(shape)


class _Regions:
    """Average over regions (``P_S``) for ``(B, C, *S)`` tensors."""

    def __init__(self, labels: torch.Tensor, channels: int) -> None:
        self.ids = labels.reshape(-1)
        self.n = int(self.ids.max()) + 1 if self.ids.numel() else 0
        self.count = torch.bincount(self.ids, minlength=self.n).to(torch.float64)
        self.channels = channels

    def average(self, u: torch.Tensor) -> torch.Tensor:
        c = self.channels
        uf = u.movedim(1, -1).reshape(-1, c)
        sums = uf.new_zeros(self.n, c).index_add_(0, self.ids, uf)
        mean = sums / self.count.unsqueeze(1)
        return mean[self.ids].reshape(*u.movedim(1, -1).shape).movedim(-1, 1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).reshape(a.shape[0], -1).sum(dim=1)


def implicit_backward(
    g: torch.Tensor, y: torch.Tensor, w: torch.Tensor, bound: torch.Tensor, norm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``<g, prox(x, w)>`` w.r.t. ``x`` and ``w`` at the solution ``y``.

    Args:
        g: incoming gradient, float64 ``(B, C, *S)``.
        y: the forward's output, float64 ``(B, C, *S)`` (NaN for problems that
            gave NaN: their gradients are NaN).
        w: weights, float64 ``(B, 1, 1, *S)``.
        bound: the forward's certified RMS error bound per problem, ``(B,)``.
        norm: ``"iso"`` or ``"aniso"``.

    Returns:
        ``(grad_x (B, C, *S), grad_w (B, 1, 1, *S))``, float64.
    """
    bsz, c = y.shape[0], y.shape[1]
    nd = y.dim() - 2
    bad = ~torch.isfinite(y.reshape(bsz, -1)).all(dim=1)
    ys = torch.where(bad.reshape(-1, *([1] * (y.dim() - 1))), torch.zeros_like(y), y)
    scale = ys.abs().reshape(bsz, -1).amax(dim=1)
    thr = _FLAT_FACTOR * bound.nan_to_num(0.0) + 1e-12 * (1.0 + scale)
    thr = thr.reshape(-1, *([1] * (nd + 2)))  # (B, 1, 1, 1...) against (B, nd, C, *S)
    v = grad(ys)
    lastmask = torch.ones_like(v[:, :, :1], dtype=torch.bool)  # (B, nd, 1, *S)
    for d in range(nd):
        lastmask[:, d].narrow(2 + d, y.shape[2 + d] - 1, 1).fill_(False)
    if norm == "iso":
        nv = pixel_norm(v)  # (B, 1, 1, *S)
        flat = nv <= thr
        edges = [(flat[:, 0, 0] & lastmask[:, d, 0]) for d in range(nd)]
        live = ~flat
        unit = torch.where(live, v / nv.clamp_min(torch.finfo(v.dtype).tiny), 0.0)
        coef = torch.where(live, w / nv.clamp_min(torch.finfo(v.dtype).tiny), 0.0)
    else:
        flat_e = v.abs() <= thr  # per direction (C = 1 for aniso)
        edges = [(flat_e[:, d, 0] & lastmask[:, d, 0]) for d in range(nd)]
        live = ~flat_e
        unit = torch.where(live, torch.sign(v), 0.0)
        coef = None
    regions = _Regions(_region_labels(edges), c)

    def apply_m(u: torch.Tensor) -> torch.Tensor:
        if coef is None:
            return regions.average(u)
        du = grad(u)
        proj = (du * unit).sum(dim=(1, 2), keepdim=True)
        hdu = coef * (du - unit * proj)
        return regions.average(u + div_t(hdu))

    gs = torch.where(bad.reshape(-1, *([1] * (y.dim() - 1))), torch.zeros_like(g), g)
    rhs = regions.average(gs)
    u = rhs.clone()
    if coef is not None:
        r = rhs - apply_m(u)
        p = r.clone()
        rs = _dot(r, r)
        stop = CG_RTOL**2 * _dot(rhs, rhs)
        view = (-1, *([1] * (y.dim() - 1)))
        for _ in range(CG_MAX_ITER):
            if bool((rs <= stop).all()):
                break
            ap = apply_m(p)
            pap = _dot(p, ap)
            alpha = torch.where(pap > 0, rs / pap.clamp_min(1e-300), 0.0)
            u.add_(alpha.reshape(view) * p)
            r.sub_(alpha.reshape(view) * ap)
            rs_new = _dot(r, r)
            beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-300), 0.0)
            p = r + beta.reshape(view) * p
            rs = rs_new
    gw = -(grad(u) * unit).sum(dim=(1, 2), keepdim=True)  # (B, 1, 1, *S)
    nan = torch.full_like(u, float("nan"))
    bview = (-1, *([1] * (y.dim() - 1)))
    u = torch.where(bad.reshape(bview), nan, u)
    gw = torch.where(bad.reshape(-1, *([1] * y.dim())), torch.full_like(gw, float("nan")), gw)
    return u, gw
