"""The n-D TV prox's CUDA kernel bodies (csrc/cuda/tv_nd_kernel_body.h), run on the
CPU over emulated grids with the CUDA glue's launch sequence and argument filling
(``tvcli::_emulate_cuda_grid_nd``, csrc/testing_tv_nd.cpp), against the CPU op.

The per-pixel bodies use the same expressions in the same order as the CPU op's
line sweeps (csrc/core/tv_nd_fgp.h), so y is equal bit for bit whenever the sums
(restart test, gap), which the grid adds in another order, take the same
decisions; the tests check the iterations agree and then demand equality. Grids
cover fewer threads than pixels (grid-stride), exactly enough and more, fewer
blocks than problems (grid-stride over problems) and more. Outputs start as NaN;
uninitialised work buffers as canaries inside guard zones.
"""

from __future__ import annotations

import math

import pytest
import torch

from tvcli._extension import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="compiled engine not built")

# (grid_x, grid_y, block_dim)
GRIDS = [(1, 1, 1), (2, 1, 3), (3, 2, 32), (9, 7, 64)]
# (norm, channels, spatial, weight map?)
CASES = [("iso", 1, (7, 6), False), ("iso", 3, (5, 6), True), ("iso", 1, (4, 3, 5), True),
         ("aniso", 1, (3, 4, 5), False), ("aniso", 2, (6, 7), True), ("iso", 1, (9,), True),
         ("iso", 2, (2, 3, 2, 3), False)]


def _data(dtype, c, spatial, w_map, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, *spatial, dtype=torch.float64, generator=g)
    x[:, :, : max(1, spatial[0] // 2)] += 0.7  # a step
    if w_map:
        w = 0.02 + 0.2 * torch.rand(b, 1, *spatial, dtype=torch.float64, generator=g)
        w.view(b, -1)[:, :2] = 0.0
    else:
        w = torch.linspace(0.05, 0.3, b, dtype=torch.float64).reshape(b, 1, *[1] * len(spatial))
    return x.to(dtype), w.to(dtype)


def _emu(x, w, nd, norm, tol, max_iter, f32, restart, grid, sync_every=2):
    return torch.ops.tvcli._emulate_cuda_grid_nd(x, w, nd, norm, tol, max_iter, 5, f32, restart,
                                                 grid[0], grid[1], grid[2], sync_every)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-C{c[1]}-{'x'.join(map(str, c[2]))}"
                                             for c in CASES])
@pytest.mark.parametrize("dtype,f32", [(torch.float64, False), (torch.float32, True),
                                       (torch.float32, False)])
def test_emulated_grid_equals_cpu_op(case, grid, dtype, f32) -> None:
    norm, c, spatial, w_map = case
    x, w = _data(dtype, c, spatial, w_map)
    nd = len(spatial)
    for tol, max_iter, restart in [(1e-3, 2000, True), (0.0, 23, True), (1e-2, 2000, False)]:
        y_ref, i_ref = torch.ops.tvcli.prox_tv_nd(x, w, nd, norm, tol, max_iter, 5, f32, restart)
        y, info = _emu(x, w, nd, norm, tol, max_iter, f32, restart, grid)
        assert torch.equal(info[:, 0], i_ref[:, 0]) and torch.equal(info[:, 2], i_ref[:, 2])
        assert torch.allclose(info[:, 1], i_ref[:, 1], rtol=1e-9, atol=1e-15)
        assert torch.equal(y, y_ref), float((y - y_ref).abs().max())


def test_emulated_bad_problems_and_sync() -> None:
    """NaN / Inf in x, a negative or NaN weight: NaN and info [0, NaN, 0], as the CPU
    op; the others unaffected; reading `running` after every check or rarely gives
    the same result."""
    x, w = _data(torch.float64, 1, (5, 6), True, b=5)
    x[1, 0, 2, 2] = math.inf
    x[2, 0, 0, 0] = math.nan
    w[3, 0, 1, 1] = -0.1
    w[4, 0, 4, 5] = math.nan
    y_ref, i_ref = torch.ops.tvcli.prox_tv_nd(x, w, 2, "iso", 1e-4, 3000)
    for sync_every in (1, 1000):
        y, info = _emu(x, w, 2, "iso", 1e-4, 3000, False, True, (2, 2, 8), sync_every)
        assert torch.equal(y.isnan(), y_ref.isnan())
        assert torch.equal(y.nan_to_num(), y_ref.nan_to_num())
        assert torch.equal(info.isnan(), i_ref.isnan())
        # Iterations and the stop exactly; the bound to the rounding of the gap's
        # summation order (blocks here, lines on the CPU), as in the test above.
        assert torch.equal(info[:, [0, 2]].nan_to_num(), i_ref[:, [0, 2]].nan_to_num())
        assert torch.allclose(info[:, 1], i_ref[:, 1], rtol=1e-9, atol=1e-15, equal_nan=True)
    assert bool(torch.isnan(y[1:]).all()) and bool(torch.isfinite(y[0]).all())


def test_emulated_scalar_weight_per_problem_and_big_problem() -> None:
    """One weight per problem (no map) on a problem with more pixels than the grid
    has threads, float32 state."""
    x, w = _data(torch.float32, 1, (40, 33), False, b=2, seed=3)
    y_ref, i_ref = torch.ops.tvcli.prox_tv_nd(x, w, 2, "iso", 1e-3, 3000, 5, True)
    y, info = _emu(x, w, 2, "iso", 1e-3, 3000, True, True, (3, 1, 16))
    assert torch.equal(info[:, 0], i_ref[:, 0]) and torch.equal(y, y_ref)
