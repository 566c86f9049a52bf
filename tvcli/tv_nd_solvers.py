"""Dual solvers for the n-D TV prox with a certified stopping rule.

Problem, per problem ``b`` of the canonical layout (see :mod:`tvcli.tv_nd_ops`):

    y* = argmin_y 1/2 ||y - x||^2 + sum_i w_i ||(D y)_i||

Dual: ``min_{p in ball(w)} 1/2 ||x - D^T p||^2``; any feasible ``p`` gives the
primal point ``y = x - D^T p`` and the duality gap ``G >= ||y - y*||^2`` (the
primal's suboptimality bounds half of it, the primal being 1-strongly convex, and
the dual's the other half: csrc/core/tv_common.h, ``certified_rms``), so
``sqrt(G / n)`` (``n`` = entries of the problem) is a certified bound on the RMS
error of ``y``. Each problem stops when
that bound is <= ``tol``; stopped problems leave the batch (so late iterations
only cost what is still running).

Two solvers, compared in docs/tv_variants.md:

* ``fgp``: FISTA on the dual (Beck & Teboulle 2009, "fast gradient projection"),
  step ``1 / ||D||^2``;
* ``cp``: Chambolle & Pock 2011, Algorithm 2 (accelerated with the primal's
  strong convexity), ``tau sigma ||D||^2 = 1``.

All state is float64 whatever the input dtype (as in the 2-D anisotropic engine):
the gap is a sum over the whole image and the bound must mean something at 1e-6.
"""

from __future__ import annotations

import math

import torch

from tvcli.tv_nd_ops import div_t, gap_terms, grad, lipschitz, project

__all__ = ["solve", "SOLVERS"]

SOLVERS = ("fgp", "cp")


def _certify(
    x: torch.Tensor, p: torch.Tensor, w: torch.Tensor, norm: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = x - D^T p`` and its RMS error bound ``sqrt(gap / n)`` per problem."""
    y = x - div_t(p)
    gap = gap_terms(p, grad(y), w, norm)
    n = x[0].numel()
    return y, (gap.clamp_min(0) / n).sqrt()


def solve(
    x: torch.Tensor,
    w: torch.Tensor,
    norm: str,
    tol: float,
    max_iter: int,
    *,
    solver: str = "fgp",
    check_every: int = 5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solves every problem of ``x`` (float64 ``(B, C, *S)``, finite) with weights ``w``
    (float64 ``(B, 1, 1, *S)``, finite, >= 0).

    Returns ``(y, iterations, bound)``: ``y`` float64 of ``x``'s shape; ``iterations``
    int64 ``(B,)``; ``bound`` float64 ``(B,)`` the certified RMS error bound of ``y``.
    The bound is checked every ``check_every`` iterations and at ``max_iter``.
    """
    b = x.shape[0]
    y_out = torch.empty_like(x)
    iters = torch.zeros(b, dtype=torch.int64, device=x.device)
    bound = torch.full((b,), math.inf, dtype=torch.float64, device=x.device)
    idx = torch.arange(b, device=x.device)  # problems still running (indices into the batch)
    nd = x.dim() - 2
    lip = lipschitz(nd)
    p = x.new_zeros((b, nd, *x.shape[1:]))
    if solver == "fgp":
        q = p.clone()
        p_old = torch.empty_like(p)
        t = 1.0
    elif solver == "cp":
        tau = sigma = 1.0 / math.sqrt(lip)
        yk = x.clone()
        ybar = x.clone()
    else:
        raise ValueError(f"tvcli: unknown dual solver {solver!r}; expected one of {SOLVERS}")
    xs, ws = x, w
    dq = torch.empty_like(p)
    for it in range(1, max_iter + 1):
        if solver == "fgp":
            # p+ = proj(q + D (x - D^T q) / L); q = p+ + (t - 1) / t+ (p+ - p)
            p_old.copy_(p)
            r = xs - div_t(q)
            grad(r, out=dq)
            torch.add(q, dq, alpha=1.0 / lip, out=p)
            project(p, ws, norm)
            tn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            torch.sub(p, p_old, out=q)
            q.mul_((t - 1.0) / tn).add_(p)
            t = tn
        else:
            # p = proj(p + sigma D ybar); y+ = (y - tau D^T p + tau x) / (1 + tau);
            # theta = 1 / sqrt(1 + 2 tau); tau *= theta; sigma /= theta;
            # ybar = y+ + theta (y+ - y)
            grad(ybar, out=dq)
            p.add_(dq, alpha=sigma)
            project(p, ws, norm)
            yn = (yk - tau * div_t(p) + tau * xs) / (1.0 + tau)
            theta = 1.0 / math.sqrt(1.0 + 2.0 * tau)
            tau *= theta
            sigma /= theta
            torch.sub(yn, yk, out=ybar)
            ybar.mul_(theta).add_(yn)
            yk = yn
        if it % check_every and it != max_iter:
            continue
        y, bnd = _certify(xs, p, ws, norm)
        done = bnd <= tol
        if it == max_iter:
            done = torch.ones_like(done)
        if bool(done.any()):
            sel = idx[done]
            y_out[sel] = y[done]
            iters[sel] = it
            bound[sel] = bnd[done]
            keep = ~done
            if not bool(keep.any()):
                break
            idx, xs, ws, p = idx[keep], xs[keep], ws[keep], p[keep]
            dq = dq[keep]
            if solver == "fgp":
                q, p_old = q[keep], p_old[keep]
            else:
                yk, ybar = yk[keep], ybar[keep]
    return y_out, iters, bound
