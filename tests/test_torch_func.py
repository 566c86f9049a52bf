"""torch.func transforms (grad, jacrev) through tvcli's operators and TVLayer.

torch.func runs neither prox_tv1d's C++ autograd Function nor the autograd that
torch.library.register_autograd gives the 2-D ops; under its transforms the
operators call the ops through autograd.Functions with a separate setup_context
(tvcli/_ops.py). The gradients must equal autograd's, bit for bit.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import tvcli
from tvcli._extension import HAS_EXT
from tvcli.nn import TVLayer

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="needs the compiled engine")

OPS = {
    "prox_tv1d": lambda x, lam: tvcli.prox_tv1d(x, lam),
    "prox_tv1d pn": lambda x, lam: tvcli.prox_tv1d(x, lam, dim=1, solver="pn"),
    "prox_tv2d paper": lambda x, lam: tvcli.prox_tv2d(x, lam, iters=4),
    "prox_tv2d converged": lambda x, lam: tvcli.prox_tv2d(x, lam, tol=1e-9),
    "prox_tv aniso": lambda x, lam: tvcli.prox_tv(x, lam, norm="aniso", tol=1e-9),
    "prox_tv iso": lambda x, lam: tvcli.prox_tv(x, lam, norm="iso", tol=1e-10,
                                                max_iter=20000),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grad_equals_autograd(name: str, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, 9, generator=gen).to(dtype)
    g = torch.randn(3, 8, 9, generator=gen).to(dtype)
    lam = torch.tensor(0.3, dtype=dtype)
    op = OPS[name]

    def loss(x, lam):
        return (op(x, lam) * g).sum()

    gx, glam = torch.func.grad(loss, argnums=(0, 1))(x, lam)
    xr, lr = x.clone().requires_grad_(), lam.clone().requires_grad_()
    loss(xr, lr).backward()
    assert torch.equal(gx, xr.grad) and torch.equal(glam, lr.grad)


def test_jacrev_of_the_1d_prox_is_its_region_average() -> None:
    """The 1-D prox's Jacobian averages over each flat segment of y: rows of 1/len."""
    x = torch.tensor([0.0, 0.1, 1.0, 0.9, 3.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: no batching rule, a loop
        jac = torch.func.jacrev(lambda v: tvcli.prox_tv1d(v, 0.2))(x)
    y = tvcli.prox_tv1d(x, 0.2)
    want = (y[:, None] == y[None, :]).double()
    want = want / want.sum(dim=1, keepdim=True)
    assert torch.allclose(jac, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["smooth", "sharp"])
@pytest.mark.parametrize("direction", ["2d", "row", "col"])
def test_tvlayer_parameter_grads(mode: str, direction: str) -> None:
    """torch.func.grad over TVLayer's parameters (functional_call) equals backward."""
    torch.manual_seed(0)
    layer = TVLayer(3, mode=mode, direction=direction).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    params = {k: v.detach() for k, v in layer.named_parameters()}
    got = torch.func.grad(lambda p: torch.func.functional_call(layer, p, (x,)).square().sum())(
        params)
    layer.zero_grad()
    layer(x).square().sum().backward()
    for k, p in layer.named_parameters():
        assert torch.equal(got[k], p.grad), k
