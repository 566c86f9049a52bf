"""Edge-preserving smoothing networks: Zhu et al.'s ResNet and Yeh et al.'s ResNet-TV.

Both map a photo (N, 3, H, W) in [0, 1] to its smoothed version, same shape.

ResNet (Zhu et al. 2019, the baseline of the paper's Table 5): a 3x3 conv, 16
residual blocks (conv-ReLU-conv plus the block's input), then three 3x3 convs
(conv-ReLU-conv-ReLU-conv) whose output is added to the input photo (a skip
connection from the input: the network predicts the change).

ResNet-TV (Yeh et al. 2022, section 4.5): the same network with

* four TV1D-sharp layers (``2 x - prox_1d(x, lam)``, learned per-channel lam),
  alternating row / column direction, on the residual branch of four blocks
  (every fourth block, 4, 8, 12, 16, just before the branch is added back:
  residual blocks learn high-frequency content, which TV-sharp emphasises),
* one TV2D-smooth layer with a single lam shared by the three colour channels
  after the last skip connection (the final output is smooth). The paper's
  learned final lam was 15.1 in 0-255 units (0.059 here, in [0, 1] units).

``width`` (feature channels) is 64 in Zhu et al.; tvcli's CPU-trained weights
use a smaller width, the same for both arms (see docs/eps.md).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EpsResNet", "EpsResNetTV"]


class _Block(nn.Module):
    """conv-ReLU-conv residual block, optionally with a TV1D-sharp layer on the branch."""

    def __init__(self, width: int, tv: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.tv = tv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(torch.relu(self.conv1(x)))
        if self.tv is not None:
            r = self.tv(r)
        return x + r


class EpsResNet(nn.Module):
    """Zhu et al.'s ResNet for edge-preserving smoothing.

    Args:
        channels: image channels (3).
        blocks: residual blocks (16 in the paper).
        width: feature channels (64 in the paper).
    Shape: (N, channels, H, W) -> (N, channels, H, W), any H, W; receptive
    radius 2 * blocks + 4 pixels (36 for 16 blocks).
    """

    takes_sigma = False
    train_task = "eps"  # the tvcli.learning.train task that trains it

    def __init__(self, channels: int = 3, blocks: int = 16, width: int = 64):
        super().__init__()
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(width, self._block_tv(i, width))
                                      for i in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(width, channels, 3, padding=1))
        self.config = {"channels": channels, "blocks": blocks, "width": width}
        # tiles sharing twice the receptive radius give the untiled result (the
        # ResNet; ResNet-TV's final TV2D layer is not local)
        self.tile_overlap = 2 * (2 * blocks + 4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # residual branches start small, the output starts as the identity
        for b in self.blocks:
            b.conv2.weight.data.mul_(0.1)
        nn.init.zeros_(self.tail[-1].weight)

    def _block_tv(self, i: int, width: int) -> nn.Module | None:
        return None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output before any final TV layer: x + tail(blocks(head(x)))."""
        return x + self.tail(self.blocks(self.head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class EpsResNetTV(EpsResNet):
    """ResNet-TV (Yeh et al. 2022, section 4.5): EpsResNet with four TV1D-sharp
    layers (row, col, row, col; per-channel lam) in blocks 4, 8, 12 and 16, and a
    TV2D-smooth layer with one shared lam after the last skip connection.

    Args:
        channels, blocks, width: as :class:`EpsResNet`.
        lam_sharp: initial lam of the TV1D-sharp layers (feature units).
        lam_out: initial lam of the final TV2D-smooth layer, [0, 1] intensity
            units (x 255 for the paper's 0-255 units).
        iters: proximal-Dykstra iterations of the final TV2D layer.
    Shape: (N, channels, H, W) -> (N, channels, H, W).
    """

    def __init__(self, channels: int = 3, blocks: int = 16, width: int = 64,
                 lam_sharp: float = 0.01, lam_out: float = 0.02, iters: int = 4):
        self._lam_sharp = lam_sharp
        self._n_blocks = blocks
        super().__init__(channels, blocks, width)
        from tvcli.nn import TVLayer

        self.tv_out = TVLayer(channels, mode="smooth", direction="2d", lam_init=lam_out,
                              shared_lam=True, iters=iters)
        self.config = {**self.config, "lam_sharp": lam_sharp, "lam_out": lam_out,
                       "iters": iters}

    def _block_tv(self, i: int, width: int) -> nn.Module | None:
        from tvcli.nn import TVLayer

        step = max(1, self._n_blocks // 4)
        if (i + 1) % step or (i + 1) // step > 4:
            return None
        direction = "row" if ((i + 1) // step) % 2 else "col"
        return TVLayer(width, mode="sharp", direction=direction, lam_init=self._lam_sharp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tv_out(self.features(x))
