"""DexiNed (Soria, Riba & Sappa, WACV 2020) and DexiNed-TV (Yeh et al. 2022, section 4.4).

DexiNed maps an RGB image (N, 3, H, W) in [0, 1] to edge logits. Six blocks at
decreasing resolution (1/2, 1/2, 1/4, 1/8, 1/16, 1/16 of the input; a stride-2
stem, then 3x3 max-pooling between blocks 2-5), blocks 3-6 being dense blocks
(2, 3, 3, 3 layers of conv-BN-ReLU-conv-BN, each layer's output averaged with
a 1x1-projected skip path coming down from the earlier blocks). Each block feeds
an upsampling head (per factor of 2: a 1x1 conv and a 4x4 stride-2 transposed
conv) giving one full-resolution side edge map; a 1x1 conv over the six maps
gives the fused map. Training supervises all seven (:mod:`tvcli.learning.tasks.edges`).

DexiNed-TV adds, as the paper describes: a TV2D-sharp layer with learned lam on
the side maps upsampled 2x, 4x and 8x (blocks 1-2, 3 and 4) and a TV2D-smooth
layer on the fused map. The TV layers act on the logit maps (1 channel each,
full resolution), before the sigmoid.

Width. The published network has block widths (64, 128, 256, 512, 512, 256)
(``width=64``); tvcli's shipped models use ``width=16`` (all widths / 4, about
1/16 of the parameters and FLOPs) so that training and inference fit a CPU.
Both arms of every comparison use the same width. The layout differs from the
reference implementation in details that do not change the design (padding 1
in every 3x3 conv; ``(4, 2, 1)`` transposed convs).

Inputs are normalised internally (per-channel mean of BSDS500 photos, scale 1)
and padded (reflect) to a multiple of 16, then the output is cropped back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DexiNed", "DexiNedTV"]

_MEAN = (0.44, 0.45, 0.37)  # rough RGB mean of natural photos in [0, 1]


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2), nn.BatchNorm2d(cout)]


class _DenseLayer(nn.Module):
    """relu -> conv-BN-relu-conv-BN, averaged with the skip input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout), nn.ReLU(True), *_conv_bn(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.body(F.relu(x)) + skip)


class _DenseBlock(nn.Module):
    def __init__(self, layers: int, cin: int, cout: int):
        super().__init__()
        self.layers = nn.ModuleList(_DenseLayer(cin if i == 0 else cout, cout)
                                    for i in range(layers))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, skip)
        return x


