"""torch.func transforms (grad, jacrev, vmap) through tvcli's operators and TVLayer.

torch.func runs neither prox_tv1d's C++ autograd Function nor the autograd that
torch.library.register_autograd gives the 2-D ops; under its transforms the
operators call the ops through autograd.Functions with a separate setup_context
(tvcli/_ops.py). The gradients must equal autograd's, bit for bit. Under vmap the
ops' vmap rules stack the mapped problems into one call, so vmap's results equal
the operator's on the whole batch, bit for bit.
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
        warnings.simplefilter("error")  # e.g. torch's "no batching rule": a slow loop
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


def _strict(fn):
    """Runs ``fn`` with warnings as errors: torch warns when vmap falls back to a
    loop over the batch (no batching rule)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vmap_equals_a_loop_over_samples(name: str, dtype: torch.dtype) -> None:
    """vmap over a leading dim, over a later one (in_dims=1), and with a per-sample
    lam mapped beside x, equals the operator called on each sample in turn, bit for
    bit (the problems are independent), a sample holding NaN included."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 8, 9, generator=gen).to(dtype)
    x[1, 2, 3, 4] = float("nan")  # one bad problem among good ones
    lams = torch.tensor([0.0, 0.1, 0.3, 2.0], dtype=dtype)
    op = OPS[name]

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))

    want = torch.stack([op(x[i], 0.3) for i in range(4)])
    assert same(_strict(lambda: torch.func.vmap(lambda v: op(v, 0.3))(x)), want)
    got1 = _strict(lambda: torch.func.vmap(lambda v: op(v, 0.3), in_dims=1, out_dims=1)(
        x.movedim(0, 1).contiguous().movedim(1, 0).movedim(0, 1)))
    assert same(got1.movedim(1, 0), want)
    want_l = torch.stack([op(x[i], lams[i]) for i in range(4)])
    assert same(_strict(lambda: torch.func.vmap(op)(x, lams)), want_l)


@pytest.mark.parametrize("name", list(OPS))
def test_vmap_of_grad_gives_per_sample_gradients(name: str) -> None:
    """Per-sample gradients (vmap of grad) in x and in a per-sample lam equal
    autograd's, sample by sample, bit for bit."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 2, 8, 9, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 2, 8, 9, generator=gen, dtype=torch.float64)
    lams = torch.tensor([0.1, 0.3, 0.7], dtype=torch.float64)
    op = OPS[name]

    def loss(v, lam, gv):
        return (op(v, lam) * gv).sum()

    gx, glam = _strict(lambda: torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)))(
        x, lams, g))
    for i in range(3):
        xr, lr = x[i].clone().requires_grad_(), lams[i].clone().requires_grad_()
        loss(xr, lr, g[i]).backward()
        assert torch.equal(gx[i], xr.grad)
        assert torch.equal(glam[i], lr.grad)


def test_vmap_checks_lam_values() -> None:
    """A negative lam among the mapped ones is the same clear error as without vmap."""
    x = torch.randn(2, 8, 8)
    for op in OPS.values():
        with pytest.raises(ValueError, match="lam must be >= 0"):
            torch.func.vmap(op)(x, torch.tensor([0.1, -0.1]))


@pytest.mark.parametrize("mode", ["smooth", "sharp"])
@pytest.mark.parametrize("direction", ["2d", "row", "col"])
def test_tvlayer_under_vmap(mode: str, direction: str) -> None:
    """TVLayer vmapped over an extra leading dim equals the layer on the merged batch."""
    torch.manual_seed(1)
    layer = TVLayer(3, mode=mode, direction=direction).double()
    x = torch.randn(2, 4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        got = _strict(lambda: torch.func.vmap(layer)(x))
        want = layer(x.reshape(8, 3, 8, 8)).reshape(x.shape)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", list(OPS))
def test_jacrev_equals_autograd_rows(name: str) -> None:
    """jacrev (vmap over the backward's cotangents, which need not lead in memory)
    equals one autograd backward per output sample, bit for bit, without a warning."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64)
    op = OPS[name]
    jac = _strict(lambda: torch.func.jacrev(lambda v: op(v, 0.3))(x))
    rows = []
    for k in range(x.numel()):
        v = x.clone().requires_grad_()
        (gv,) = torch.autograd.grad(op(v, 0.3).reshape(-1)[k], v)
        rows.append(gv)
    assert torch.equal(jac.reshape(x.numel(), -1), torch.stack(rows).reshape(x.numel(), -1))


@pytest.mark.parametrize("mode", ["smooth", "sharp"])
@pytest.mark.parametrize("direction", ["2d", "row", "col"])
def test_tvlayer_per_sample_parameter_grads(mode: str, direction: str) -> None:
    """Per-sample gradients of TVLayer's parameters (vmap of grad of functional_call,
    as differentially private training takes them) equal one backward per sample."""
    torch.manual_seed(0)
    layer = TVLayer(3, mode=mode, direction=direction).double()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)

    def loss(p, xi):
        return torch.func.functional_call(layer, p, (xi.unsqueeze(0),)).square().sum()

    got = _strict(lambda: torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(
        params, x))
    for i in range(4):
        layer.zero_grad()
        layer(x[i:i + 1]).square().sum().backward()
        for k, p in layer.named_parameters():
            assert torch.equal(got[k][i], p.grad), (k, i)
