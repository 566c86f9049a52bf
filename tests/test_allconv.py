"""All-CNN-C and its TV-Smooth / TV-Sharp variants (paper section 4.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tvcli.models import build_model
from tvcli.models.allconv import AllConv
from tvcli.nn import TVLayer

ARMS = ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")


@pytest.mark.parametrize("name", ARMS)
def test_shapes_and_registry(name: str) -> None:
    model = build_model(name, width=8).eval()
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # the paper's width: 96 / 192 channels, 9 conv layers (8 blocks + classifier)
    full = build_model(name)
    convs = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96] * 3 + [192] * 5 + [10]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1, 1]


def test_tv_layer_position_and_lam() -> None:
    for name, mode in (("allconv-tv-smooth", "smooth"), ("allconv-tv-sharp", "sharp")):
        model = build_model(name, width=8)
        assert isinstance(model, AllConv)
        tvs = model.tv_layers()
        assert len(tvs) == 3
        for i, block in enumerate(model.blocks):
            children = list(block.children())
            if i < 3:
                # conv -> TV -> BN -> ReLU, in that order
                assert [type(c) for c in children] == [nn.Conv2d, TVLayer, nn.BatchNorm2d,
                                                       nn.ReLU]
                assert block.tv.mode == mode and block.tv.shared_lam
                assert block.tv.lam.shape == (1,) and block.tv.learn_lam
            else:
                assert block.tv is None
        assert model.lams() == pytest.approx([0.05] * 3, abs=1e-7)
    assert build_model("allconv", width=8).tv_layers() == []


def test_tv_layer_is_applied_before_batch_norm() -> None:
    """The BN of block 1 sees the TV layer's output (hooks record the order)."""
    model = build_model("allconv-tv-smooth", width=8).eval()
    seen: list[str] = []
    block = model.blocks[0]
    block.tv.register_forward_hook(lambda *a: seen.append("tv"))
    block.bn.register_forward_hook(lambda *a: seen.append("bn"))
    captured = {}
    block.bn.register_forward_pre_hook(lambda m, inp: captured.setdefault("bn_in", inp[0]))
    block.tv.register_forward_hook(lambda m, inp, out: captured.setdefault("tv_out", out))
    model(torch.rand(1, 3, 32, 32))
    assert seen[:2] == ["tv", "bn"]
    assert torch.equal(captured["bn_in"], captured["tv_out"])


@pytest.mark.parametrize("name", ARMS[1:])
def test_lam_is_learned(name: str) -> None:
    """Cross-entropy gradients reach each layer's one lam, and a step changes it."""
    model = build_model(name, width=8, dropout=0.0, dropout_in=0.0)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.cross_entropy(model(x), y).backward()
    before = model.lams()
    for tv in model.tv_layers():
        assert tv.lam_param.grad is not None and tv.lam_param.grad.shape == (1,)
        assert float(tv.lam_param.grad.abs()) > 0
    opt.step()
    assert all(a != b for a, b in zip(model.lams(), before, strict=True))


def test_tv_arm_differs_from_baseline_and_lam_zero_matches() -> None:
    """With the same weights, the TV arm differs from the baseline; with lam = 0 in
    every TV layer it equals it (so the TV layer is really in the forward path)."""
    torch.manual_seed(3)
    base = build_model("allconv", width=8).eval()
    tv = build_model("allconv-tv-sharp", width=8).eval()
    tv.load_state_dict(base.state_dict(), strict=False)
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(base(x), tv(x), atol=1e-4)
    for layer in tv.tv_layers():
        layer.forward = (lambda f: (lambda z: f(z, lam=0.0)))(layer.forward)
    assert torch.allclose(base(x), tv(x), atol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="RGB"):
        build_model("allconv", width=8)(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="tv_mode"):
        AllConv(tv_mode="blur")
