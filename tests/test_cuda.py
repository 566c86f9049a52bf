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


# ------------------------------------------------ issue 12: coverage the review asked for


def test_grid_stride_pn_more_signals_than_threads() -> None:
    """N = 20000, 641 signals: the pn workspace cap allows ~559 solving threads,
    so some threads take two signals (grid-stride loop)."""
    blocks, threads, _, _ = torch.ops.tvcli._cuda_pn_launch_plan(641, 20000)
    assert threads < 641
    x = _batch(torch.float64, (641, 20000), seed=8)
    for solver in SOLVERS:
        y = tvcli.prox_tv1d(x.cuda(), 1.5, solver=solver).cpu()
        _close(y, tvcli.prox_tv1d(x, 1.5, solver="direct"), torch.float64, float(x.abs().max()))


def test_tensor_over_2_31_elements() -> None:
    """int64 offsets everywhere: 2^26 + 3 signals of 32 float32 (> 2^31 elements)."""
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs ~20 GB of GPU memory")
    n = 2**26 + 3
    x = torch.zeros(n, 32, device="cuda")
    x[:, 16:] = 1.0
    x[-5:] += torch.linspace(0, 0.1, 32, device="cuda")
    y = tvcli.prox_tv1d(x, 0.1)
    tail = x[-5:].cpu()
    _close(y[-5:], tvcli.prox_tv1d(tail, 0.1), torch.float32, 1.0)
    _close(y[:3], tvcli.prox_tv1d(x[:3].cpu(), 0.1), torch.float32, 1.0)
    del x, y
    torch.cuda.empty_cache()


def test_runs_on_current_stream_even_when_it_lags() -> None:
    """The op must queue on the current stream: the side stream is held back by
    _sleep before its input is written; an op on another stream would read zeros."""
    data = _batch(torch.float32, (256, 64), seed=9)
    ref = tvcli.prox_tv1d(data, 0.5, solver="pn")
    src = data.cuda()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x = torch.zeros_like(src)
        torch.cuda._sleep(50_000_000)  # ~tens of ms of GPU cycles
        x.copy_(src)
        y = tvcli.prox_tv1d(x, 0.5, solver="pn")
        y2, _ = torch.ops.tvcli.prox_tv2d_dykstra(x.reshape(16, 16, 64), torch.full(
            (16,), 0.5, device="cuda"), 2)
    s.synchronize()
    _close(y, ref, torch.float32, float(data.abs().max()))
    ref2, _ = torch.ops.tvcli.prox_tv2d_dykstra(data.reshape(16, 16, 64), torch.full((16,), 0.5),
                                                2)
    _close(y2, ref2, torch.float32, float(data.abs().max()))


@pytest.mark.parametrize("dim", [0, 1])
def test_backward_along_columns_and_rows(dim: int) -> None:
    x0 = _batch(torch.float64, (24, 17), seed=10)
    w = torch.randn(24, 17, dtype=torch.float64)
    grads = []
    for dev in ("cpu", "cuda"):
        x = x0.to(dev).requires_grad_(True)
        (tvcli.prox_tv1d(x, 0.7, dim) * w.to(dev)).sum().backward()
        grads.append(x.grad.cpu())
    _close(grads[1], grads[0], torch.float64, 24.0)


