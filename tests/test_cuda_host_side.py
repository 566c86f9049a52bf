"""The CUDA engine's host-side decisions, checked without a GPU (issue 12, defects
2, 3, 4, 5, 7): the pn workspace plan, the default architecture list of a CUDA
build, lam validation without reading a device tensor back, the 2-D fallback loop
at lam = 0 with an Inf pixel, and which device ``--device auto`` picks.
"""

from __future__ import annotations

import math
import os
import runpy
from pathlib import Path

import pytest
import torch

import tvcli
from tvcli import _extension
from tvcli._extension import HAS_EXT
from tvcli.prox import _check_lam_values
from tvcli.prox2d import _dykstra

ROOT = Path(__file__).resolve().parents[1]
needs_ext = pytest.mark.skipif(not HAS_EXT, reason="compiled engine not built")
MiB = 1 << 20


# ------------------------------------------------------------ defect 2: pn workspace


@needs_ext
@pytest.mark.parametrize("count, length", [(1, 10**6), (1, 10**7), (3, 10**6), (640, 20000),
                                           (8192, 32), (10**7, 32), (1, 2)])
def test_pn_workspace_is_sized_for_the_solving_threads(count: int, length: int) -> None:
    blocks, threads, per_thread, ws_bytes = torch.ops.tvcli._cuda_pn_launch_plan(count, length)
    assert 1 <= threads <= count
    assert blocks == -(-threads // 128)
    assert ws_bytes == threads * per_thread * 8
    # Under the 256 MiB cap, or a single slot when one signal alone needs more.
    assert ws_bytes <= 256 * MiB or threads == 1
    if count == 1:
        assert ws_bytes <= 3 * length * 8  # one signal: one slot (was 128: 2.9 GiB at 10^6)


@needs_ext
@pytest.mark.parametrize("grid, ws_threads", [((3, 128), 5), ((1, 64), 1), ((2, 3), 6)])
def test_pn_body_with_fewer_solving_than_launched_threads(grid, ws_threads) -> None:
    """The emulated pn kernel with a workspace for ws_threads slots only: every
    signal solved (outputs start NaN), canaries around the workspace intact."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 37, 11, generator=g, dtype=torch.float64).cumsum(1)
    lam = torch.rand(4, 1, 11, generator=g, dtype=torch.float64) + 0.3
    y, _ = torch.ops.tvcli._emulate_cuda_grid("pn", x, x, lam, 1, grid[0], grid[1], ws_threads)
    assert torch.equal(y, torch.ops.tvcli.prox_tv1d(x, lam, 1, "pn"))


# ------------------------------------------------------------ defect 3: architectures


@pytest.mark.skipif(not Path("/usr/local/cuda/bin/nvcc").exists() and not os.environ.get(
    "CUDA_HOME"), reason="no CUDA toolkit (CUDAExtension needs CUDA_HOME)")
def test_cuda_build_without_gpu_gets_arch_list_ending_in_ptx(monkeypatch) -> None:
    """FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST unset, no GPU: setup.py picks a list that
    ends in +PTX, and torch's arch-flag computation (which raised IndexError on an
    empty list of visible GPUs) now succeeds."""
    import setuptools
    from torch.utils import cpp_extension

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: torch's own default applies")
    monkeypatch.setenv("FORCE_CUDA", "1")
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    monkeypatch.delenv("TVCLI_NO_EXT", raising=False)
    if not os.environ.get("CUDA_HOME"):
        monkeypatch.setenv("CUDA_HOME", "/usr/local/cuda")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", os.environ["CUDA_HOME"])
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    assert archs.endswith("+PTX") and "9.0" in archs
    flags = cpp_extension._get_cuda_arch_flags()
    assert "-gencode=arch=compute_90,code=compute_90" in flags
    assert "-gencode=arch=compute_75,code=sm_75" in flags
    assert captured["ext_modules"][0].name == "tvcli._C"


# ------------------------------------------------------------ defect 4: lam 0 + Inf


def test_dykstra_loop_lam_zero_with_inf_returns_input() -> None:
    """The Python loop (the 2-D route on a device without the fused op) at lam = 0
    must return x exactly, Inf included, like the CPU op; lam > 0 images with Inf
    are NaN, as the CPU op makes them."""
    x = torch.rand(3, 6, 7, dtype=torch.float64)
    x[0, 2, 3] = math.inf
    x[1, 4, 1] = -math.inf
    lam = torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64).reshape(3, 1, 1)
    y = _dykstra(x, lam, 1, 2, 4)
    assert torch.equal(y[:2], x[:2])
    ref = tvcli.prox_tv2d(x[2:], 0.2, iters=4)
    assert torch.allclose(y[2:], ref, rtol=0, atol=1e-12)
    x[2, 0, 0] = math.inf
    assert bool(torch.isnan(_dykstra(x, lam, 1, 2, 4)[2]).all())


# ------------------------------------------------------------ defect 5: no host sync


def test_lam_on_another_device_is_not_read_back() -> None:
    """A lam tensor off the CPU is not validated on the host (that would wait for
    the GPU); a meta tensor stands for it here: reading it back raises."""
    for lam in (torch.tensor([-1.0], device="meta"), torch.full((3, 1), math.nan,
                                                                device="meta")):
        _check_lam_values(lam)  # no error, no read
    with pytest.raises(ValueError, match="NaN"):
        _check_lam_values(torch.tensor([0.5, math.nan]))
    with pytest.raises(ValueError, match="negative"):
        _check_lam_values(-0.5)


@needs_ext
@pytest.mark.parametrize("bad", [-0.5, math.nan])
def test_ops_poison_outputs_for_bad_lam(bad: float) -> None:
    """What an unchecked device lam does: the kernels' shared core turns a negative
    or NaN lam into NaN for that signal / image only (run here on the CPU ops)."""
    x = torch.rand(3, 5, 6, dtype=torch.float64)
    lam = torch.tensor([[[0.1]], [[bad]], [[0.2]]], dtype=torch.float64)
    for solver in ("direct", "pn"):
        y = torch.ops.tvcli.prox_tv1d(x, lam.expand(3, 5, 1), 2, solver)
        assert bool(torch.isnan(y[1]).all()) and not bool(torch.isnan(y[[0, 2]]).any())
    y, _ = torch.ops.tvcli.prox_tv2d_dykstra(x, lam.reshape(3), 4)
    assert bool(torch.isnan(y[1]).all()) and not bool(torch.isnan(y[[0, 2]]).any())


# ------------------------------------------------------------ defect 7: --device auto


def test_device_auto_avoids_slow_cuda_routes(monkeypatch) -> None:
    from tvcli.cli.smooth import ops_for_mode, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    only_1d = {op: frozenset({"cpu", "cuda"} if op == "prox_tv1d" else {"cpu"})
               for op in _extension._OPS}
    monkeypatch.setattr(_extension, "_EXT_DEVICES", only_1d)
    assert resolve_device("auto", ops_for_mode("rows", None)) == "cuda"
    assert resolve_device("auto", ops_for_mode("2d", 4)) == "cpu"
    assert resolve_device("auto", ops_for_mode("2d", None)) == "cpu"
    assert resolve_device("cuda", ops_for_mode("2d", 4)) == "cuda"  # asked for: obeyed
    everything = {op: frozenset({"cpu", "cuda"}) for op in _extension._OPS}
    monkeypatch.setattr(_extension, "_EXT_DEVICES", everything)
    assert resolve_device("auto", ops_for_mode("2d", 4)) == "cuda"
    assert resolve_device("auto", ops_for_mode("2d", None)) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", ops_for_mode("2d", 4)) == "cpu"

