"""Independent float64 reference for the 2-D anisotropic TV prox.

A different method from tvcli's (which splits rows / columns and solves 1-D
problems exactly): projected gradient with FISTA momentum and adaptive restart on
the *edge* dual,

    min_{|p_e| <= lam}  1/2 || x - D^T p ||^2,      y = x - D^T p,

with D the forward differences along rows and columns (||D||^2 <= 8), run until
its own duality gap certifies the answer: for this y and feasible p,
gap = lam ||D y||_1 + <y, y - x> >= P(y) - P(y*) >= 1/2 ||y - y*||^2, so
max |y - y*| <= sqrt(2 gap). Vectorised over a batch; slow, for small images.
"""

from __future__ import annotations

import torch


def _d(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return y[:, :, 1:] - y[:, :, :-1], y[:, 1:, :] - y[:, :-1, :]


def _dt(ph: torch.Tensor, pv: torch.Tensor) -> torch.Tensor:
    b, h, w1 = ph.shape
    out = torch.zeros(b, h, w1 + 1, dtype=ph.dtype)
    out[:, :, 1:] += ph
    out[:, :, :-1] -= ph
    out[:, 1:, :] += pv
    out[:, :-1, :] -= pv
    return out


def gap(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lam * TV(y) + <y, y - x> per image: the duality gap when y = x - D^T p, |p| <= lam."""
    dh, dv = _d(y)
    tv = dh.abs().sum((1, 2)) + dv.abs().sum((1, 2))
    return lam * tv + (y * (y - x)).sum((1, 2))


def primal(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """1/2 ||y - x||^2 + lam TV(y) per image."""
    dh, dv = _d(y)
    return 0.5 * ((y - x) ** 2).sum((1, 2)) + lam * (dh.abs().sum((1, 2)) + dv.abs().sum((1, 2)))


def tv2d_reference(
    x: torch.Tensor, lam: torch.Tensor, bound: float = 1e-6, max_iter: int = 100_000
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Prox of (B, H, W) float64 images, lam (B,). Returns (y, certified max-abs error
    bound per image, dual (ph, pv)). Raises if the bound is not reached."""
    x = x.to(torch.float64)
    lam = lam.to(torch.float64)
    b, h, w = x.shape
    lam_h = lam.reshape(b, 1, 1)
    ph = torch.zeros(b, h, w - 1, dtype=torch.float64)
    pv = torch.zeros(b, h - 1, w, dtype=torch.float64)
    qh, qv = ph.clone(), pv.clone()
    t = torch.ones(b, 1, 1, dtype=torch.float64)
    for it in range(1, max_iter + 1):
        dh, dv = _d(x - _dt(qh, qv))
        nh = torch.clamp(qh + dh / 8, -lam_h, lam_h)
        nv = torch.clamp(qv + dv / 8, -lam_h, lam_h)
        # Restart where momentum points uphill (O'Donoghue & Candes).
        up = ((qh - nh) * (nh - ph)).sum((1, 2)) + ((qv - nv) * (nv - pv)).sum((1, 2)) > 0
        tn = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
        beta = torch.where(up.reshape(b, 1, 1), torch.zeros_like(t), (t - 1) / tn)
        t = torch.where(up.reshape(b, 1, 1), torch.ones_like(t), tn)
        qh, qv = nh + beta * (nh - ph), nv + beta * (nv - pv)
        ph, pv = nh, nv
        if it % 200 == 0:
            y = x - _dt(ph, pv)
            err = torch.sqrt(torch.clamp(2 * gap(x, y, lam), min=0))
            if bool((err <= bound).all()):
                return y, err, (ph, pv)
    raise RuntimeError(f"reference did not certify {bound} in {max_iter} iterations")