def test_stride_zero_grad_and_scalar_tensor_lam() -> None:
    x = _batch(torch.float32, (6, 40), seed=11).cuda().requires_grad_(True)
    lam = torch.tensor(0.3, device="cuda", requires_grad=True)  # 0-dim tensor
    tvcli.prox_tv1d(x, lam).sum().backward()  # grad_y = ones expanded: stride 0
    xc = x.detach().cpu().requires_grad_(True)
    lc = torch.tensor(0.3, requires_grad=True)
    tvcli.prox_tv1d(xc, lc).sum().backward()
    _close(x.grad, xc.grad, torch.float32, 1.0)
    _close(lam.grad, lc.grad, torch.float32, 240.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_forward_and_backward(dtype) -> None:
    x0 = _batch(dtype, (5, 30), seed=12)
    outs = []
    for dev in ("cpu", "cuda"):
        x = x0.to(dev).requires_grad_(True)
        y = tvcli.prox_tv1d(x, 0.4)
        y.float().square().sum().backward()
        assert y.dtype == dtype and x.grad.dtype == dtype
        outs.append((y.detach().cpu(), x.grad.cpu()))
    _close(outs[1][0], outs[0][0], dtype, float(x0.float().abs().max()))
    _close(outs[1][1], outs[0][1], dtype, float(outs[0][1].float().abs().max()))


def test_empty_tensors_everywhere() -> None:
    for shape in ((0, 5), (3, 0), (0,)):
        x = torch.empty(shape, device="cuda", requires_grad=True)
        y = tvcli.prox_tv1d(x, 1.0, -1)
        y.sum().backward()
        assert y.shape == x.shape and x.grad.shape == x.shape
    for shape in ((0, 4, 4), (2, 0, 4)):
        x = torch.empty(shape, device="cuda")
        assert tvcli.prox_tv2d(x, 0.1, iters=2).shape == shape
        assert tvcli.prox_tv2d(x, 0.1).shape == shape


def test_pn_stats_fallback_status() -> None:
    """A low Newton cap makes pn fall back to the direct solver (status 2), as on
    the CPU, signal by signal."""
    x = _batch(torch.float64, (64, 300), seed=13)
    y_c, it_c, st_c = prox_tv1d_pn_stats(x, 2.0, max_iter=2)
    y_g, it_g, st_g = prox_tv1d_pn_stats(x.cuda(), 2.0, max_iter=2)
    assert bool((st_c == 2).any())
    assert torch.equal(st_g.cpu(), st_c) and torch.equal(it_g.cpu(), it_c)
    _close(y_g, y_c, torch.float64, float(x.abs().max()))


def test_torch_compile_cuda() -> None:
    def f(x, lam):
        return tvcli.prox_tv1d(x, lam) + tvcli.prox_tv2d(x.reshape(2, 4, 8), 0.1, iters=2
                                                          ).reshape(8, 8)

    x = _batch(torch.float32, (8, 8), seed=14).cuda()
    lam = torch.full((8, 1), 0.2, device="cuda")
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    _close(compiled(x, lam), f(x, lam), torch.float32, 1.0)


def test_cuda_graph_capture() -> None:
    """No host sync and no allocation outside the caching allocator: the 1-D op,
    paper-mode 2-D and TVLayer forward can be captured and replayed."""
    from tvcli.nn import TVLayer

    x = torch.rand(4, 3, 16, 16, device="cuda")
    lam = torch.full((3, 1, 1), 0.05, device="cuda")
    layer = TVLayer(3, iters=4).cuda()

    def run():
        return (tvcli.prox_tv1d(x, lam, -1, solver="pn"), tvcli.prox_tv2d(x, lam, iters=4),
                layer(x))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            run()  # warm-up outside capture (lazy init, allocator)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        outs = run()
    x.copy_(torch.rand(4, 3, 16, 16, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    with torch.no_grad():
        ref = run()
    for a, b in zip(outs, ref, strict=True):
        _close(a, b, torch.float32, 1.0)


# ------------------------------------------------ issue 12: the 2-D operator on CUDA


def _images(dtype, shape=(3, 5, 24, 20), seed: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    x[..., : shape[-2] // 2, :] += 0.5
    return x.to(dtype)


def test_2d_kernels_are_registered() -> None:
    for op in ("prox_tv2d_dykstra", "prox_tv2d_dykstra_backward", "prox_tv2d_solve",
               "prox_tv2d_region_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"tvcli::{op}", "CUDA"), op
    assert ext_has_device("cuda", "prox_tv2d_dykstra")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 2, 7, 130), (1, 1, 300, 260)])
def test_2d_paper_mode_parity(dtype, shape) -> None:
    """Fused (32x32: shared memory) and lines (300x260: global state) routes."""
    x = _images(dtype, shape)
    lam = torch.rand(shape[1], 1, 1, dtype=dtype) * 0.2 + 0.02
    y_cpu, s_cpu = torch.ops.tvcli.prox_tv2d_dykstra(x.reshape(-1, *shape[2:]),
                                                     lam.expand(shape[0], -1, -1, -1)
                                                     .reshape(-1), 4)
    y_gpu, s_gpu = torch.ops.tvcli.prox_tv2d_dykstra(x.reshape(-1, *shape[2:]).cuda(),
                                                     lam.expand(shape[0], -1, -1, -1)
                                                     .reshape(-1).cuda(), 4)
    _close(y_gpu, y_cpu, dtype, 2.0)
    mismatch = float((s_gpu.cpu() != s_cpu).double().mean())
    assert mismatch < 1e-3, mismatch  # bitwise once host/device divide alike (issue 12.1)
    w = torch.randn(x.shape, dtype=dtype)
    grads = []
    for dev in ("cpu", "cuda"):
        xd = x.to(dev).requires_grad_(True)
        ld = lam.to(dev).requires_grad_(True)
        (tvcli.prox_tv2d(xd, ld, iters=4) * w.to(dev)).sum().backward()
        grads.append((xd.grad.cpu(), ld.grad.cpu()))
    _close(grads[1][0], grads[0][0], dtype, 4.0)
    _close(grads[1][1], grads[0][1], dtype, float(w.abs().sum()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 300, 260)])
def test_2d_paper_mode_sharp_on_device(dtype, shape) -> None:
    """sharp=True on the device (fused and lines routes) is 2 x - prox of the
    device's own prox, and its backward 2 g + the prox's backward of -g, bit for
    bit (as on the CPU; the grid emulation checks the kernels' bodies there)."""
    x = _images(dtype, shape).reshape(-1, *shape[2:]).cuda()
    x[0, 0, 0] = float("nan")
    lam = (torch.rand(x.shape[0], dtype=dtype) * 0.2 + 0.02).cuda()
    lam[-1] = 0.0
    ops = torch.ops.tvcli
    p, s = ops.prox_tv2d_dykstra(x, lam, 4)
    y, s2 = ops.prox_tv2d_dykstra(x, lam, 4, True)
    assert torch.equal(s, s2)
    assert torch.equal(y.isnan(), (2 * x - p).isnan())
    assert torch.equal(y.nan_to_num(), (2 * x - p).nan_to_num())
    gy = torch.randn(x.shape, dtype=dtype, device="cuda")
    r, rl = ops.prox_tv2d_dykstra_backward(-gy, s, lam)
    gx, gl = ops.prox_tv2d_dykstra_backward(gy, s, lam, True)
    ref = gy * 2 + r
    assert torch.equal(gx.isnan(), ref.isnan()) and torch.equal(gx.nan_to_num(), ref.nan_to_num())
    assert torch.equal(gl.isnan(), rl.isnan()) and torch.equal(gl.nan_to_num(), rl.nan_to_num())


def test_2d_converged_parity() -> None:
    x = _images(torch.float64, (2, 1, 40, 33))
    lam = torch.tensor([0.05, 0.2], dtype=torch.float64).reshape(2, 1, 1, 1)
    y_cpu, info_cpu = tvcli.prox_tv2d(x, lam, tol=1e-8, return_info=True)
    y_gpu, info_gpu = tvcli.prox_tv2d(x.cuda(), lam.cuda(), tol=1e-8, return_info=True)
    assert bool(info_gpu.converged.all())
    assert float((y_gpu.cpu() - y_cpu).abs().max()) < 1e-5
    diff = (info_gpu.iterations - info_cpu.iterations).abs()
    assert bool((diff <= torch.clamp(info_cpu.iterations // 20, min=2)).all()), diff


def test_2d_gradcheck_cuda() -> None:
    x = _images(torch.float64, (1, 2, 6, 5)).cuda().requires_grad_(True)
    lam = torch.tensor([0.05, 0.1], dtype=torch.float64, device="cuda").reshape(2, 1, 1)
    lam.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: tvcli.prox_tv2d(a, b, iters=3), (x, lam))
    assert torch.autograd.gradcheck(lambda a, b: tvcli.prox_tv2d(a, b, tol=1e-11), (x, lam),
                                    atol=1e-5)


def test_2d_opcheck_cuda() -> None:
    x = _images(torch.float64, (1, 3, 8, 9)).reshape(3, 8, 9).cuda()
    lam = torch.full((3,), 0.1, dtype=torch.float64, device="cuda")
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_dykstra, (x, lam, 3))
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_dykstra, (x, lam, 3, True))
    torch.library.opcheck(torch.ops.tvcli.prox_tv2d_solve, (x, lam, 1e-6, 500, 1, 1e-6),
                          test_utils=("test_schema", "test_faketensor"))  # as on the CPU


def test_tvlayer_on_cuda_matches_cpu() -> None:
    from tvcli.nn import TVLayer

    torch.manual_seed(0)
    layer = TVLayer(4, mode="sharp", iters=4, lam_init=0.05)
    x = _images(torch.float32, (2, 4, 32, 32))
    outs = []
    for dev in ("cpu", "cuda"):
        lay = layer.to(dev)
        lay.zero_grad()
        xd = x.to(dev).requires_grad_(True)
        y = lay(xd)
        y.square().sum().backward()
        outs.append((y.detach().cpu(), xd.grad.cpu(), lay.lam_param.grad.cpu()))
    for a, b in zip(outs[1], outs[0], strict=True):
        _close(a, b, torch.float32, float(b.abs().max()))


def test_2d_float_arithmetic_option_runs(monkeypatch) -> None:
    """TVCLI_CUDA_2D_ARITH=float: float32 state on the GPU. Only that it runs and
    stays near the double path; its accuracy is measured by gpu_check (docs/gpu.md)."""
    x = _images(torch.float32, (1, 4, 32, 32)).reshape(4, 32, 32).cuda()
    lam = torch.full((4,), 0.1, device="cuda")
    y_d, _ = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 4)
    monkeypatch.setenv("TVCLI_CUDA_2D_ARITH", "float")
    y_f, _ = torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 4)
    err = float((y_f - y_d).abs().max())
    print(f"float-arithmetic paper mode, 4 x 32x32, lam 0.1: max |y_f - y_d| = {err:.3g}")
    assert err < 1e-4