class _UpHead(nn.Module):
    """Features at 1/2^k resolution -> one full-resolution logit map."""

    def __init__(self, cin: int, k: int, mid: int = 16):
        super().__init__()
        stages: list[nn.Module] = []
        c = cin
        for i in range(k):
            out = 1 if i == k - 1 else mid
            stages += [nn.Conv2d(c, mid, 1), nn.ReLU(True),
                       nn.ConvTranspose2d(mid, out, 4, 2, 1)]
            c = out
        self.body = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DexiNed(nn.Module):
    """DexiNed edge detector.

    Args:
        width: block-1 width; block widths are (1, 2, 4, 8, 8, 4) x width
            (64 = the published network; 16 = tvcli's CPU variant).
    Shape:
        (N, 3, H, W) float in [0, 1] -> list of 7 logit maps (N, 1, H, W): the
        six side outputs (blocks 1-6), then the fused map (last). Use
        :meth:`edge_map` for the probability map.
    """

    n_side = 6
    takes_sigma = False
    tile_multiple = 16  # tiles keep the 1/16 grid of the deepest blocks
    is_edge_detector = True

    def __init__(self, width: int = 16):
        super().__init__()
        w = int(width)
        c = [w, 2 * w, 4 * w, 8 * w, 8 * w, 4 * w]
        self.config = {"width": w}
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.block1 = nn.Sequential(*_conv_bn(3, w // 2, 3, 2), nn.ReLU(True),
                                    *_conv_bn(w // 2, c[0]), nn.ReLU(True))
        self.block2 = nn.Sequential(*_conv_bn(c[0], c[1]), nn.ReLU(True), *_conv_bn(c[1], c[1]))
        self.pool = nn.MaxPool2d(3, 2, 1)
        # skip paths: 1x1 stride-2 projections carried down the pyramid
        self.skip2 = nn.Sequential(*_conv_bn(c[0], c[1], 1, 2))
        self.skip3 = nn.Sequential(*_conv_bn(c[1], c[2], 1, 2))
        self.skip4 = nn.Sequential(*_conv_bn(c[2], c[3], 1, 2))
        self.skip5 = nn.Sequential(*_conv_bn(c[3], c[4], 1, 1))
        self.in3 = nn.Sequential(*_conv_bn(c[1], c[2], 1))
        self.in4 = nn.Sequential(*_conv_bn(c[2], c[3], 1))
        self.in5 = nn.Sequential(*_conv_bn(c[3], c[4], 1))
        self.in6 = nn.Sequential(*_conv_bn(c[4], c[5], 1))
        self.block3 = _DenseBlock(2, c[1], c[2])
        self.block4 = _DenseBlock(3, c[2], c[3])
        self.block5 = _DenseBlock(3, c[3], c[4])
        self.block6 = _DenseBlock(3, c[5], c[5])
        self.heads = nn.ModuleList([_UpHead(c[0], 1), _UpHead(c[1], 1), _UpHead(c[2], 2),
                                    _UpHead(c[3], 3), _UpHead(c[4], 4), _UpHead(c[5], 4)])
        self.fuse = nn.Conv2d(self.n_side, 1, 1)
        nn.init.constant_(self.fuse.weight, 1.0 / self.n_side)
        nn.init.zeros_(self.fuse.bias)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.fuse:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def side_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six blocks' features (at 1/2, 1/2, 1/4, 1/8, 1/16, 1/16)."""
        b1 = self.block1(x - self.mean)
        b2 = self.block2(b1)
        s2 = self.skip2(b1)                       # 1/4
        p2 = self.pool(b2)                        # 1/4
        b3 = self.block3(p2 + s2, self.in3(s2))   # 1/4 (the skip adds 1 from earlier blocks)
        s3 = self.skip3(p2 + s2)                  # 1/8
        p3 = self.pool(b3)
        b4 = self.block4(p3 + s3, self.in4(s3))   # 1/8
        s4 = self.skip4(p3 + s3)                  # 1/16
        p4 = self.pool(b4)
        b5 = self.block5(p4 + s4, self.in5(s4))   # 1/16
        s5 = self.skip5(p4 + s4)
        b6 = self.block6(self.in6(b5), self.in6(s5))  # 1/16
        return [b1, b2, b3, b4, b5, b6]

    def side_logits(self, sides: list[torch.Tensor]) -> list[torch.Tensor]:
        """Full-resolution side logit maps (hook for DexiNed-TV)."""
        return sides

    def fused_logit(self, fused: torch.Tensor) -> torch.Tensor:
        """The fused logit map (hook for DexiNed-TV)."""
        return fused

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"DexiNed expects (N, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        feats = self.side_features(x)
        sides = [head(f) for head, f in zip(self.heads, feats, strict=True)]
        sides = self.side_logits([s[..., :h, :w] for s in sides])
        fused = self.fused_logit(self.fuse(torch.cat(sides, 1)))
        return [*sides, fused]

    @torch.no_grad()
    def edge_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 1, H, W) edge probability of the fused map."""
        return torch.sigmoid(self(x)[-1])


class DexiNedTV(DexiNed):
    """DexiNed with TV2D-sharp layers (learned lam) on the side maps upsampled
    2x, 4x and 8x (blocks 1-4) and a TV2D-smooth layer on the fused map (Yeh
    et al. 2022, section 4.4).

    Args:
        width: as :class:`DexiNed`.
        lam_sharp, lam_smooth: initial lam of the sharp and smooth layers, in
            logit units.
        iters: proximal-Dykstra iterations per TV layer.
    Shape: as :class:`DexiNed`.
    """

    tv_sides = (0, 1, 2, 3)  # blocks 1, 2 (2x), 3 (4x), 4 (8x)

    def __init__(self, width: int = 16, lam_sharp: float = 0.05, lam_smooth: float = 0.05,
                 iters: int = 4):
        super().__init__(width)
        from tvcli.nn import TVLayer

        self.tv_sharp = nn.ModuleList(TVLayer(1, mode="sharp", lam_init=lam_sharp, iters=iters)
                                      for _ in self.tv_sides)
        self.tv_smooth = TVLayer(1, mode="smooth", lam_init=lam_smooth, iters=iters)
        self.config = {"width": int(width), "lam_sharp": lam_sharp, "lam_smooth": lam_smooth,
                       "iters": iters}

    def side_logits(self, sides: list[torch.Tensor]) -> list[torch.Tensor]:
        out = list(sides)
        for layer, i in zip(self.tv_sharp, self.tv_sides, strict=True):
            out[i] = layer(out[i])
        return out

    def fused_logit(self, fused: torch.Tensor) -> torch.Tensor:
        return self.tv_smooth(fused)
