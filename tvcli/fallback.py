"""Pure-PyTorch 1-D TV prox: used when the compiled engine is missing, and as an
independent test oracle.

Method: FISTA with adaptive restart on the dual problem

    min_{|z_n| <= lam}  1/2 || x - D^T z ||^2,      y = x - D^T z,

where (D^T z)_i = z_{i-1} - z_i (z_{-1} = z_{N-1} = 0). Every ``check_every``
iterations the current active set {n : |z_n| = lam} is "polished": each segment
between active indices gets its exact value (sum x + z_right - z_left) / length,
and the polished signal is accepted once it satisfies the optimality conditions
(u = cumsum(x - y): |u_n| <= lam, u_{N-1} = 0, u_n = -lam * sign(y_{n+1} - y_n) at
jumps) to rounding. Accepted signals are exact and piecewise constant, like the
direct solver's. The special cases (lam = 0, N = 1, non-finite input, lam large
enough for a constant solution) follow the C++ engine exactly.

Everything is vectorized over the batch; cost grows with N^2 for long signals
(the dual is ill-conditioned), so this path is for small problems and tests.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["prox_tv1d_rows", "prox_tv1d_rows_backward"]


def _dt(z: torch.Tensor) -> torch.Tensor:
    """(D^T z)_i = z_{i-1} - z_i for z of shape (B, N-1); returns (B, N)."""
    zp = torch.nn.functional.pad(z, (1, 1))
    return zp[:, :-1] - zp[:, 1:]


def _segment_mean(values: torch.Tensor, seg: torch.Tensor, nseg: int) -> torch.Tensor:
    """Per-element mean of ``values`` over its segment; ``seg`` holds global ids."""
    flat = values.reshape(-1)
    ids = seg.reshape(-1)
    sums = torch.zeros(nseg, dtype=values.dtype, device=values.device).index_add_(0, ids, flat)
    counts = torch.zeros(nseg, dtype=values.dtype, device=values.device).index_add_(
        0, ids, torch.ones_like(flat)
    )
    return (sums / counts)[ids].reshape(values.shape)


def _polish(x: torch.Tensor, z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Exact segment values for the active set of the dual iterate z."""
    b, n = x.shape
    zact = torch.where(z.abs() >= lam, z, torch.zeros_like(z))
    jump = zact != 0
    seg = torch.cumsum(torch.nn.functional.pad(jump, (1, 0)).to(torch.int64), dim=1)
    seg = seg + torch.arange(b, device=x.device).unsqueeze(1) * n
    w = x + torch.nn.functional.pad(zact, (0, 1)) - torch.nn.functional.pad(zact, (1, 0))
    return _segment_mean(w, seg, b * n)


