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

    # The engine registers prox_tv1d's autograd in C++ (csrc/tv1d_autograd.cpp: a
    # Python formula cost a Python autograd.Function per call, gradients or not);
    # this same formula in Python is for an engine built without it.
    if not torch._C._dispatch_has_kernel_for_dispatch_key("tvcli::prox_tv1d", "Autograd"):
        torch.library.register_autograd(
            "tvcli::prox_tv1d", _prox_tv1d_backward, setup_context=_prox_tv1d_setup_context
        )

    # 2-D converged prox: (y, info) = prox_tv2d_solve(x (B, H, W), lam (B,), ...).
    @torch.library.register_fake("tvcli::prox_tv2d_solve")
    def _prox_tv2d_solve_fake(
        x: torch.Tensor, lam: torch.Tensor, tol: float, max_iter: int, check_every: int,
        region_tol: float,
    ):
        torch._check(x.dim() == 3, lambda: "tvcli: expected (B, H, W) images")
        return x.new_empty(x.shape), x.new_empty((x.shape[0], 3), dtype=torch.float64)

    @torch.library.register_fake("tvcli::prox_tv2d_region_backward")
    def _prox_tv2d_region_backward_fake(
        grad_y: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, region_tol: float
    ):
        return y.new_empty(y.shape), lam.new_empty(lam.shape)

    def _prox_tv2d_solve_setup_context(ctx, inputs, output) -> None:
        _x, lam, _tol, _max_iter, _check_every, region_tol = inputs
        ctx.save_for_backward(output[0], lam)
        ctx.region_tol = region_tol

    def _prox_tv2d_solve_backward(ctx, grad_y: torch.Tensor, _grad_info):
        # Exact derivative of the prox at the region structure of y (csrc/core/
        # tv2d_regions.h), not a replay of the iterations.
        y, lam = ctx.saved_tensors
        grad_x, grad_lam = torch.ops.tvcli.prox_tv2d_region_backward(
            grad_y.contiguous(), y, lam, ctx.region_tol
        )
        return grad_x, grad_lam, None, None, None, None

    torch.library.register_autograd(
        "tvcli::prox_tv2d_solve",
        _prox_tv2d_solve_backward,
        setup_context=_prox_tv2d_solve_setup_context,
    )

    # 2-D paper mode: (y, signs) = prox_tv2d_dykstra(x (B, H, W), lam (B,), iters,
    # sharp=False); sharp=True gives y = 2 x - prox(x) (TV sharpening) and its backward.
    @torch.library.register_fake("tvcli::prox_tv2d_dykstra")
    def _prox_tv2d_dykstra_fake(x: torch.Tensor, lam: torch.Tensor, iters: int,
                                sharp: bool = False):
        torch._check(x.dim() == 3, lambda: "tvcli: expected (B, H, W) images")
        b, h, w = x.shape
        return x.new_empty(x.shape), x.new_empty((b, 2 * iters, h, w), dtype=torch.int8)

    @torch.library.register_fake("tvcli::prox_tv2d_dykstra_backward")
    def _prox_tv2d_dykstra_backward_fake(
        grad_y: torch.Tensor, signs: torch.Tensor, lam: torch.Tensor, sharp: bool = False
    ):
        return grad_y.new_empty(grad_y.shape), lam.new_empty(lam.shape)

    def _prox_tv2d_dykstra_setup_context(ctx, inputs, output) -> None:
        _x, lam, _iters, sharp = inputs
        ctx.sharp = sharp
        ctx.save_for_backward(output[1], lam)
        ctx.mark_non_differentiable(output[1])

    def _prox_tv2d_dykstra_backward(ctx, grad_y: torch.Tensor, _grad_signs):
        # Exact reverse mode of the K unrolled iterations from the saved jump signs.
        signs, lam = ctx.saved_tensors
        grad_x, grad_lam = torch.ops.tvcli.prox_tv2d_dykstra_backward(
            grad_y.contiguous(), signs, lam, ctx.sharp
        )
        return grad_x, grad_lam, None, None

    torch.library.register_autograd(
        "tvcli::prox_tv2d_dykstra",
        _prox_tv2d_dykstra_backward,
        setup_context=_prox_tv2d_dykstra_setup_context,
    )

    # n-D TV prox: (y, info) = prox_tv_nd(x (B, C, *S), w (B, 1, *S | 1...), nd, norm,
    # tol, max_iter, check_every, f32_state, restart, adaptive_checks, merge_flat,
    # f32_until). Its autograd is
    # tvcli.prox_nd's implicit backward (a torch.autograd.Function around the op).
    @torch.library.register_fake("tvcli::prox_tv_nd")
    def _prox_tv_nd_fake(
        x: torch.Tensor, w: torch.Tensor, nd: int, norm: str, tol: float, max_iter: int,
        check_every: int = 5, f32_state: bool = False, restart: bool = True,
        adaptive_checks: bool = False, merge_flat: bool = False, f32_until: float = 0.0,
    ):
        torch._check(x.dim() == nd + 2, lambda: "tvcli: x must have shape (B, C, *S)")
        torch._check(w.dtype == x.dtype, lambda: "tvcli: w must have x's dtype")
        return x.new_empty(x.shape), x.new_empty((x.shape[0], 3), dtype=torch.float64)

    @torch.library.register_fake("tvcli::prox_tv_nd_backward")
    def _prox_tv_nd_backward_fake(
        grad_y: torch.Tensor, y: torch.Tensor, w: torch.Tensor, bound: torch.Tensor, nd: int,
        norm: str, flat_factor: float, cg_rtol: float, cg_max_iter: int,
    ):
        return y.new_empty(y.shape), y.new_empty((y.shape[0], 1, *y.shape[2:]))

    # torch.func (grad, vjp, jacrev) runs neither the C++ autograd Function of
    # prox_tv1d nor the autograd that torch.library.register_autograd gives the 2-D
    # ops (torch 2.13: "must override the setup_context staticmethod"). Under its
    # transforms the callers use these Functions instead: the same op, the same
    # setup and backward as above.
    def _function_for(name: str, op, setup_context, backward) -> type:
        """An autograd.Function calling ``op`` with ``setup_context`` and ``backward``."""
        return type(name, (torch.autograd.Function,), {
            "__doc__": f"``{op}`` for torch.func transforms.",
            "forward": staticmethod(lambda *args: op(*args)),
            "setup_context": staticmethod(setup_context),
            "backward": staticmethod(backward),
        })

    # op name -> its Function, for call()
    _FUNCTIONS = {
        "prox_tv1d": _function_for("Tv1dFunction", torch.ops.tvcli.prox_tv1d,
                                   _prox_tv1d_setup_context, _prox_tv1d_backward),
        "prox_tv2d_solve": _function_for("Tv2dSolveFunction", torch.ops.tvcli.prox_tv2d_solve,
                                         _prox_tv2d_solve_setup_context,
                                         _prox_tv2d_solve_backward),
        "prox_tv2d_dykstra": _function_for("Tv2dDykstraFunction",
                                           torch.ops.tvcli.prox_tv2d_dykstra,
                                           _prox_tv2d_dykstra_setup_context,
                                           _prox_tv2d_dykstra_backward),
    }


def call(name: str, *args):
    """``torch.ops.tvcli.<name>(*args)``, through its Function above when a tensor
    argument is wrapped by a torch.func transform (grad, vjp, jacrev, vmap). Not
    while torch.compile traces (dynamo cannot trace the test; the graph calls the
    op)."""
    if not torch.compiler.is_compiling() and any(
            isinstance(a, torch.Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(a)
            for a in args):
        return _FUNCTIONS[name].apply(*args)
    return getattr(torch.ops.tvcli, name)(*args)
