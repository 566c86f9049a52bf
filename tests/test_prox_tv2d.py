"""Tests of the 2-D TV prox (both modes), sharpening and TVLayer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import taut_string
from reference2d import gap, primal, tv2d_reference

import tvcli
from tvcli.nn import TVLayer
from tvcli.prox2d import _dykstra

LAMS = [1e-3, 1e-2, 1e-1, 1.0]  # four orders of magnitude


def _images(b: int, h: int, w: int) -> torch.Tensor:
    """Random images in [0, 1]: noise, and noise on a piecewise-constant pattern."""
    x = torch.rand(b, h, w, dtype=torch.float64)
    blocks = (torch.arange(h).reshape(-1, 1) // 5 + torch.arange(w) // 7) % 2
    x[b // 2:] = 0.7 * blocks + 0.3 * x[b // 2:]
    return x


# ----------------------------------------------------------------- converged mode


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_converged_matches_reference(lam: float, dtype: torch.dtype) -> None:
    x = _images(4, 16, 21)
    y_ref, bound, _ = tv2d_reference(x, torch.full((4,), lam, dtype=torch.float64))
    assert float(bound.max()) <= 1e-6
    y, info = tvcli.prox_tv2d(x.to(dtype), lam, tol=1e-6, return_info=True)
    assert y.dtype == dtype
    assert info.stop == "tol" and bool(info.converged.all())
    assert float((y.double() - y_ref).abs().max()) <= 1e-4
    # The reported bound must hold: RMS error <= error_bound (+ the reference's own).
    rms = ((y.double() - y_ref) ** 2).mean((1, 2)).sqrt()
    assert bool((rms <= info.error_bound + 1e-6 + (1e-6 if dtype == torch.float32 else 0)).all())


@pytest.mark.parametrize("lam", LAMS)
def test_converged_matches_proxtv(lam: float) -> None:
    prox_tv = pytest.importorskip("prox_tv")
    x = _images(3, 14, 18)
    y = tvcli.prox_tv2d(x, lam, tol=1e-7)
    for i in range(x.shape[0]):
        # proxTV's Douglas-Rachford run long (1000 iterations) agrees with the
        # reference above to ~1e-13 on these sizes.
        yp = prox_tv.tv1_2d(x[i].numpy(), lam, max_iters=1000, method="dr")
        assert np.abs(yp - y[i].numpy()).max() <= 1e-4


@pytest.mark.parametrize("lam", [1e-2, 1e-1, 1.0])
def test_converged_optimality(lam: float) -> None:
    """Certificate from the reference's own dual p (independent of tvcli):
    0 <= P(y) - P* <= P(y) - D(p), and P(y) - P* >= 1/2 ||y - y*||^2."""
    x = _images(2, 12, 15)
    lam_t = torch.full((2,), lam, dtype=torch.float64)
    y_ref, _, _ = tv2d_reference(x, lam_t)
    y = tvcli.prox_tv2d(x, lam, tol=1e-8)
    p_y = primal(x, y, lam_t)
    p_ref = primal(x, y_ref, lam_t)
    # y is at least as good as the certified reference, up to its certificate.
    assert bool((p_y - p_ref <= 1e-9).all())
    # And its own duality gap (y written as x - u - v by the solver) is tiny.
    assert bool((gap(x, y_ref, lam_t) >= -1e-12).all())
    # Optimality of y itself: no small move along random directions lowers P.
    for _ in range(5):
        d = torch.randn_like(x) * 1e-3
        assert bool((primal(x, y + d, lam_t) >= p_y - 1e-12).all())


def test_converged_info_and_max_iter() -> None:
    x = _images(2, 20, 20)
    y, info = tvcli.prox_tv2d(x, 0.1, tol=0.0, max_iter=3, return_info=True)
    assert info.stop == "max_iter"
    assert info.iterations.tolist() == [3, 3]
    assert not bool(info.converged.any())
    assert bool((info.error_bound > 0).all())
    y, info = tvcli.prox_tv2d(x, 0.1, tol=1e-3, return_info=True)
    assert info.stop == "tol" and bool((info.error_bound <= 1e-3).all())


def test_converged_special_cases() -> None:
    x = _images(3, 8, 9)
    x[1, 2, 3] = float("nan")
    y = tvcli.prox_tv2d(x, 0.05)
    assert torch.isnan(y[1]).all()
    assert torch.isfinite(y[0]).all() and torch.isfinite(y[2]).all()
    x = _images(2, 8, 9)
    assert torch.equal(tvcli.prox_tv2d(x, 0.0), x)
    y = tvcli.prox_tv2d(x, float("inf"))
    assert torch.allclose(y, x.mean((1, 2), keepdim=True).expand_as(x), atol=1e-15)
    y = tvcli.prox_tv2d(x, 1e6)
    assert torch.allclose(y, x.mean((1, 2), keepdim=True).expand_as(x), atol=1e-12)


def test_line_solver_on_rows_of_2d_iterates() -> None:
    """An H=1 image is one 1-D prox (the DP solver inside the 2-D loop): check it
    against the taut string on rows taken from a Dykstra iterate."""
    x = _images(2, 12, 40)
    lam = torch.tensor(0.05, dtype=torch.float64)
    y = x
    p = torch.zeros_like(x)
    z = tvcli.prox_tv1d(y + p, lam, -1)
    p = y + p - z
    rows = (tvcli.prox_tv1d(z, lam, -2) + p).reshape(-1, 1, 40)
    out = tvcli.prox_tv2d(rows, 0.05, tol=1e-12)
    for r in range(rows.shape[0]):
        ref = taut_string(rows[r, 0].tolist(), 0.05)
        assert max(abs(a - b) for a, b in zip(out[r, 0].tolist(), ref, strict=True)) <= 1e-10


# ---------------------------------------------------------------------- paper mode


def test_paper_mode_is_alg1() -> None:
    """The fused C++ op equals a plain loop of Alg. 1 over prox_tv1d, value and grads."""
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    lam = (torch.rand(3, 1, 1, dtype=torch.float64) * 0.2).requires_grad_()
    g = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    for k in (1, 2, 4):
        a = tvcli.prox_tv2d(x, lam, iters=k)
        b = _dykstra(x, lam.expand(2, 3, 1, 1), 2, 3, k)
        assert float((a - b).detach().abs().max()) <= 1e-12
        ga = torch.autograd.grad((a * g).sum(), (x, lam))
        gb = torch.autograd.grad((b * g).sum(), (x, lam))
        for u, v in zip(ga, gb, strict=True):
            assert float((u - v).abs().max()) <= 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (2, 3), (1, 9),
                                   (9, 1), (5, 17), (17, 5), (8, 8), (19, 11), (16, 24)])
def test_paper_mode_backward_matches_alg1_autograd(shape: tuple[int, int],
                                                  dtype: torch.dtype) -> None:
    """The op's backward (lines in lockstep: strips of 8 lines plus a remainder) equals
    autograd through Alg. 1 over prox_tv1d, for runs of 1 sample up to whole lines
    (lam 1e3), lam 0 and constant images."""
    h, w = shape
    gen = torch.Generator().manual_seed(100 * h + w)
    x = torch.randn(7, h, w, dtype=torch.float64, generator=gen)
    x[4] = 0.3  # constant
    x[5] = torch.arange(h * w, dtype=torch.float64).reshape(h, w) % 3  # plateaus
    lam = torch.tensor([0.0, 0.02, 0.1, 0.5, 0.1, 0.3, 1e3], dtype=torch.float64)
    g = torch.randn(7, h, w, dtype=torch.float64, generator=gen).to(dtype)
    x = x.to(dtype).requires_grad_()
    lam = lam.to(dtype).reshape(7, 1, 1).requires_grad_()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for k in (1, 3):
        a = tvcli.prox_tv2d(x, lam, iters=k)
        b = _dykstra(x, lam, 1, 2, k)
        assert float((a - b).detach().abs().max()) <= tol
        ga = torch.autograd.grad((a * g).sum(), (x, lam))
        gb = torch.autograd.grad((b * g).sum(), (x, lam))
        for u, v in zip(ga, gb, strict=True):
            assert float((u - v).abs().max()) <= tol * (1 + float(v.abs().max()))


def test_paper_mode_approaches_converged() -> None:
    x = _images(2, 10, 12)
    y = tvcli.prox_tv2d(x, 0.05, tol=1e-9)
    e1 = float((tvcli.prox_tv2d(x, 0.05, iters=1) - y).abs().max())
    e400 = float((tvcli.prox_tv2d(x, 0.05, iters=400) - y).abs().max())
    assert e400 < 1e-4 < e1


@pytest.mark.parametrize("iters", [1, 3, None])
def test_gradcheck(iters: int | None) -> None:
    x = torch.rand(2, 5, 6, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor([[[0.04]], [[0.11]]], dtype=torch.float64, requires_grad=True)

    def f(a: torch.Tensor, lam_: torch.Tensor) -> torch.Tensor:
        return tvcli.prox_tv2d(a, lam_, iters=iters, tol=1e-12, max_iter=100_000)

    assert torch.autograd.gradcheck(f, (x, lam), eps=1e-6, atol=1e-5)


def test_converged_backward_matches_finite_differences_on_larger_image() -> None:
    x = _images(1, 12, 12)
    lam = torch.tensor(0.08, dtype=torch.float64, requires_grad=True)
    xr = x.clone().requires_grad_()
    g = torch.randn_like(x)
    (tvcli.prox_tv2d(xr, lam, tol=1e-12, max_iter=100_000) * g).sum().backward()
    eps = 1e-6
    for _ in range(3):
        d = torch.randn_like(x)
        fp = (tvcli.prox_tv2d(x + eps * d, 0.08, tol=1e-12, max_iter=100_000) * g).sum()
        fm = (tvcli.prox_tv2d(x - eps * d, 0.08, tol=1e-12, max_iter=100_000) * g).sum()
        assert abs(float((fp - fm) / (2 * eps)) - float((xr.grad * d).sum())) <= 1e-5
    fp = (tvcli.prox_tv2d(x, 0.08 + eps, tol=1e-12, max_iter=100_000) * g).sum()
    fm = (tvcli.prox_tv2d(x, 0.08 - eps, tol=1e-12, max_iter=100_000) * g).sum()
    assert abs(float((fp - fm) / (2 * eps)) - float(lam.grad)) <= 1e-5


# ----------------------------------------------------------- shared API behaviour


@pytest.mark.parametrize("iters", [4, None])
def test_identity_at_lam_zero(iters: int | None) -> None:
    x = torch.randn(2, 3, 7, 8)
    assert torch.equal(tvcli.prox_tv2d(x, 0.0, iters=iters), x)
    assert torch.equal(tvcli.sharpen_tv2d(x, 0.0, iters=iters), x)
    assert torch.equal(tvcli.sharpen_tv1d(x, 0.0), x)


@pytest.mark.parametrize("iters", [4, None])
def test_channels_independent_and_lam_broadcast(iters: int | None) -> None:
    x = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    lam = torch.tensor([0.01, 0.1, 0.5], dtype=torch.float64).reshape(3, 1, 1)
    y = tvcli.prox_tv2d(x, lam, iters=iters, tol=1e-8)
    for c in range(3):
        yc = tvcli.prox_tv2d(x[:, c], float(lam[c]), iters=iters, tol=1e-8)
        assert float((y[:, c] - yc).abs().max()) <= 1e-9
    x2 = x.clone()
    x2[:, 0] = torch.rand(2, 10, 12, dtype=torch.float64)
    y2 = tvcli.prox_tv2d(x2, lam, iters=iters, tol=1e-8)
    assert torch.equal(y2[:, 1:], y[:, 1:])
    # per sample lam
    lam_n = torch.tensor([0.02, 0.3], dtype=torch.float64).reshape(2, 1, 1, 1)
    y3 = tvcli.prox_tv2d(x, lam_n, iters=iters, tol=1e-8)
    assert float((y3[1] - tvcli.prox_tv2d(x[1], 0.3, iters=iters, tol=1e-8)).abs().max()) <= 1e-9
    with pytest.raises(ValueError):
        tvcli.prox_tv2d(x, torch.rand(12, dtype=torch.float64), iters=iters)


@pytest.mark.parametrize("iters", [3, None])
def test_dims_argument(iters: int | None) -> None:
    x = torch.rand(9, 2, 11, dtype=torch.float64)
    y = tvcli.prox_tv2d(x, 0.1, dims=(0, 2), iters=iters, tol=1e-9)
    y2 = tvcli.prox_tv2d(x.permute(1, 0, 2), 0.1, iters=iters, tol=1e-9).permute(1, 0, 2)
    assert float((y - y2).abs().max()) <= 1e-12


def test_sharpen_definitions() -> None:
    x = torch.rand(2, 8, 9, dtype=torch.float64)
    assert torch.allclose(tvcli.sharpen_tv2d(x, 0.1, iters=2),
                          2 * x - tvcli.prox_tv2d(x, 0.1, iters=2))
    assert torch.allclose(tvcli.sharpen_tv1d(x, 0.1, dim=-2), 2 * x - tvcli.prox_tv1d(x, 0.1, -2))


def test_opcheck_2d_ops() -> None:
    x = torch.rand(3, 6, 7, dtype=torch.float64)
    lam = torch.tensor([0.05, 0.0, 0.2], dtype=torch.float64)
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_dykstra, (x, lam, 2))
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_solve, (x, lam, 1e-9, 5000, 1, 1e-9),
                          test_utils=("test_schema", "test_faketensor"))


# ------------------------------------------------------------------------ TVLayer


def test_layer_init_and_repr() -> None:
    layer = TVLayer(4, lam_init=0.05)
    assert torch.allclose(layer.lam, torch.full((4,), 0.05), atol=1e-7)
    assert "mode='smooth'" in repr(layer) and "iters=4" in repr(layer)
    assert TVLayer(4, shared_lam=True).lam.shape == (1,)
    fixed = TVLayer(4, learn_lam=False, lam_init=1.0)
    assert not list(fixed.parameters()) and torch.equal(fixed.lam, torch.ones(4))
    with pytest.raises(ValueError):
        TVLayer(4, lam_init=0.0)


@pytest.mark.parametrize("mode", ["smooth", "sharp"])
@pytest.mark.parametrize("direction", ["2d", "row", "col"])
def test_layer_identity_near_zero(mode: str, direction: str) -> None:
    x = torch.rand(2, 3, 12, 10)
    layer = TVLayer(3, mode=mode, direction=direction, lam_init=1e-6)
    # Each 1-D prox moves a sample by at most 2 lam; 2 K passes (+ sharpening) bound it.
    assert float((layer(x) - x).abs().max()) <= 20 * 1e-6
    assert torch.equal(layer(x, lam=0.0), x)
    assert torch.equal(TVLayer(3, mode=mode, direction=direction, learn_lam=False,
                               lam_init=0.0)(x), x)


@pytest.mark.parametrize("mode", ["smooth", "sharp"])
@pytest.mark.parametrize("direction", ["2d", "row", "col"])
def test_layer_gradients_reach_lam(mode: str, direction: str) -> None:
    x = torch.rand(2, 3, 12, 10, requires_grad=True)
    layer = TVLayer(3, mode=mode, direction=direction, lam_init=0.05)
    (layer(x) ** 2).sum().backward()
    assert layer.lam_param.grad is not None
    assert bool((layer.lam_param.grad.abs() > 0).all())
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_layer_row_col_equal_prox_tv1d() -> None:
    x = torch.rand(2, 3, 12, 10)
    lam = torch.tensor([0.01, 0.05, 0.2])
    for direction, dim in (("row", -1), ("col", -2)):
        layer = TVLayer(3, direction=direction, learn_lam=False, lam_init=0.1)
        y = layer(x, lam=lam)
        assert torch.equal(y, tvcli.prox_tv1d(x, lam.reshape(3, 1, 1), dim))
        sharp = TVLayer(3, mode="sharp", direction=direction, learn_lam=False, lam_init=0.1)
        assert torch.equal(sharp(x), 2 * x - tvcli.prox_tv1d(x, 0.1, dim))


def test_layer_shared_and_channels_independent() -> None:
    x = torch.rand(2, 3, 12, 10)
    layer = TVLayer(3, lam_init=0.1)
    with torch.no_grad():
        layer.lam_param[1] = -3.0
        y = layer(x)
        x2 = x.clone()
        x2[:, 1] += torch.rand(2, 12, 10)
        y2 = layer(x2)
    assert torch.equal(y[:, 0], y2[:, 0]) and torch.equal(y[:, 2], y2[:, 2])
    shared = TVLayer(3, shared_lam=True, lam_init=0.1)
    assert torch.allclose(shared(x), tvcli.prox_tv2d(x, 0.1, iters=4), atol=1e-6)


def test_layer_torch_compile() -> None:
    torch._dynamo.reset()
    x = torch.rand(2, 3, 12, 10, requires_grad=True)
    layer = TVLayer(3, mode="sharp", lam_init=0.05)
    compiled = torch.compile(layer, fullgraph=True)
    y_eager = layer(x)
    (ge,) = torch.autograd.grad(y_eager.sum() * 0 + (y_eager ** 2).sum(), (layer.lam_param,))
    y_comp = compiled(x)
    (gc,) = torch.autograd.grad((y_comp ** 2).sum(), (layer.lam_param,))
    assert torch.allclose(y_eager, y_comp, atol=1e-6)
    assert torch.allclose(ge, gc, rtol=1e-4, atol=1e-5)


def test_paper_mode_non_finite_images() -> None:
    x = torch.rand(3, 6, 7, dtype=torch.float64)
    x[1, 2, 2] = float("inf")
    lam = torch.tensor([0.1, 0.1, 0.0], dtype=torch.float64).reshape(3, 1, 1)
    x[2, 0, 0] = float("nan")
    xr = x.clone().requires_grad_()
    y = tvcli.prox_tv2d(xr, lam, iters=3)
    assert torch.isnan(y[1]).all() and torch.isfinite(y[0]).all()
    assert torch.equal(y[2].isnan(), x[2].isnan())  # lam = 0: identity, NaN kept
    y.sum().backward()
    assert torch.isnan(xr.grad[1]).all() and torch.isfinite(xr.grad[0]).all()


def test_converged_mode_torch_compile() -> None:
    torch._dynamo.reset()
    x = torch.rand(2, 3, 10, 12, requires_grad=True)
    lam = torch.tensor(0.1, requires_grad=True)
    f = torch.compile(lambda a, l_: tvcli.prox_tv2d(a, l_, tol=1e-6), fullgraph=True,
                      backend="aot_eager")
    y, y2 = f(x, lam), tvcli.prox_tv2d(x, lam, tol=1e-6)
    assert torch.equal(y, y2)
    g1 = torch.autograd.grad((y ** 2).sum(), (x, lam))
    g2 = torch.autograd.grad((y2 ** 2).sum(), (x, lam))
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b)


@pytest.mark.parametrize("shape", [(1, 9, 11), (2, 1, 300, 230)])
def test_paper_mode_line_parallel_path(shape: tuple[int, ...]) -> None:
    """Few or large images take the line-parallel path of the op: same values and
    gradients as Alg. 1 written over prox_tv1d."""
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    if len(shape) == 4:
        x.data[0, ..., 0, 0] = float("nan")  # one bad image; the other must be unaffected
    lam = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape, dtype=torch.float64)
    a = tvcli.prox_tv2d(x, lam, iters=3)
    b = _dykstra(x, lam.reshape((1,) * len(shape)).expand(*shape[:-2], 1, 1), len(shape) - 2,
                 len(shape) - 1, 3)
    assert torch.equal(a.isnan(), b.isnan())
    ok = ~a.isnan()
    assert float((a - b)[ok].detach().abs().max()) <= 1e-12
    if len(shape) == 3:
        ga = torch.autograd.grad((a * g).sum(), (x, lam))
        gb = torch.autograd.grad((b * g).sum(), (x, lam))
        for u, v in zip(ga, gb, strict=True):
            assert float((u - v).abs().max()) <= 1e-10


# ------------------------------------------------- sharpening inside the paper-mode op


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _nan_with_bits(bits: int, dtype: torch.dtype) -> float:
    """A float NaN of the given float32 bits, as a 0-d tensor of ``dtype``."""
    t = torch.tensor([bits - (1 << 32) if bits >= 1 << 31 else bits], dtype=torch.int32)
    return t.view(torch.float32).to(dtype)


def _sharp_case(shape, dtype, seed):
    """Rough maps with a NaN image, an Inf image, a lam = 0 channel whose image holds
    a NaN of other bits (0xffc00000, as Inf - Inf gives on x86), and an upstream
    gradient with NaNs of two payloads."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    n, c = shape[0], shape[1]
    x[0, 0, 0, 0] = float("nan")
    x[n - 1, c - 1, -1, -1] = float("inf")
    if c > 2:
        x[0, 2, 0, -1] = _nan_with_bits(0xFFC00000, dtype)  # lam 0 below: kept
        x[n - 1, 1, -1, 0] = _nan_with_bits(0xFFC00000, dtype)  # lam > 0: a NaN image
    gy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    gy[0, 1, 0, 0] = float("nan")
    gy[n - 1, 0, 0, -1] = _nan_with_bits(0x7FC12345, dtype)
    return x, gy