def _is_optimal(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Per-row check of the optimality conditions, to rounding; shape (B,)."""
    scale = x.abs().amax(dim=1, keepdim=True) + lam
    tol = 64 * torch.finfo(x.dtype).eps * x.shape[1] * scale
    u = torch.cumsum(x - y, dim=1)
    ok = u[:, -1].abs() <= tol[:, 0]
    inner = u[:, :-1]
    ok &= (inner.abs() <= lam + tol).all(dim=1)
    dy = torch.sign(y[:, 1:] - y[:, :-1])
    at_jump = dy != 0
    ok &= (~at_jump | ((inner + lam * dy).abs() <= tol)).all(dim=1)
    return ok


def _solve_dual(
    x: torch.Tensor, lam: torch.Tensor, max_iter: int, check_every: int
) -> tuple[torch.Tensor, int]:
    """FISTA on rows of x (B, N), lam (B, 1) > 0, finite. Returns (y, unconverged)."""
    b, n = x.shape
    z = torch.zeros(b, n - 1, dtype=x.dtype, device=x.device)
    v = z.clone()
    t = torch.ones(b, 1, dtype=x.dtype, device=x.device)
    out = _dt(z).neg_().add_(x)
    done = torch.zeros(b, dtype=torch.bool, device=x.device)
    for it in range(1, max_iter + 1):
        yv = x - _dt(v)
        z_new = torch.clamp(v + 0.25 * (yv[:, 1:] - yv[:, :-1]), -lam, lam)
        # Adaptive restart (O'Donoghue & Candes): drop momentum where it points uphill.
        restart = ((v - z_new) * (z_new - z)).sum(dim=1, keepdim=True) > 0
        t_new = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
        beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(restart, torch.ones_like(t), t_new)
        v = z_new + beta * (z_new - z)
        z = z_new
        if it % check_every == 0 or it == max_iter:
            y_pol = _polish(x, z, lam)
            ok = _is_optimal(x, y_pol, lam) & ~done
            out[ok] = y_pol[ok]
            done |= ok
            if bool(done.all()):
                return out, 0
    rest = ~done
    out[rest] = (x - _dt(z))[rest]
    return out, int(rest.sum())


def prox_tv1d_rows(
    x: torch.Tensor, lam: torch.Tensor, max_iter: int = 100_000, check_every: int = 20
) -> torch.Tensor:
    """1-D TV prox of each row of ``x``.

    Args:
        x: (B, N) float tensor.
        lam: (B, 1) tensor of x's dtype, >= 0 (NaN or negative gives a NaN row).
    Returns:
        (B, N) tensor of x's dtype. Computed in float64.
    """
    dtype = x.dtype
    x64 = x.to(torch.float64)
    lam64 = lam.to(torch.float64).expand(x.shape[0], 1)
    b, n = x64.shape
    y = x64.clone()
    if b == 0 or n == 0:
        return y.to(dtype)
    bad = ~torch.isfinite(x64).all(dim=1) | torch.isnan(lam64[:, 0]) | (lam64[:, 0] < 0)
    identity = (lam64[:, 0] == 0) | (n == 1)
    span = x64.amax(dim=1) - x64.amin(dim=1)
    constant = ~identity & ~bad & (lam64[:, 0] >= 0.25 * n * span)
    y[constant] = x64[constant].mean(dim=1, keepdim=True).expand(-1, n)
    y[bad & ~identity] = float("nan")
    solve = ~(bad | identity | constant)
    if bool(solve.any()):
        ys, unconverged = _solve_dual(x64[solve], lam64[solve], max_iter, check_every)
        y[solve] = ys
        if unconverged:
            warnings.warn(
                f"tvcli fallback: {unconverged} signal(s) of length {n} did not reach the "
                f"exact solution in {max_iter} iterations; returning the last iterate",
                RuntimeWarning,
                stacklevel=2,
            )
    return y.to(dtype)


def prox_tv1d_rows_backward(
    grad_y: torch.Tensor, y: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact backward over runs of equal values of y (DESIGN.md section 3).

    Args: grad_y, y: (B, N); lam: (B, 1). Returns (grad_x (B, N), grad_lam (B, 1)).
    """
    b, n = y.shape
    g = grad_y.to(torch.float64)
    y64 = y.to(torch.float64)
    if b == 0 or n == 0:
        return grad_y.clone(), torch.zeros_like(lam)
    d = torch.sign(y64[:, 1:] - y64[:, :-1])
    start = torch.nn.functional.pad(y64[:, 1:] != y64[:, :-1], (1, 0), value=True)
    seg = torch.cumsum(start.to(torch.int64), dim=1) - 1
    seg = seg + torch.arange(b, device=y.device).unsqueeze(1) * n
    gmean = _segment_mean(g, seg, b * n)
    zeros = torch.zeros(b * n, dtype=g.dtype, device=g.device)
    s_right = zeros.clone().index_add_(0, seg[:, :-1].reshape(-1), d.reshape(-1))
    s_left = zeros.index_add_(0, seg[:, 1:].reshape(-1), d.reshape(-1))
    # Each run contributes (s_right - s_left) * mean(g) once; spread it over its
    # elements as (s_right - s_left) * g_i / n_run, which sums to the same.
    counts = torch.zeros(b * n, dtype=g.dtype, device=g.device).index_add_(
        0, seg.reshape(-1), torch.ones(b * n, dtype=g.dtype, device=g.device)
    )
    ids = seg.reshape(-1)
    per_elem = ((s_right - s_left)[ids] * g.reshape(-1) / counts[ids]).reshape(b, n)
    grad_lam = per_elem.sum(dim=1, keepdim=True)
    identity = (lam.to(torch.float64).expand(b, 1) == 0)[:, 0]
    grad_x = torch.where(identity.unsqueeze(1), g, gmean)
    bad = ~torch.isfinite(y64).all(dim=1)
    grad_x[bad] = float("nan")
    grad_lam[bad] = float("nan")
    return grad_x.to(grad_y.dtype), grad_lam.to(lam.dtype)
