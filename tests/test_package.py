"""The package's public surface."""

import subprocess
import sys


def test_public_names_and_submodules():
    import tvcli

    for name in tvcli.__all__:
        assert getattr(tvcli, name) is not None
    assert tvcli.nn.TVLayer and tvcli.metrics.psnr and tvcli.models.DnCNNTV


def test_readme_python_example_runs():
    code = """
import torch, tvcli
x = torch.randn(8, 3, 64).cumsum(-1).requires_grad_()
lam = torch.tensor([0.1, 0.5, 1.0]).view(3, 1).requires_grad_()
y = tvcli.prox_tv1d(x, lam, dim=-1)
y.square().sum().backward()
img = torch.rand(2, 3, 64, 64)
z = tvcli.prox_tv2d(img, 0.1)
z4 = tvcli.prox_tv2d(img, 0.1, iters=4)
s = tvcli.sharpen_tv2d(img, 0.05)
layer = tvcli.nn.TVLayer(3, mode="smooth", direction="2d", lam_init=0.05)
assert lam.grad.shape == (3, 1) and layer(img).shape == img.shape
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prox_tv2d_on_a_device_without_2d_kernels(monkeypatch):
    """Where only the 1-D op has kernels (CUDA today), prox_tv2d composes it in Python."""
    import torch

    import tvcli
    import tvcli._extension as ext

    x = torch.rand(2, 3, 20, 24, dtype=torch.float64)
    ref_k = tvcli.prox_tv2d(x, 0.1, iters=4)
    ref_c = tvcli.prox_tv2d(x, 0.1, tol=1e-7)
    monkeypatch.setitem(ext._EXT_DEVICES, "prox_tv2d_solve", frozenset())
    monkeypatch.setitem(ext._EXT_DEVICES, "prox_tv2d_dykstra", frozenset())
    torch.testing.assert_close(tvcli.prox_tv2d(x, 0.1, iters=4), ref_k)
    torch.testing.assert_close(tvcli.prox_tv2d(x, 0.1, tol=1e-7), ref_c, atol=1e-4, rtol=0)