SHARP_SHAPES = [(4, 3, 32, 32), (2, 3, 1, 17), (2, 3, 13, 1), (6, 3, 9, 12), (1, 3, 70, 45),
                (3, 3, 8, 64), (2, 3, 70, 9)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHARP_SHAPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_layer_sharp_fused_equals_expression(dtype, shape, threads) -> None:
    """TVLayer(mode="sharp") in paper mode runs the fused op (2 x - prox inside it,
    and its backward); output, dL/dx and dL/dlam equal what `y = prox_tv2d(x);
    2 * x - y` gives through autograd (the layer's former code) bit for bit, NaN
    payloads included. Shapes: per-image (SIMD and scalar widths) and line-parallel
    paths, 1 x N and N x 1 planes."""
    torch.set_num_threads(threads)
    x0, gy = _sharp_case(shape, dtype, seed=sum(shape))
    layer = TVLayer(3, mode="sharp", lam_init=0.07).to(dtype)
    with torch.no_grad():
        layer.lam_param[2] = -1e4  # softplus underflows: lam == 0 exactly
    assert float(layer.lam[2]) == 0.0
    outs = []
    for fused in (True, False):
        a = x0.clone().requires_grad_()
        x = a * 1  # a non-leaf input, as in a network
        if fused:
            y = layer(x)
            assert "Sub" not in type(y.grad_fn).__name__  # the op's own output
        else:
            p = tvcli.prox_tv2d(x, layer.lam.reshape(-1, 1, 1), iters=4)
            y = 2 * x - p
        layer.zero_grad()
        y.backward(gy)
        outs.append((y.detach(), a.grad, layer.lam_param.grad.clone()))
    for u, v in zip(*outs, strict=True):
        assert torch.equal(_bits(u), _bits(v)), f"{int((_bits(u) != _bits(v)).sum())} differ"
    assert bool(outs[0][0].isnan().any()) and bool(outs[0][1].isnan().any())
    torch.set_num_threads(2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_op_sharp_forward_and_backward(dtype) -> None:
    """The op's sharp=True against its prox with the sharpening written out: y bits
    = 2 x - prox (a NaN prox wins, as in PyTorch's subtraction), the same signs;
    backward = 2 g + (the prox's backward of -g), dL/dlam = that of -g."""
    x0, gy = _sharp_case((5, 3, 11, 16), dtype, seed=3)
    x, gy = x0.reshape(15, 11, 16), gy.reshape(15, 11, 16)
    lam = torch.linspace(0.0, 0.3, 15, dtype=dtype)
    ops = torch.ops.tvcli
    p, s = ops.prox_tv2d_dykstra(x, lam, 3)
    y, s2 = ops.prox_tv2d_dykstra(x, lam, 3, True)
    assert torch.equal(s, s2)
    assert torch.equal(_bits(y), _bits(2 * x - p))
    r, rl = ops.prox_tv2d_dykstra_backward(-gy, s, lam)
    gx, gl = ops.prox_tv2d_dykstra_backward(gy, s, lam, True)
    ref = gy * 2
    ref.add_(r)  # as autograd's buffer: the product's 2 g first, then the prox's
    assert torch.equal(_bits(gx), _bits(ref))
    assert torch.equal(_bits(gl), _bits(rl))


def test_layer_sharp_lam_zero_and_overrides() -> None:
    """lam = 0 (fixed, or a per-call override) gives x; a float override takes the
    fused path too; half types and iters=None keep the expression."""
    x = torch.relu(torch.randn(4, 3, 10, 12))
    fixed = TVLayer(3, mode="sharp", learn_lam=False, lam_init=0.0)
    assert torch.equal(fixed(x), x)
    layer = TVLayer(3, mode="sharp", lam_init=0.05)
    assert torch.equal(layer(x, lam=0.0), x)
    assert torch.equal(_bits(layer(x, lam=0.1)), _bits(2 * x - tvcli.prox_tv2d(x, 0.1, iters=4)))
    xh, layer_h = x.to(torch.bfloat16), layer.to(torch.bfloat16)
    p = tvcli.prox_tv2d(xh, layer_h.lam.reshape(-1, 1, 1), iters=4)
    assert torch.equal(layer_h(xh), 2 * xh - p)
    assert type(layer_h(xh).grad_fn).__name__ == "SubBackward0"


def test_layer_sharp_fused_gradcheck() -> None:
    x = torch.rand(4, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    layer = TVLayer(2, mode="sharp", lam_init=0.08, iters=3).double()
    lam_override = torch.tensor([0.05, 0.11], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, l_: layer(a, lam=l_), (x, lam_override))
    assert torch.autograd.gradcheck(lambda a: layer(a), (x,))


def test_opcheck_2d_ops_sharp() -> None:
    x = torch.rand(3, 6, 7, dtype=torch.float64)
    lam = torch.tensor([0.05, 0.0, 0.2], dtype=torch.float64)
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_dykstra, (x, lam, 2, True))
    _, s = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 2)
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_dykstra_backward,
                          (torch.rand(3, 6, 7, dtype=torch.float64), s, lam, True))


