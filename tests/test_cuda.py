"""CUDA backend: parity with the CPU engine, gradients, layouts. Skips without a GPU.

Run on a machine with a GPU and a CUDA build (docs/building.md):

    python -m pytest -q tests/test_cuda.py

The kernels run the same csrc/core functions as the CPU, in double, compiled with
--fmad=false, so results should agree to rounding (the tolerances below are far
looser than the expected bitwise agreement, and far tighter than any bug).
"""

from __future__ import annotations

import math

import pytest
import torch

import tvcli
from tvcli._extension import ext_has_device
from tvcli.solver_stats import prox_tv1d_pn_stats

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(not ext_has_device("cuda"), reason="tvcli built without CUDA"),
]

SOLVERS = ("direct", "pn")
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def _close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, scale: float) -> None:
    err = float((a.double().cpu() - b.double().cpu()).abs().max()) if a.numel() else 0.0
    assert err <= TOL[dtype] * max(scale, 1.0), err


def _batch(dtype: torch.dtype, shape=(4, 33, 21), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).cumsum(1).to(dtype)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_forward_parity(solver: str, dtype: torch.dtype, dim: int) -> None:
    x = _batch(dtype)
    for lam in (0.0, 1e-3, 0.5, 7.0, math.inf):
        y_cpu = tvcli.prox_tv1d(x, lam, dim, solver=solver)
        y_gpu = tvcli.prox_tv1d(x.cuda(), lam, dim, solver=solver)
        assert y_gpu.device.type == "cuda" and y_gpu.dtype == dtype
        _close(y_gpu, y_cpu, dtype, float(x.abs().max()))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layouts_and_per_signal_lam(solver: str, dtype: torch.dtype) -> None:
    x = _batch(dtype, (3, 40, 24), seed=1)
    lam = torch.rand(3, 1, 24, dtype=dtype) + 0.1
    cases = [
        (x, lam, 1),
        (x.transpose(1, 2), lam.transpose(1, 2), 2),
        (x[:, ::3, 1::2], lam[:, :, 1::2], 1),
        (x.permute(2, 0, 1), lam.permute(2, 0, 1), 2),
    ]
    for xc, lc, d in cases:
        y_cpu = tvcli.prox_tv1d(xc, lc, d, solver=solver)
        y_gpu = tvcli.prox_tv1d(xc.cuda(), lc.cuda(), d, solver=solver)
        _close(y_gpu, y_cpu, dtype, float(xc.abs().max()))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_parity(solver: str, dtype: torch.dtype) -> None:
    x0 = _batch(dtype, (5, 30), seed=2)
    lam0 = torch.rand(5, 1, dtype=dtype) + 0.2
    w = torch.randn(5, 30, dtype=dtype)
    grads = []
    for dev in ("cpu", "cuda"):
        x = x0.to(dev).requires_grad_(True)
        lam = lam0.to(dev).requires_grad_(True)
        (tvcli.prox_tv1d(x, lam, solver=solver) * w.to(dev)).sum().backward()
        grads.append((x.grad.cpu(), lam.grad.cpu()))
    scale = float(w.abs().max()) * 30
    _close(grads[1][0], grads[0][0], dtype, scale)
    _close(grads[1][1], grads[0][1], dtype, scale)


@pytest.mark.parametrize("solver", SOLVERS)
def test_gradcheck_cuda(solver: str) -> None:
    x = _batch(torch.float64, (3, 12), seed=3).cuda().requires_grad_(True)
    lam = torch.tensor([[0.3], [0.8], [1.5]], dtype=torch.float64, device="cuda",
                       requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: tvcli.prox_tv1d(a, b, solver=solver), (x, lam))


def test_paper_workload_and_pn_stats() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(8192, 32)
    x[:, 16:] = 1
    x += 0.1 * torch.randn(8192, 32, generator=g)
    y_cpu, it_cpu, st_cpu = prox_tv1d_pn_stats(x, 1.0)
    y_gpu, it_gpu, st_gpu = prox_tv1d_pn_stats(x.cuda(), 1.0)
    _close(y_gpu, y_cpu, torch.float32, 1.0)
    assert torch.equal(it_gpu.cpu(), it_cpu)
    assert torch.equal(st_gpu.cpu(), st_cpu)


def test_long_signals_and_workspace_cap() -> None:
    """Long signals shrink the launch (workspace cap): the grid-stride loop covers all."""
    x = _batch(torch.float64, (300, 20000), seed=4)
    for solver in SOLVERS:
        _close(tvcli.prox_tv1d(x.cuda(), 2.0, solver=solver),
               tvcli.prox_tv1d(x, 2.0, solver=solver), torch.float64, float(x.abs().max()))


