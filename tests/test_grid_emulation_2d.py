"""The 2-D CUDA kernels' bodies (csrc/cuda/tv2d_kernel_body.h), run on the CPU over
emulated grids with the CUDA glue's launch sequence (``tvcli::_emulate_cuda_grid_2d``,
csrc/testing_tv2d.cpp).

Paper mode must equal the CPU op bit for bit (y, signs, grad_x; dL/dlam is summed in
another order, so to rounding), through both routes: fused (one block per image,
state in emulated shared memory with the glue's odd row pitch) and lines (one launch
per pass). Grids cover fewer threads than lines (strided loops), exactly enough, and
many more. Outputs start as NaN, signs as 99, state as canaries in guarded buffers.
"""

from __future__ import annotations

import math

import pytest
import torch

import tvcli
from tvcli._extension import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="compiled engine not built")

# (grid_dim, block_dim): one thread, fewer threads than lines, a warp, many blocks.
GRIDS = [(1, 1), (2, 3), (3, 32), (9, 64)]
FUSED, LINES = 0, 1


def _emu(kernel, a, b, lam, iters, grid, path, **kw):
    return torch.ops.tvcli._emulate_cuda_grid_2d(kernel, a, b, lam, iters, grid[0], grid[1],
                                                 path, **kw)


def _images(dtype, b=3, h=11, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, h, w, generator=g, dtype=torch.float64)
    x[:, : h // 2] += 0.7  # a step, so that runs form
    lam = torch.linspace(0.05, 0.4, b, dtype=torch.float64)
    return x.to(dtype), lam.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("path", [FUSED, LINES])
@pytest.mark.parametrize("shape", [(3, 11, 8), (2, 7, 13), (4, 1, 9), (2, 6, 1), (5, 32, 32)])
def test_dykstra_forward_and_backward_match_cpu(dtype, grid, path, shape) -> None:
    x, lam = _images(dtype, *shape)
    iters = 3
    y_ref, s_ref = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, iters)
    y, s = _emu("dykstra", x, x, lam, iters, grid, path)
    assert torch.equal(s, s_ref), "signs differ (99: a sign no thread wrote)"
    assert torch.equal(y, y_ref)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gy = gy.to(dtype)
    gx_ref, gl_ref = torch.ops.tvcli.prox_tv2d_dykstra_backward(gy, s_ref, lam)
    gx, gl = _emu("dykstra_backward", gy, s_ref, lam, iters, grid, path)
    assert torch.equal(gx, gx_ref)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(gl, gl_ref, rtol=tol, atol=tol * float(gy.abs().sum()))


def _special_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Five 6x7 float64 images holding Inf, NaN and -Inf, with lam 0.2, 0, 0, inf, 0."""
    x, _ = _images(torch.float64, 5, 6, 7, seed=1)
    x[0, 2, 3] = math.inf
    x[1, 0, 0] = math.nan
    x[4, 5, 6] = -math.inf
    return x, torch.tensor([0.2, 0.0, 0.0, math.inf, 0.0], dtype=torch.float64)


@pytest.mark.parametrize("path", [FUSED, LINES])
def test_dykstra_special_images(path) -> None:
    """NaN/Inf images (NaN out, or x at lam 0; marker sign), lam 0 and lam inf."""
    x, lam = _special_images()
    y_ref, s_ref = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 2)
    y, s = _emu("dykstra", x, x, lam, 2, (2, 5), path)
    assert torch.equal(s, s_ref)
    assert torch.equal(torch.isnan(y), torch.isnan(y_ref))
    assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(y_ref))
    assert torch.equal(y[4], x[4]) and bool(torch.isnan(y[0]).all())
    gy = torch.ones_like(x)
    gx_ref, gl_ref = torch.ops.tvcli.prox_tv2d_dykstra_backward(gy, s_ref, lam)
    gx, gl = _emu("dykstra_backward", gy, s_ref, lam, 2, (2, 5), path)
    assert torch.equal(torch.isnan(gx), torch.isnan(gx_ref))
    assert torch.equal(torch.nan_to_num(gx), torch.nan_to_num(gx_ref))
    assert torch.equal(torch.isnan(gl), torch.isnan(gl_ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("path", [FUSED, LINES])
@pytest.mark.parametrize("shape", [(3, 11, 8), (4, 1, 9), (2, 6, 1), (5, 32, 32)])
def test_dykstra_sharp_matches_cpu(dtype, grid, path, shape) -> None:
    """sharp=True: the kernels' 2 x - prox (store phase) and their backward (-g read
    by the first column pass, 2 g + that stored) equal the CPU op's bit for bit."""
    x, lam = _images(dtype, *shape)
    lam[0] = 0.0
    y_ref, s_ref = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 3, True)
    y, s = _emu("dykstra", x, x, lam, 3, grid, path, sharp=True)
    assert torch.equal(s, s_ref)
    assert torch.equal(y, y_ref)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gy = gy.to(dtype)
    gx_ref, gl_ref = torch.ops.tvcli.prox_tv2d_dykstra_backward(gy, s_ref, lam, True)
    gx, gl = _emu("dykstra_backward", gy, s_ref, lam, 3, grid, path, sharp=True)
    assert torch.equal(gx, gx_ref)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(gl, gl_ref, rtol=tol, atol=tol * float(gy.abs().sum()))
    # and the sharpening itself: the prox kernels' outputs with it written out
    p, _ = _emu("dykstra", x, x, lam, 3, grid, path)
    assert torch.equal(y, 2 * x - p)
    r, rl = _emu("dykstra_backward", -gy, s_ref, lam, 3, grid, path)
    assert torch.equal(gx, gy * 2 + r) and torch.equal(gl, rl)


