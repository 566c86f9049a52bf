"""Paper mode's AVX-512 forward (csrc/cpu/tv2d_paper_avx512.cpp) against the scalar
sweep it replaces (TVCLI_PAPER_SIMD=0), bit for bit: outputs and jump signs, on
rough and piecewise-constant images, shapes that are and are not multiples of 8,
lines of 64+ samples (the long-segment rule), lam 0 / large / huge, NaN images,
float32 and float64. The per-image path runs when there are at least twice as
many images as threads, so every batch here has 4+ images on one thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tvcli._C  # noqa: F401  (registers the ops)

ops = torch.ops.tvcli


def _cpu_has_avx512() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return all(f in flags.split() for f in ("avx512f", "avx512dq", "avx512bw", "avx512vl"))


def _default_and_scalar(run, monkeypatch: pytest.MonkeyPatch):
    """``run()`` on one thread with the default (SIMD where built) path, then with
    TVCLI_PAPER_SIMD=0 (the scalar / 2-wide one): the two results."""
    torch.set_num_threads(1)
    monkeypatch.delenv("TVCLI_PAPER_SIMD", raising=False)
    a = run()
    monkeypatch.setenv("TVCLI_PAPER_SIMD", "0")
    b = run()
    monkeypatch.delenv("TVCLI_PAPER_SIMD")
    return a, b


def _both(x: torch.Tensor, lam: torch.Tensor, iters: int, monkeypatch: pytest.MonkeyPatch):
    """(y, signs) of the default path and of the scalar sweep."""
    return _default_and_scalar(lambda: ops.prox_tv2d_dykstra(x, lam, iters), monkeypatch)


def _assert_same_bits(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]):
    (ya, sa), (yb, sb) = a, b
    assert ya.dtype == yb.dtype and ya.shape == yb.shape
    diff = ya.contiguous().view(torch.uint8) != yb.contiguous().view(torch.uint8)
    assert not diff.any(), f"{int(diff.sum())} bytes of y differ"
    assert torch.equal(sa, sb), f"{int((sa != sb).sum())} signs differ"


def _assert_same_backward(gy: torch.Tensor, signs: torch.Tensor, lam: torch.Tensor,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward's AVX-512 strips against its 2-wide ones on the same signs:
    dL/dx and dL/dlam bit for bit."""
    ga, gb = _default_and_scalar(lambda: ops.prox_tv2d_dykstra_backward(gy, signs, lam),
                                 monkeypatch)
    for ta, tb in zip(ga, gb, strict=True):
        assert torch.equal(ta.contiguous().view(torch.uint8), tb.contiguous().view(torch.uint8))


