"""The CUDA kernels' per-thread bodies, run on the CPU over emulated grids.

``tvcli::_emulate_cuda_grid`` calls the very functions the ``__global__`` kernels
call (csrc/cuda/tv1d_kernel_body.h) for every (block, thread) of a grid, so the
signal-to-thread mapping, the grid-stride loop, strided rows / columns, per-signal
lam and the interleaved pn workspace are checked here, without a GPU. Outputs
start as NaN: a signal no thread solved shows up as a mismatch.
"""

from __future__ import annotations

import pytest
import torch

import tvcli
from tvcli._extension import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="compiled engine not built")

# (grid_dim, block_dim): fewer threads than signals (grid-stride loop), exactly
# enough, many more than needed, odd sizes, a single thread.
GRIDS = [(1, 1), (2, 3), (3, 128), (7, 32), (64, 128)]


def _emulate(kernel: str, a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, dim: int,
             grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ops.tvcli._emulate_cuda_grid(kernel, a, b, lam, dim, grid[0], grid[1])


def _layouts(dtype: torch.dtype):
    """(x, lam, dim) triples: columns, rows, transposed views, strided slices."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 29, 17, generator=g, dtype=torch.float64).cumsum(1).to(dtype)
    lam_c = (torch.rand(3, 1, 17, generator=g, dtype=torch.float64) + 0.2).to(dtype)
    lam_r = (torch.rand(3, 29, 1, generator=g, dtype=torch.float64) + 0.2).to(dtype)
    yield base, lam_c, 1  # columns: neighbouring threads read neighbouring addresses
    yield base, lam_r, 2  # rows
    yield base.transpose(0, 2), lam_c.transpose(0, 2), 1  # non-contiguous view
    yield base[:, ::2, 1::3], lam_c[:, :, 1::3], 1  # strided slice
    yield base, lam_c.new_full((1, 1, 1), 0.5).expand(3, 1, 17), 1  # broadcast lam


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("solver", ["direct", "pn"])
def test_prox_bodies_match_cpu(dtype: torch.dtype, grid: tuple[int, int], solver: str) -> None:
    for x, lam, dim in _layouts(dtype):
        y, iters = _emulate(solver, x, x, lam, dim, grid)
        ref = torch.ops.tvcli.prox_tv1d(x, lam, dim, solver)
        assert not bool(torch.isnan(y).any()), "a signal was not solved by any thread"
        assert torch.equal(y, ref), (solver, grid, dim)
        if solver == "pn":
            assert bool((iters >= 0).all())
            _, ref_iters, _ = torch.ops.tvcli.prox_tv1d_pn_stats(x, lam, dim, 100)
            assert torch.equal(iters, ref_iters.to(iters.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid", GRIDS)
def test_backward_body_matches_cpu(dtype: torch.dtype, grid: tuple[int, int]) -> None:
    for x, lam, dim in _layouts(dtype):
        y = torch.ops.tvcli.prox_tv1d(x, lam, dim, "direct")
        gy = torch.randn(x.shape, dtype=dtype).transpose(0, 1).contiguous().transpose(0, 1)
        gx, glam = _emulate("backward", gy, y, lam, dim, grid)
        ref_gx, ref_glam = torch.ops.tvcli.prox_tv1d_backward(gy, y, lam, dim)
        assert torch.equal(gx, ref_gx)
        assert torch.equal(glam, ref_glam)


def test_pn_long_signals_few_threads() -> None:
    """A big workspace per thread, reused across the signals of a grid-stride loop."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3000, generator=g, dtype=torch.float64).cumsum(1)
    lam = torch.full((5, 1), 2.0, dtype=torch.float64)
    y, _ = _emulate("pn", x, x, lam, 1, (1, 2))
    assert torch.equal(y, tvcli.prox_tv1d(x, lam, solver="pn"))


def test_emulation_rejects_unknown_kernel() -> None:
    x = torch.randn(2, 4)
    with pytest.raises(RuntimeError, match="unknown kernel"):
        _emulate("nope", x, x, torch.ones(2, 1), 1, (1, 1))


def _quantised_rows(levels: int, n: int, count: int, seed: int) -> torch.Tensor:
    """count rows of n values k / levels, as photos give them (runs and ramps)."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randint(-3, 4, (count, n), generator=g, dtype=torch.int64)
    steps[torch.rand(count, n, generator=g) < 0.5] = 0
    start = torch.randint(0, levels + 1, (count, 1), generator=g, dtype=torch.int64)
    k = (start + steps.cumsum(1)).clamp(0, levels)
    return k.double() / levels


# The device divides where the host reads a table of reciprocals; both must
# round alike (core::div_count: num * (1/m correctly rounded)). uint8 rows of
# 64 at lam 1 showed 8 of 20000 rows with a different run structure when the
# device computed num / m instead; lengths >= 256 take the non-table branch.
@pytest.mark.parametrize("solver", ["direct", "pn"])
@pytest.mark.parametrize(("levels", "n", "lam"), [
    (255, 64, 1.0), (255, 64, 0.1), (65535, 64, 0.3), (255, 300, 2.0), (65535, 300, 0.05),
])
def test_device_division_matches_host(solver: str, levels: int, n: int, lam: float) -> None:
    count = 20000 if n == 64 else 2000
    x = _quantised_rows(levels, n, count, seed=levels + n)
    lam_t = torch.full((count, 1), lam, dtype=torch.float64)
    ref = torch.ops.tvcli.prox_tv1d(x, lam_t, 1, solver)
    y, _ = _emulate(f"{solver}_device_div", x, x, lam_t, 1, (64, 128))
    differ = (y != ref).any(1)
    assert not bool(differ.any()), f"{int(differ.sum())} of {count} rows differ bitwise"
    y32, _ = _emulate(f"{solver}_device_div", x.float(), x.float(), lam_t.float(), 1, (7, 32))
    assert torch.equal(y32, torch.ops.tvcli.prox_tv1d(x.float(), lam_t.float(), 1, solver))