def test_layer_sharp_torch_compile_matches_eager_bits() -> None:
    torch._dynamo.reset()
    x = torch.relu(torch.randn(4, 3, 12, 10)).requires_grad_()
    layer = TVLayer(3, mode="sharp", lam_init=0.05)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    ye, yc = layer(x), compiled(x)
    assert torch.equal(ye, yc)
    ge = torch.autograd.grad((ye ** 2).sum(), (x, layer.lam_param))
    gc = torch.autograd.grad((yc ** 2).sum(), (x, layer.lam_param))
    for a, b in zip(ge, gc, strict=True):
        assert torch.equal(a, b)


def test_layer_sharp_without_fused_op_keeps_expression_order(monkeypatch) -> None:
    """Without the fused op (here: switched off for the CPU) the layer falls back to
    `y = prox; 2 * x - y` (Alg. 1 over prox_tv1d): same NaN positions, values to
    rounding."""
    from tvcli import _extension as ext

    x0, gy = _sharp_case((3, 3, 9, 10), torch.float32, seed=4)
    layer = TVLayer(3, mode="sharp", lam_init=0.07)
    outs = []
    for off in (False, True):
        if off:
            monkeypatch.setitem(ext._EXT_DEVICES, "prox_tv2d_dykstra", frozenset())
        a = x0.clone().requires_grad_()
        y = layer(a * 1)
        assert ("Sub" in type(y.grad_fn).__name__) == off
        layer.zero_grad()
        y.backward(gy)
        outs.append((y.detach(), a.grad, layer.lam_param.grad.clone()))
    for u, v in zip(*outs, strict=True):
        ok = ~(u.isnan() | v.isnan())
        assert torch.equal(u.isnan(), v.isnan())
        assert torch.allclose(u[ok], v[ok], rtol=1e-5, atol=1e-5)
