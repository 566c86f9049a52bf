"""Autograd and fake-tensor registrations for the C++ ops ``tvcli::*``.

The schemas and device kernels live in ``csrc/ops.cpp``; registering autograd
and fake kernels from Python (``torch.library``) makes the ops work with
``torch.compile`` and ``torch.library.opcheck``.
"""

from __future__ import annotations

import torch

from tvcli._extension import HAS_EXT

if HAS_EXT:

    @torch.library.register_fake("tvcli::prox_tv1d")
    def _prox_tv1d_fake(x: torch.Tensor, lam: torch.Tensor, dim: int, solver: str):
        torch._check(x.dtype == lam.dtype, lambda: "tvcli: lam must have x's dtype")
        return x.new_empty(x.shape)

    @torch.library.register_fake("tvcli::prox_tv1d_backward")
    def _prox_tv1d_backward_fake(
        grad_y: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, dim: int
    ):
        return y.new_empty(y.shape), lam.new_empty(lam.shape)

    @torch.library.register_fake("tvcli::prox_tv1d_pn_stats")
    def _prox_tv1d_pn_stats_fake(
        x: torch.Tensor, lam: torch.Tensor, dim: int, max_iter: int = 100
    ):
        return (
            x.new_empty(x.shape),
            lam.new_empty(lam.shape, dtype=torch.int32),
            lam.new_empty(lam.shape, dtype=torch.int8),
        )

    def _prox_tv1d_setup_context(ctx, inputs, output) -> None:
        _x, lam, dim, _solver = inputs
        ctx.save_for_backward(output, lam)
        ctx.dim = dim

    def _prox_tv1d_backward(ctx, grad_y: torch.Tensor):
        y, lam = ctx.saved_tensors
        grad_x, grad_lam = torch.ops.tvcli.prox_tv1d_backward(grad_y, y, lam, ctx.dim)
        return grad_x, grad_lam, None, None

    torch.library.register_autograd(
        "tvcli::prox_tv1d", _prox_tv1d_backward, setup_context=_prox_tv1d_setup_context
    )
