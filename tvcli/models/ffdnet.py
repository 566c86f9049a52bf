"""FFDNet-style denoisers (Zhang, Zuo & Zhang 2018), plain and with TV layers.

A cheaper alternative to DnCNN for CPUs: the network runs at half resolution
on the 2x2 pixel-unshuffled image (4C channels) plus a noise-level map, so one
model covers a range of noise levels (a *blind-range* model: the noise level is
an input, not baked into the weights) and a conv layer costs a quarter of
DnCNN's per pixel. Like DnCNN here it is residual (it predicts the noise), so it
starts as the identity. FFDNet-TV wraps it with TV2D-smooth layers as DnCNN-TV
does (Yeh et al. 2022, eq. 14):

    X_t = Prox2D(I, lam_in),    Y = Prox2D(X_t - R(X_t, sigma), lam_out).

Noise levels are standard deviations in [0, 1] intensity units (sigma_255 / 255).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tvcli.models.dncnn import TVWrapped

__all__ = ["FFDNet", "FFDNetTV"]


def _sigma_map(sigma: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) noise-level map for x (N, C', h, w); sigma: a number or (N,)."""
    if sigma is None:
        raise ValueError("this model needs the noise level: call model(x, sigma) with "
                         "sigma in [0, 1] intensity units")
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    return s.expand(x.shape[0], 1, x.shape[2], x.shape[3])


class FFDNet(nn.Module):
    """Residual FFDNet on a 2x2-downsampled image with a noise-level map.

    Args:
        channels: image channels (3 for colour, 1 for gray).
        depth: 3x3 conv layers at half resolution (first and last included).
        width: feature channels.
    Shape: (N, channels, H, W) -> (N, channels, H, W), any H, W (odd sizes are
    edge-padded by one pixel and cropped back).
    Call: ``model(x, sigma)`` with sigma a number or an (N,) tensor in [0, 1] units.
    """

    takes_sigma = True
    tile_multiple = 2  # tiled inference must keep the 2x2 pixel groups

    def __init__(self, channels: int = 3, depth: int = 10, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(4 * channels + 1, width, 3, padding=1),
                                   nn.ReLU(True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(True)]
        layers.append(nn.Conv2d(width, 4 * channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.config = {"channels": channels, "depth": depth, "width": width}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(self.body[-1].weight)  # start as the identity
        nn.init.zeros_(self.body[-1].bias)

    def residual(self, x: torch.Tensor, sigma: float | torch.Tensor | None) -> torch.Tensor:
        """The predicted noise of x (N, C, H, W) at noise level sigma."""
        h, w = x.shape[-2:]
        ph, pw = h % 2, w % 2
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        z = F.pixel_unshuffle(xp, 2)
        r = self.body(torch.cat([z, _sigma_map(sigma, z)], dim=1))
        return F.pixel_shuffle(r, 2)[..., :h, :w]

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None
                ) -> torch.Tensor:
        return x - self.residual(x, sigma)


class FFDNetTV(TVWrapped):
    """FFDNet with TV2D-smooth layers at its input and output (as paper eq. 14).

    Args:
        channels, depth, width: as :class:`FFDNet`.
        lam_init: initial lam of both TV layers, in [0, 1] intensity units.
        iters: proximal-Dykstra iterations per TV layer (the paper's layer mode).
    Shape: (N, channels, H, W) -> (N, channels, H, W); call ``model(x, sigma)``.
    """

    takes_sigma = True
    tile_multiple = 2

    def __init__(self, channels: int = 3, depth: int = 10, width: int = 64,
                 lam_init: float = 0.01, iters: int = 4):
        super().__init__(FFDNet(channels, depth, width), channels, lam_init, iters)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None
                ) -> torch.Tensor:
        return self._denoise(x, sigma)
