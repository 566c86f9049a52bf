"""Neural-network modules: the differentiable TV layer of Yeh et al. (2022), section 3.1."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tvcli.prox import prox_tv1d
from tvcli.prox2d import _sharpen_paper, prox_tv2d
from tvcli.prox_nd import NORMS, prox_tv

__all__ = ["TVLayer", "learned_lams"]

_MODES = ("smooth", "sharp")
_DIRECTIONS = ("2d", "row", "col")


def _inverse_softplus(value: float) -> float:
    """p with softplus(p) = value > 0, stable for tiny and large values."""
    # log(exp(v) - 1) = v + log(1 - exp(-v)); the right side neither overflows for
    # large v nor loses tiny v to rounding.
    return value + math.log(-math.expm1(-value))


class TVLayer(nn.Module):
    r"""Total-variation layer: per-channel TV smoothing or sharpening with learned lam.

    For input ``X`` of shape ``(N, C, H, W)`` it computes, per sample and channel c,

    * ``mode="smooth"``: ``Y_c = prox(X_c, lam_c)`` (paper eq. 3),
    * ``mode="sharp"``: ``Y_c = 2 X_c - prox(X_c, lam_c)`` (paper eq. 4),

    where ``prox`` is the 2-D anisotropic TV prox (``direction="2d"``, K proximal-
    Dykstra iterations, paper Alg. 1), or the exact 1-D TV prox along each row
    (``"row"``: along W) or each column (``"col"``: along H). With ``norm="iso"``
    (``direction="2d"`` only) it is the isotropic TV prox per channel
    (:func:`tvcli.prox_tv`), converged to a certified RMS error ``tol`` and
    differentiated implicitly at the solution (``iters`` does not apply).
    ``lam_c = softplus(p_c) > 0`` with a trainable ``p`` (``lam_param``), one per
    channel or one shared by all channels.

    Behaviour as lam -> 0: the prox tends to the identity (for the 1-D prox each
    output moves at most ``2 lam`` from the input), so both modes tend to ``Y = X``;
    a network can switch the layer off by driving ``p`` to -inf (paper eq. 5). An
    explicit ``lam=0`` (per-call override or ``learn_lam=False, lam_init=0``) gives
    ``Y == X`` exactly.

    Args:
        num_channels: C, the channel count of the input.
        mode: ``"smooth"`` or ``"sharp"``.
        direction: ``"2d"``, ``"row"`` or ``"col"``.
        lam_init: initial lam (> 0 when learned; >= 0 when fixed), in the units of
            the input (e.g. [0, 1] intensities). ``softplus(p)`` equals it at init.
        shared_lam: one lam for all channels instead of one per channel.
        learn_lam: ``False`` keeps lam fixed at ``lam_init`` (a buffer, not a
            parameter; the paper's WSOL use with lam = 1).
        iters: Dykstra iterations for ``direction="2d"`` (paper: 3-4); ``None`` runs
            the converged 2-D prox (``prox_tv2d(..., iters=None)``) instead.
            Anisotropic only.
        norm: ``"aniso"`` (the paper's) or ``"iso"`` (isotropic, ``direction="2d"``).
        tol: ``norm="iso"``: certified RMS error of the prox (units of the input).

    Shape:
        input ``(N, C, H, W)``, float32/float64 (half types computed in float32);
        output the same shape and dtype.

    Example:
        >>> layer = TVLayer(3, mode="sharp", lam_init=0.05)
        >>> y = layer(torch.rand(8, 3, 32, 32))
        >>> y0 = layer(torch.rand(8, 3, 32, 32), lam=0.0)   # per-call override
    """

    def __init__(
        self,
        num_channels: int,
        mode: str = "smooth",
        direction: str = "2d",
        lam_init: float = 0.05,
        shared_lam: bool = False,
        learn_lam: bool = True,
        iters: int | None = 4,
        norm: str = "aniso",
        tol: float = 1e-3,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"tvcli: norm must be one of {NORMS}, got {norm!r}")
        if norm == "iso" and direction != "2d":
            raise ValueError("tvcli: norm='iso' needs direction='2d'")
        if not tol > 0:
            raise ValueError(f"tvcli: tol must be > 0, got {tol!r}")
        if mode not in _MODES:
            raise ValueError(f"tvcli: mode must be one of {_MODES}, got {mode!r}")
        if direction not in _DIRECTIONS:
            raise ValueError(f"tvcli: direction must be one of {_DIRECTIONS}, got {direction!r}")
        if int(num_channels) < 1:
            raise ValueError(f"tvcli: num_channels must be >= 1, got {num_channels!r}")
        if iters is not None and int(iters) < 1:
            raise ValueError(f"tvcli: iters must be >= 1 or None, got {iters!r}")
        lam_init = float(lam_init)
        if learn_lam and not (lam_init > 0 and math.isfinite(lam_init)):
            raise ValueError(
                "tvcli: a learned lam needs 0 < lam_init < inf (softplus never reaches 0); "
                f"got {lam_init!r}. Use learn_lam=False for lam = 0."
            )
        if not learn_lam and not lam_init >= 0:
            raise ValueError(f"tvcli: lam_init must be >= 0, got {lam_init!r}")
        self.num_channels = int(num_channels)
        self.mode = mode
        self.direction = direction
        self.lam_init = lam_init
        self.shared_lam = bool(shared_lam)
        self.learn_lam = bool(learn_lam)
        self.iters = None if iters is None else int(iters)
        self.norm = norm
        self.tol = float(tol)
        n = 1 if self.shared_lam else self.num_channels
        if self.learn_lam:
            self.lam_param = nn.Parameter(torch.full((n,), _inverse_softplus(lam_init)))
        else:
            # A fixed lam is stored as lam itself (softplus cannot represent 0).
            self.register_buffer("lam_fixed", torch.full((n,), lam_init))

    @property
    def lam(self) -> torch.Tensor:
        """Current lam, shape ``(C,)`` or ``(1,)`` when shared; > 0 when learned."""
        if self.learn_lam:
            return F.softplus(self.lam_param)
        return self.lam_fixed

    def forward(self, x: torch.Tensor, lam: float | torch.Tensor | None = None) -> torch.Tensor:
        """Applies the layer.

        Args:
            x: ``(N, C, H, W)`` tensor with ``C == num_channels``.
            lam: optional override of the layer's lam for this call: a number or a
                tensor of shape ``(C,)`` or broadcastable to ``(N, C, 1, 1)``;
                gradients flow into it.

        Returns:
            ``(N, C, H, W)`` tensor of x's dtype.
        """
        if x.dim() != 4 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"tvcli: TVLayer({self.num_channels}) expects (N, {self.num_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        lam_t: float | torch.Tensor = self.lam if lam is None else lam
        if isinstance(lam_t, torch.Tensor) and lam_t.dim() == 1:
            lam_t = lam_t.reshape(-1, 1, 1)  # (C,) or (1,) -> per channel over H, W
        if self.norm == "iso":
            y = prox_tv(x, lam_t, (-2, -1), norm="iso", tol=self.tol)
        elif self.direction == "2d" and self.mode == "sharp" and self.iters is not None:
            # 2 x - prox inside the fused op where it runs (same bits as below).
            return _sharpen_paper(x, lam_t, (-2, -1), self.iters)
        elif self.direction == "2d":
            y = prox_tv2d(x, lam_t, (-2, -1), iters=self.iters)
        else:
            y = prox_tv1d(x, lam_t, -1 if self.direction == "row" else -2)
        if self.mode == "sharp":
            y = 2 * x - y
        return y

    def extra_repr(self) -> str:
        return (
            f"num_channels={self.num_channels}, mode={self.mode!r}, "
            f"direction={self.direction!r}, lam_init={self.lam_init}, "
            f"shared_lam={self.shared_lam}, learn_lam={self.learn_lam}, iters={self.iters}"
            + (f", norm='iso', tol={self.tol}" if self.norm == "iso" else "")
        )


def learned_lams(model: nn.Module) -> dict[str, list[float]]:
    """The current lam of every TV layer with a learned lam in ``model``.

    Returns ``{module name: [lam per channel]}`` (one value when the layer shares
    its lam), in the units of the layer's input, in module order; ``{}`` for a
    model without learned TV layers. Works for any model, whether or not it has a
    ``lams()`` method (the names say which layer is which: e.g. ``blocks.0.tv``,
    ``tv_in``, ``tv_sharp.1``).
    """
    return {name: [float(v) for v in m.lam.detach().float().cpu().reshape(-1)]
            for name, m in model.named_modules()
            if isinstance(m, TVLayer) and m.learn_lam}