def test_bad_inputs_cuda() -> None:
    x = torch.randn(4, 9, dtype=torch.float64)
    x[1, 3] = math.nan
    x[2, 0] = math.inf
    lam = torch.tensor([[0.5], [0.5], [0.5], [0.0]], dtype=torch.float64)
    for solver in SOLVERS:
        y = tvcli.prox_tv1d(x.cuda(), lam.cuda(), solver=solver).cpu()
        ref = tvcli.prox_tv1d(x, lam, solver=solver)
        assert torch.equal(torch.isnan(y), torch.isnan(ref))
        assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(ref))
    assert tvcli.prox_tv1d(torch.empty(0, 5, device="cuda"), 1.0).shape == (0, 5)


def test_runs_on_current_stream() -> None:
    x = _batch(torch.float32, (64, 50), seed=5).cuda()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = tvcli.prox_tv1d(x, 0.5, solver="pn")
    s.synchronize()
    _close(y, tvcli.prox_tv1d(x.cpu(), 0.5, solver="pn"), torch.float32, float(x.abs().max()))


def test_opcheck_cuda() -> None:
    x = _batch(torch.float64, (3, 10), seed=6).cuda()
    lam = torch.full((3, 1), 0.4, dtype=torch.float64, device="cuda")
    for solver in SOLVERS:
        torch.library.opcheck(torch.ops.tvcli.prox_tv1d, (x, lam, 1, solver))
    torch.library.opcheck(torch.ops.tvcli.prox_tv1d_pn_stats, (x, lam, 1, 100))


# ------------------------------------------------ issue 12: defects 2, 4, 5 on the GPU


def test_pn_workspace_of_one_long_signal_is_small() -> None:
    """Defect 2: one signal of 10^6 samples needs one 24 MB workspace slot, not a
    block's worth (2.9 GiB)."""
    x = _batch(torch.float64, (1, 10**6), seed=7).cuda()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = tvcli.prox_tv1d(x, 2.0, solver="pn")
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 64 * 2**20, peak  # y (8 MB) + one slot (24 MB)
    _close(y, tvcli.prox_tv1d(x.cpu(), 2.0, solver="direct"), torch.float64,
           float(x.abs().max()))


@pytest.mark.parametrize("iters", [4, None])
def test_tv2d_lam_zero_with_inf_is_identity(iters) -> None:
    """Defect 4: lam = 0 returns the input exactly on CUDA as on the CPU (paper
    mode; converged mode makes non-finite images NaN on both)."""
    x = torch.rand(2, 9, 11, dtype=torch.float64)
    x[0, 3, 4] = math.inf
    x[1, 0, 0] = -math.inf
    y_cpu = tvcli.prox_tv2d(x, 0.0, iters=iters)
    y_gpu = tvcli.prox_tv2d(x.cuda(), 0.0, iters=iters).cpu()
    assert torch.equal(torch.isnan(y_gpu), torch.isnan(y_cpu))
    assert torch.equal(torch.nan_to_num(y_gpu), torch.nan_to_num(y_cpu))
    if iters is not None:
        assert torch.equal(y_gpu, x)


def test_no_host_sync_with_tensor_lam() -> None:
    """Defect 5: a tensor lam on the GPU is not read back (sync debug mode raises
    on any synchronising call), through the 1-D op, paper-mode 2-D and TVLayer."""
    from tvcli.nn import TVLayer

    x = torch.rand(2, 3, 16, 16, device="cuda")
    lam = torch.full((3, 1, 1), 0.05, device="cuda")
    layer = TVLayer(3, iters=4).cuda()
    tvcli.prox_tv1d(x, lam, -1)  # warm-up (lazy init may sync)
    tvcli.prox_tv2d(x, lam, iters=4)
    layer(x)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tvcli.prox_tv1d(x, lam, -1)
        tvcli.prox_tv2d(x, lam, iters=4)
        layer(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bad_tensor_lam_on_gpu_gives_nan_not_error() -> None:
    """The documented cost of defect 5's fix: a negative / NaN lam tensor on the
    GPU is not rejected; the signals it applies to come out NaN."""
    x = torch.rand(3, 8, dtype=torch.float64, device="cuda")
    lam = torch.tensor([[0.1], [-1.0], [math.nan]], dtype=torch.float64, device="cuda")
    y = tvcli.prox_tv1d(x, lam).cpu()
    assert not bool(torch.isnan(y[0]).any()) and bool(torch.isnan(y[1:]).all())