@pytest.mark.parametrize("path", [FUSED, LINES])
def test_dykstra_sharp_special_images(path) -> None:
    """sharp=True on NaN/Inf images (lam 0 and lam > 0) and lam inf, NaN in g."""
    x, lam = _special_images()
    y_ref, s_ref = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 2, True)
    y, s = _emu("dykstra", x, x, lam, 2, (2, 5), path, sharp=True)
    assert torch.equal(s, s_ref)
    assert torch.equal(y.view(torch.int64), y_ref.view(torch.int64))  # NaNs included
    gy = torch.ones_like(x)
    gy[2, 1, 1] = math.nan
    gx_ref, gl_ref = torch.ops.tvcli.prox_tv2d_dykstra_backward(gy, s_ref, lam, True)
    gx, gl = _emu("dykstra_backward", gy, s_ref, lam, 2, (2, 5), path, sharp=True)
    assert torch.equal(gx.view(torch.int64), gx_ref.view(torch.int64))
    assert torch.equal(torch.isnan(gl), torch.isnan(gl_ref))
    assert torch.equal(torch.nan_to_num(gl), torch.nan_to_num(gl_ref))


def test_dykstra_float_arithmetic_option() -> None:
    """The float accumulator option (float32 input): same structure, float rounding.
    Its accuracy on real workloads is for a GPU run to measure (docs/gpu.md)."""
    x, lam = _images(torch.float32, 4, 32, 32, seed=2)
    y_ref, s_ref = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 4)
    for path in (FUSED, LINES):
        y, s = _emu("dykstra", x, x, lam, 4, (3, 32), path, float_arith=True)
        assert float((y - y_ref).abs().max()) < 2e-6  # 2.4e-7 measured
        assert float((s != s_ref).float().mean()) < 0.005  # near-ties may flip (0 here)
        gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
        gx, gl = _emu("dykstra_backward", gy, s_ref, lam, 4, (3, 32), path, float_arith=True)
        gx_ref, gl_ref = torch.ops.tvcli.prox_tv2d_dykstra_backward(gy, s_ref, lam)
        assert float((gx - gx_ref).abs().max()) < 1e-5
        assert torch.allclose(gl, gl_ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("grid", [(1, 1), (3, 7), (4, 128)])
def test_fista_matches_cpu_to_tolerance(grid) -> None:
    """Converged mode: the same iteration counts and stopping rule as the CPU op;
    the 1-D passes differ (Condat here, the DP solver there), so y agrees to the
    certified accuracy, not bitwise."""
    x, lam = _images(torch.float64, 3, 20, 17, seed=3)
    lam = torch.tensor([0.1, 0.0, 0.3], dtype=torch.float64)
    tol = 1e-7
    y, info = _emu("fista", x, x, lam, 0, grid, 0, tol=tol, max_iter=3000)
    y_ref, info_ref = torch.ops.tvcli.prox_tv2d_solve(x, lam, tol, 3000, 1, tol)
    assert torch.equal(y[1], x[1])  # lam 0: identity, exactly
    assert bool(info[:, 2].all()) and bool((info[:, 1] <= tol).all())
    assert float((y - y_ref).abs().max()) < 50 * tol * math.sqrt(20 * 17)
    assert (info[:, 0] - info_ref[:, 0]).abs().max() <= 2


def test_fista_bad_lam_is_nan() -> None:
    x, _ = _images(torch.float64, 2, 5, 6, seed=4)
    lam = torch.tensor([math.nan, -1.0], dtype=torch.float64)
    y, _info = _emu("fista", x, x, lam, 0, (1, 8), 0)
    assert bool(torch.isnan(y).all())


@pytest.mark.parametrize("slots, grid", [(1, (1, 1)), (2, (1, 5)), (4, (2, 2)), (3, (3, 64))])
def test_region_backward_matches_cpu(slots, grid) -> None:
    """One image per thread with `slots` workspaces in flight: bitwise the CPU op."""
    x, lam = _images(torch.float64, 5, 9, 10, seed=5)
    lam[2] = 0.0
    y = tvcli.prox_tv2d(x, lam.reshape(5, 1, 1), tol=1e-11)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ref = torch.ops.tvcli.prox_tv2d_region_backward(gy, y, lam, 1e-9)
    out = _emu("region_backward", gy, y, lam, 0, grid, slots, tol=1e-9)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_emulation_rejects_unknown_kernel() -> None:
    x = torch.rand(1, 2, 2)
    with pytest.raises(RuntimeError, match="unknown kernel"):
        _emu("nope", x, x, torch.ones(1), 1, (1, 1), 1)