def _images(kind: str, b: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    if kind == "relu":  # a layer's feature maps: runs of 1-3 samples
        return torch.relu(torch.randn(b, h, w, generator=g, dtype=torch.float64))
    if kind == "blocks":  # ties and long flat runs
        x = torch.randint(0, 4, (b, h, w), generator=g).double() / 4
        return x + (torch.rand(b, h, w, generator=g, dtype=torch.float64) < 0.2) * 0.01
    x = torch.zeros(b, h, w, dtype=torch.float64)  # "flat": constant lines of 64+
    x[:, : h // 2] = 1.0
    return x + 1e-3 * torch.randn(b, h, w, generator=g, dtype=torch.float64).round()


SHAPES = [(4, 8, 8), (5, 9, 13), (6, 32, 32), (4, 1, 17), (4, 19, 1), (4, 64, 50),
          (4, 70, 66), (3, 2, 130)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["relu", "blocks", "flat"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_simd_forward_equals_scalar_bits(shape, kind, dtype, monkeypatch):
    g = torch.Generator().manual_seed(hash((shape, kind)) % 2**31)
    b, h, w = shape
    x = _images(kind, b, h, w, g).to(dtype)
    lam = torch.tensor([0.05, 0.3, 0.0, 1e300, 0.01, 2.0][:b], dtype=dtype)
    if b > len(lam):
        lam = torch.cat([lam, torch.full((b - len(lam),), 0.1, dtype=dtype)])
    gy = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    for iters in (1, 4):
        a, b = _both(x, lam, iters, monkeypatch)
        _assert_same_bits(a, b)
        _assert_same_backward(gy, a[1], lam, monkeypatch)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_simd_sharp_equals_scalar_and_expression_bits(shape, dtype, monkeypatch):
    """sharp=True (2 x - prox written by the op; backward 2 g + the prox's of -g):
    AVX-512 path = scalar path bit for bit, and both = the expression on the
    prox's outputs; with a NaN image (lam > 0 and lam 0) and NaN upstream gradients."""
    g = torch.Generator().manual_seed(hash(shape) % 2**31)
    b, h, w = shape
    x = _images("relu", b, h, w, g).to(dtype)
    x[0, 0, 0] = float("nan")
    x[2, -1, -1] = float("-inf")  # lam 0 below: kept, and 2 (-inf) - (-inf) = NaN
    lam = torch.tensor([0.05, 0.3, 0.0, 1e300, 0.01, 2.0][:b], dtype=dtype)
    if b > len(lam):
        lam = torch.cat([lam, torch.full((b - len(lam),), 0.1, dtype=dtype)])
    gy = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    gy[1, 0, -1] = float("nan")
    def run(iters):
        y, s = ops.prox_tv2d_dykstra(x, lam, iters, True)
        p, s0 = ops.prox_tv2d_dykstra(x, lam, iters)
        gx, gl = ops.prox_tv2d_dykstra_backward(gy, s, lam, True)
        r, rl = ops.prox_tv2d_dykstra_backward(-gy, s, lam)
        return y, s, 2 * x - p, s0, gx, gl, gy * 2 + r, rl

    def same(u, v):
        return torch.equal(u.contiguous().view(torch.uint8), v.contiguous().view(torch.uint8))

    for iters in (1, 4):
        a, b_ = _default_and_scalar(lambda k=iters: run(k), monkeypatch)
        for y, s, y_ref, s_ref, gx, gl, gx_ref, gl_ref in (a, b_):
            _assert_same_bits((y, s), (y_ref, s_ref))
            assert same(gx, gx_ref) and same(gl, gl_ref)
        _assert_same_bits(a[:2], b_[:2])
        assert same(a[4], b_[4])
        # dL/dlam of an image whose g holds NaN: NaN on both paths, but the two
        # paths' NaNs differed in sign before this change too (not sharpening's).
        assert torch.equal(a[5].isnan(), b_[5].isnan())
        assert same(a[5].nan_to_num(), b_[5].nan_to_num())


def test_simd_forward_nan_images(monkeypatch):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 16, 16, generator=g, dtype=torch.float64)
    x[1, 3, 4] = float("nan")
    x[2, 0, 0] = float("inf")
    lam = torch.tensor([0.1, 0.1, 0.0, 0.2, 0.1, 0.1], dtype=torch.float64)
    a, b = _both(x, lam, 3, monkeypatch)
    assert torch.isnan(a[0][1]).all() and torch.equal(a[0][2], x[2])
    _assert_same_bits(a, b)
    gy = torch.randn(6, 16, 16, generator=g, dtype=torch.float64)
    _assert_same_backward(gy, a[1], lam, monkeypatch)


def test_simd_backward_from_simd_signs_matches(monkeypatch):
    """The backward reads the signs the forward saved: with equal signs the whole
    layer's gradients are equal too."""
    g = torch.Generator().manual_seed(7)
    x = torch.relu(torch.randn(8, 32, 32, generator=g, dtype=torch.float64))
    lam = torch.full((8,), 0.05, dtype=torch.float64)
    (ya, sa), (yb, sb) = _both(x, lam, 4, monkeypatch)
    gy = torch.randn(8, 32, 32, generator=g, dtype=torch.float64)
    ga = ops.prox_tv2d_dykstra_backward(gy, sa, lam)
    gb = ops.prox_tv2d_dykstra_backward(gy, sb, lam)
    assert torch.equal(ga[0], gb[0]) and torch.equal(ga[1], gb[1])


def test_the_comparison_sees_a_different_solver(tmp_path):
    """The bit comparison is not vacuous: the DP solver's results (same prox, other
    rounding) are told apart from the sweep's."""
    if "TVCLI_2D_LINE" in os.environ:
        pytest.skip("TVCLI_2D_LINE set by the caller")
    g = torch.Generator().manual_seed(11)
    x = torch.relu(torch.randn(8, 24, 24, generator=g, dtype=torch.float64))
    lam = torch.full((8,), 0.07, dtype=torch.float64)
    torch.set_num_threads(1)
    a = ops.prox_tv2d_dykstra(x, lam, 4)
    # line_solver() reads TVCLI_2D_LINE once per process: a fresh process is needed.
    code = ("import sys, torch, tvcli._C; torch.set_num_threads(1); "
            "x, lam = torch.load(sys.argv[1]); "
            "torch.save(torch.ops.tvcli.prox_tv2d_dykstra(x, lam, 4), sys.argv[2])")
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save((x, lam), src)
    subprocess.run([sys.executable, "-c", code, str(src), str(dst)], check=True,
                   env={**os.environ, "TVCLI_2D_LINE": "dp"})
    b = torch.load(dst)
    with pytest.raises(AssertionError):
        _assert_same_bits(a, b)


@pytest.mark.skipif(not _cpu_has_avx512(), reason="no AVX-512 on this CPU: one path only")
def test_simd_path_is_taken_on_this_cpu(monkeypatch):
    """On an AVX-512 CPU the comparisons above do compare two paths."""
    monkeypatch.delenv("TVCLI_PAPER_SIMD", raising=False)
    assert ops._paper_simd_enabled()
    monkeypatch.setenv("TVCLI_PAPER_SIMD", "0")
    assert not ops._paper_simd_enabled()


def test_big_outputs_from_the_buffer_cache_are_right():
    """Outputs of 16 MB or more come from 2 MB-page buffers that are kept and handed
    out again (csrc/cpu/tv2d_cpu.cpp, empty_big): results on a big batch, called
    repeatedly with alternating inputs while earlier results are alive, equal the
    same op on small chunks (plain allocations), bit for bit."""
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(3)
    b = 2304  # signs: 2304 * 8 * 1024 bytes = 18.9 MB
    xs = [torch.relu(torch.randn(b, 32, 32, generator=g)) for _ in range(2)]
    gy = torch.randn(b, 32, 32, generator=g)
    lam = torch.full((b,), 0.05)
    kept = []
    for rep in range(4):
        x = xs[rep % 2]
        y, s = ops.prox_tv2d_dykstra(x, lam, 4)
        gx, gl = ops.prox_tv2d_dykstra_backward(gy, s, lam)
        kept.append((rep % 2, y, s, gx, gl))
        if rep == 1:
            del kept[0]  # one result freed: its buffers go back to the cache
    for i, y, s, gx, gl in kept:
        for c in range(0, b, 256):
            yc, sc = ops.prox_tv2d_dykstra(xs[i][c:c + 256].contiguous(), lam[c:c + 256], 4)
            gxc, glc = ops.prox_tv2d_dykstra_backward(gy[c:c + 256].contiguous(), sc,
                                                      lam[c:c + 256])
            assert torch.equal(y[c:c + 256], yc) and torch.equal(s[c:c + 256], sc)
            assert torch.equal(gx[c:c + 256], gxc) and torch.equal(gl[c:c + 256], glc)


def test_opcheck_with_big_outputs():
    """torch.library.opcheck on outputs from the 2 MB-page buffers (from_blob with a
    deleter), forward and backward (the small-input opcheck is in test_prox_tv2d)."""
    import tvcli._ops  # noqa: F401  (fake kernels and autograd registrations)

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(9)
    x = torch.relu(torch.randn(2304, 32, 32, generator=g))
    lam = torch.full((2304,), 0.05)
    torch.library.opcheck(ops.prox_tv2d_dykstra, (x, lam, 4))
    _, s = ops.prox_tv2d_dykstra(x, lam, 4)
    gy = torch.randn(2304, 32, 32, generator=g)
    torch.library.opcheck(ops.prox_tv2d_dykstra_backward, (gy, s, lam))
