"""Finite differences, dual projections and the duality gap of n-D total variation.

Everything here works on the *canonical layout* used by :mod:`tvcli.prox_nd`:

* images ``y`` of shape ``(B, C, *S)``: ``B`` independent problems, ``C`` channels
  that share one norm (vectorial TV; ``C = 1`` otherwise), ``S`` the ``nd`` spatial
  sizes;
* duals / gradients ``p`` of shape ``(B, nd, C, *S)``: one component per spatial
  direction;
* weights ``w`` of shape ``(B, 1, 1, *S)`` (broadcast over directions and channels).

Discretisation (DESIGN.md section 10, scikit-image's convention): forward
differences ``(D_d y)[i] = y[i + e_d] - y[i]``, and 0 on the last slice along ``d``
(Neumann boundary). ``||D||^2 <= 4 nd``.

Norms: ``"iso"`` groups all directions and channels of a pixel into one l2 norm
(with ``C = 1`` that is isotropic TV, with ``C > 1`` colour/vectorial TV);
``"aniso"`` takes the absolute value of every entry.
"""

from __future__ import annotations

import torch

__all__ = ["grad", "div_t", "project", "pixel_norm", "gap_terms", "lipschitz"]


def lipschitz(nd: int) -> float:
    """Upper bound of ``||D||^2`` for forward differences in ``nd`` dimensions."""
    return 4.0 * nd


def grad(y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``D y``: ``(B, C, *S)`` -> ``(B, nd, C, *S)``, 0 on each direction's last slice."""
    nd = y.dim() - 2
    if out is None:
        out = y.new_empty((y.shape[0], nd, *y.shape[1:]))
    for d in range(nd):
        ax = 2 + d  # axis of direction d in y
        n = y.shape[ax]
        od = out[:, d]
        if n > 1:
            torch.sub(y.narrow(ax, 1, n - 1), y.narrow(ax, 0, n - 1), out=od.narrow(ax, 0, n - 1))
        od.narrow(ax, n - 1, 1).zero_()
    return out


def div_t(p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``D^T p``: ``(B, nd, C, *S)`` -> ``(B, C, *S)``.

    ``(D_d^T q)[j] = q[j - e_d] - q[j]`` with ``q[-1] = 0``; ``p`` must be 0 on each
    direction's last slice (every ``p`` built from :func:`grad` and :func:`project`
    is).
    """
    nd = p.shape[1]
    if out is None:
        out = p.new_empty((p.shape[0], *p.shape[2:]))
    torch.sum(p, dim=1, out=out)
    out.neg_()
    for d in range(nd):
        ax = 2 + d
        n = out.shape[ax]
        if n > 1:
            out.narrow(ax, 1, n - 1).add_(p[:, d].narrow(ax, 0, n - 1))
    return out


def pixel_norm(p: torch.Tensor) -> torch.Tensor:
    """l2 norm over directions and channels: ``(B, nd, C, *S)`` -> ``(B, 1, 1, *S)``."""
    return p.square().sum(dim=(1, 2), keepdim=True).sqrt_()


def project(p: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """Projects ``p`` in place onto the dual ball of radius ``w`` (finite, >= 0).

    ``"iso"``: each pixel's vector (directions x channels) onto the l2 ball of radius
    ``w``; ``"aniso"``: each entry onto ``[-w, w]``. Returns ``p``.
    """
    if norm == "aniso":
        return torch.maximum(torch.minimum(p, w, out=p), -w, out=p)
    nrm = pixel_norm(p)
    # w / max(|p|, w): 1 inside the ball (w / w is exactly 1), the shrink factor
    # outside; the tiny floor makes w = 0, p = 0 give 0 instead of 0 / 0.
    scale = w / torch.maximum(nrm, w).clamp_min_(torch.finfo(p.dtype).tiny)
    return p.mul_(scale)


def gap_terms(p: torch.Tensor, dy: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-problem duality gap ``sum_i w_i ||(Dy)_i|| - <p_i, (Dy)_i>``, shape ``(B,)``,
    plus an upper bound of the rounding error of that evaluation.

    Equals ``TV_w(y) + <y, y - x>`` for ``y = x - D^T p`` (``<y - x, y> = -<D^T p, y>``),
    but as a sum of non-negative terms (``||p_i|| <= w_i``), so it does not lose its
    digits to the cancellation of two large sums. Each term is computed with a
    relative error of at most ``(k + 2) eps`` of ``w_i ||(Dy)_i||`` (``k`` entries per
    pixel; ``|<p_i, (Dy)_i>| <= w_i ||(Dy)_i||``): that allowance, doubled, is added,
    so a gap that rounds to 0 still certifies only what float64 can (an RMS error of
    ~1e-9 on [0, 1] images), never a false 0.
    """
    k = p.shape[1] * p.shape[2] if norm == "iso" else 1
    if norm == "aniso":
        size = w * dy.abs()
        t = size - p * dy
    else:
        size = w * pixel_norm(dy)
        t = size - (p * dy).sum(dim=(1, 2), keepdim=True)
    slack = 2.0 * (k + 2) * torch.finfo(p.dtype).eps * size
    return (t + slack).reshape(t.shape[0], -1).sum(dim=1)
