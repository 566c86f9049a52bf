"""DnCNN (Zhang et al. 2017) and DnCNN-TV (Yeh et al. 2022, eq. 14).

Both map a noisy image (N, C, H, W) in [0, 1] to a denoised one of the same
shape. DnCNN is residual: a plain stack of 3x3 convolutions predicts the noise,
which is subtracted from the input. DnCNN-TV wraps the same network with
TV2D-smooth layers (a learned per-channel lam) at its input and output:

    X_t = Prox2D(I, lam_in),    Y = Prox2D(X_t - R(X_t), lam_out).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DnCNN", "DnCNNTV", "TVWrapped"]


class DnCNN(nn.Module):
    """The DnCNN denoiser.

    Args:
        channels: image channels (3 for colour, 1 for gray).
        depth: number of 3x3 conv layers (17 in the paper's baseline).
        width: feature channels (64).
    Shape: (N, channels, H, W) -> (N, channels, H, W), any H, W.
    """

    takes_sigma = False  # trained for one noise level: model(x)

    def __init__(self, channels: int = 3, depth: int = 17, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.config = {"channels": channels, "depth": depth, "width": width}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        # start as the identity: the last layer predicts zero noise
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted noise for input x."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


class TVWrapped(nn.Module):
    """TV2D-smooth layers (learned per-channel lam) around a residual denoiser, as
    paper eq. 14: ``X_t = Prox2D(I, lam_in)``, ``Y = Prox2D(X_t - R(X_t), lam_out)``.

    Args:
        net: a module with ``residual(x, *extra)`` and a ``config`` dict.
        channels: image channels.
        lam_init: initial lam of both TV layers, in [0, 1] intensity units.
        iters: proximal-Dykstra iterations per TV layer (the paper's layer mode).
    """

    def __init__(self, net: nn.Module, channels: int, lam_init: float, iters: int):
        super().__init__()
        from tvcli.nn import TVLayer

        self.net = net
        self.tv_in = TVLayer(channels, mode="smooth", direction="2d", lam_init=lam_init,
                             iters=iters)
        self.tv_out = TVLayer(channels, mode="smooth", direction="2d", lam_init=lam_init,
                              iters=iters)
        self.config = {**net.config, "lam_init": lam_init, "iters": iters}

    def _denoise(self, x: torch.Tensor, *extra) -> torch.Tensor:
        xt = self.tv_in(x)
        return self.tv_out(xt - self.net.residual(xt, *extra))


class DnCNNTV(TVWrapped):
    """DnCNN with TV2D-smooth layers at its input and output (paper eq. 14).

    Args:
        channels, depth, width: as :class:`DnCNN`.
        lam_init: initial lam of both TV layers, in [0, 1] intensity units.
        iters: proximal-Dykstra iterations per TV layer (the paper's layer mode).
    Shape: (N, channels, H, W) -> (N, channels, H, W).
    """

    takes_sigma = False

    def __init__(self, channels: int = 3, depth: int = 17, width: int = 64,
                 lam_init: float = 0.01, iters: int = 4):
        super().__init__(DnCNN(channels, depth, width), channels, lam_init, iters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._denoise(x)