def test_fast_path_and_cpp_autograd_on_cuda_without_host_sync() -> None:
    """prox_tv1d's C++ fast path and C++ autograd on the GPU (issue 28): the same
    values and gradients as the Python path, and no synchronising call in the
    forward or the backward (number lam and tensor lam)."""
    import tvcli.prox as prox
    from tvcli import _C

    x0 = torch.randn(3, 5, 40, device="cuda", dtype=torch.float64).cumsum(-1)
    lam = torch.full((5, 1), 0.3, device="cuda", dtype=torch.float64)
    g = torch.randn_like(x0)
    for lam_arg in (0.3, lam):
        out = []
        for fast in (_C.prox_tv1d_fast, None):
            x = x0.clone().requires_grad_(True)
            lt = lam_arg.clone().requires_grad_(True) if isinstance(lam_arg, torch.Tensor) \
                else lam_arg
            saved, prox._fast = prox._fast, fast
            try:
                y = tvcli.prox_tv1d(x, lt)
            finally:
                prox._fast = saved
            y.backward(g)
            out.append((y.detach(), x.grad, getattr(lt, "grad", None)))
        assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
        if out[0][2] is not None:
            torch.testing.assert_close(out[0][2], out[1][2])
    assert _C.prox_tv1d_fast(x0, lam, -1, "direct") is not None  # the fast path is taken
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for lam_arg in (0.3, lam.clone().requires_grad_(True)):
            x = x0.clone().requires_grad_(True)
            tvcli.prox_tv1d(x, lam_arg).backward(g)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm, channel_dim, dims", [
    ("iso", None, (-2, -1)), ("iso", 1, (-2, -1)), ("iso", None, (-3, -2, -1)),
    ("aniso", None, (-3, -2, -1))])
