"""All Convolutional Network (Springenberg et al. 2015, "All-CNN-C") for CIFAR-10,
and its TV-Smooth / TV-Sharp variants (Yeh et al. 2022, section 4.2).

All-CNN-C replaces max-pooling by stride-2 convolutions and the fully connected
head by 1x1 convolutions plus global average pooling. Here each convolution is a
"block" ``conv -> BatchNorm -> ReLU`` (the paper inserts its TV layers "before
batch-normalization of each block", so its baseline has batch norm):

====  ===========================  ==========================
 #    layer                        output (width=96, 32x32 in)
====  ===========================  ==========================
 in   dropout 0.2                  3 x 32 x 32
 1    3x3 conv 96                  96 x 32 x 32
 2    3x3 conv 96                  96 x 32 x 32
 3    3x3 conv 96, stride 2        96 x 16 x 16, dropout 0.5
 4    3x3 conv 192                 192 x 16 x 16
 5    3x3 conv 192                 192 x 16 x 16
 6    3x3 conv 192, stride 2       192 x 8 x 8, dropout 0.5
 7    3x3 conv 192, no padding     192 x 6 x 6
 8    1x1 conv 192                 192 x 6 x 6
 9    1x1 conv 10 (no BN/ReLU)     10 x 6 x 6 -> global mean -> logits
====  ===========================  ==========================

The TV variants put ``TVLayer(mode, shared_lam=True, lam_init=0.05)`` (learned)
between the convolution and the batch norm of blocks 1, 2 and 3 -- our reading of
"the first three convolution blocks" (one block = one conv + BN + ReLU; blocks 1-3
are the 96-channel ones). Layer 9 gives the logits directly (no BN, no ReLU: a ReLU
on logits, as in the 2015 table, only hurts the softmax).

Input: (N, 3, H, W) float RGB in [0, 1] (any H, W >= 20; trained at 32x32). The
per-channel CIFAR-10 mean/std normalisation is part of the model (fixed buffers),
so callers pass plain [0, 1] images. Output: (N, num_classes) logits.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AllConv", "AllConvTVSmooth", "AllConvTVSharp", "CIFAR10_CLASSES",
           "CIFAR10_MEAN", "CIFAR10_STD"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# Per-channel statistics of the CIFAR-10 training set (the widely used values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class ConvBlock(nn.Module):
    """``conv -> [TVLayer] -> BatchNorm -> ReLU``; ``tv`` is None in the baseline."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 tv: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.tv = tv
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.tv is not None:
            x = self.tv(x)
        return self.act(self.bn(x))


class AllConv(nn.Module):
    """All-CNN-C with batch norm; optionally TV layers in blocks 1-3 (see module doc).

    Args:
        num_classes: output classes (10 for CIFAR-10).
        width: channels of blocks 1-3 (96 in the paper); blocks 4-8 have twice as many.
            Smaller widths are for smoke runs and tests only.
        tv_mode: None (baseline), "smooth" or "sharp".
        tv_blocks: how many leading blocks get a TV layer (3 in the paper).
        lam_init: initial lam of each TV layer (0.05), learned, shared across channels.
        tv_iters: proximal-Dykstra iterations of each 2-D TV layer.
        dropout: dropout after blocks 3 and 6 (0.5 in All-CNN-C); the input
            dropout is ``dropout_in`` (0.2).

    Shape: (N, 3, H, W) in [0, 1] -> (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, width: int = 96, tv_mode: str | None = None,
                 tv_blocks: int = 3, lam_init: float = 0.05, tv_iters: int = 4,
                 dropout: float = 0.5, dropout_in: float = 0.2):
        super().__init__()
        from tvcli.nn import TVLayer

        if tv_mode not in (None, "smooth", "sharp"):
            raise ValueError(f"tv_mode must be None, 'smooth' or 'sharp', got {tv_mode!r}")
        w1, w2 = int(width), 2 * int(width)
        # (cin, cout, kernel, stride, padding) of blocks 1-8; block 9 is the classifier.
        plan = [(3, w1, 3, 1, 1), (w1, w1, 3, 1, 1), (w1, w1, 3, 2, 1),
                (w1, w2, 3, 1, 1), (w2, w2, 3, 1, 1), (w2, w2, 3, 2, 1),
                (w2, w2, 3, 1, 0), (w2, w2, 1, 1, 0)]
        blocks = []
        for i, (cin, cout, k, s, p) in enumerate(plan):
            tv = (TVLayer(cout, mode=tv_mode, direction="2d", lam_init=lam_init,
                          shared_lam=True, learn_lam=True, iters=tv_iters)
                  if tv_mode is not None and i < tv_blocks else None)
            blocks.append(ConvBlock(cin, cout, k, s, p, tv))
        self.drop_in = nn.Dropout(dropout_in)
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(w2, num_classes, 1)
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.config = {"num_classes": num_classes, "width": int(width), "tv_mode": tv_mode,
                       "tv_blocks": tv_blocks, "lam_init": lam_init, "tv_iters": tv_iters,
                       "dropout": dropout, "dropout_in": dropout_in}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def tv_layers(self) -> list[nn.Module]:
        """The TV layers, first block first (empty for the baseline)."""
        return [b.tv for b in self.blocks if b.tv is not None]

    def lams(self) -> list[float]:
        """The current lam of each TV layer (one shared value per layer)."""
        return [float(tv.lam.detach()[0]) for tv in self.tv_layers()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AllConv expects (N, 3, H, W) RGB in [0, 1], got {tuple(x.shape)}")
        x = self.drop_in((x - self.mean) / self.std)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in (2, 5):  # after the two stride-2 blocks, as All-CNN-C's dropout
                x = self.drop(x)
        return self.classifier(x).mean(dim=(2, 3))


def AllConvTVSmooth(**config) -> AllConv:  # noqa: N802 -- a class-like builder
    """All-CNN-C with TV-smooth layers in blocks 1-3 (the paper's TV-Smooth)."""
    config.setdefault("tv_mode", "smooth")
    return AllConv(**config)


def AllConvTVSharp(**config) -> AllConv:  # noqa: N802 -- a class-like builder
    """All-CNN-C with TV-sharp layers in blocks 1-3 (the paper's TV-Sharp)."""
    config.setdefault("tv_mode", "sharp")
    return AllConv(**config)