def test_nd_prox_cuda_matches_cpu_within_the_certificates(dtype, norm, channel_dim,
                                                          dims) -> None:
    """tvcli::prox_tv_nd on CUDA (issue 25): both devices certify their RMS error
    against the same exact prox, so they differ by at most the sum of the two bounds
    (the GPU's per-block gap sums round differently, so iterations may differ)."""
    g = torch.Generator().manual_seed(3)
    shape = (2, 3, 6, 20, 24) if len(dims) == 3 else (2, 3, 40, 36)
    x = torch.rand(shape, generator=g, dtype=dtype)
    lam = 0.05 + 0.1 * torch.rand((*shape[:1], 1, *shape[2:]), generator=g, dtype=dtype)
    lam[..., :3] = 0  # zero weights allowed
    kw = dict(dims=dims, norm=norm, channel_dim=channel_dim, tol=1e-4, return_info=True)
    y_cpu, info_cpu = tvcli.prox_tv(x, lam, **kw)
    y_gpu, info_gpu = tvcli.prox_tv(x.cuda(), lam.cuda(), **kw)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == dtype
    assert bool((info_gpu.error_bound.cpu() <= 1e-4).all())
    n = x[0].numel() if channel_dim is not None else x[0, 0].numel()
    per_problem = (y_gpu.cpu().double() - y_cpu.double()).pow(2)
    per_problem = per_problem.flatten(start_dim=1 if channel_dim is not None else 2).sum(-1)
    rms = (per_problem / n).sqrt().flatten()
    slack = 2e-6 if dtype == torch.float32 else 1e-12  # float32 outputs' own rounding
    allowed = (info_cpu.error_bound.double() + info_gpu.error_bound.cpu().double()).flatten()
    assert bool((rms <= allowed + slack).all()), (rms.max(), allowed.min())


def test_nd_prox_opcheck_cuda() -> None:
    x = torch.rand(2, 3, 5, 4, device="cuda", dtype=torch.float64)
    w = torch.full((2, 1, 5, 4), 0.1, device="cuda", dtype=torch.float64)
    torch.library.opcheck(torch.ops.tvcli.prox_tv_nd.default,
                          (x, w, 2, "iso", 1e-3, 50, 5, False))
