"""Autograd, fake-tensor and vmap registrations for the C++ ops ``tvcli::*``.

The schemas and device kernels live in ``csrc/ops.cpp``; registering autograd
and fake kernels from Python (``torch.library``) makes the ops work with
``torch.compile`` and ``torch.library.opcheck``; the vmap rules and the Functions
below make them work under ``torch.func`` (grad, vjp, jacrev, vmap).
"""

from __future__ import annotations

import torch

from tvcli._extension import HAS_EXT


def vmap_front(t: torch.Tensor, bdim: int | None, n: int) -> torch.Tensor:
    """``t`` with vmap's dim (``bdim``, None when ``t`` is not batched) first, size
    ``n`` (an expanded view when ``t`` is not batched)."""
    return t.expand(n, *t.shape) if bdim is None else t.movedim(bdim, 0)


def merge_vmap_dim(t: torch.Tensor, bdim: int | None, n: int) -> torch.Tensor:
    """``t`` ``(B, ...)`` as ``(n * B, ...)``: vmap's dim merged into the batch B."""
    f = vmap_front(t, bdim, n)
    return f.reshape(n * f.shape[1], *f.shape[2:])


def split_vmap_dim(t: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`merge_vmap_dim` on an output ``(n * B, ...)``."""
    return t.reshape(n, t.shape[0] // n, *t.shape[1:])


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

    # vmap rules. Every op solves a batch of independent problems along leading
    # dims, so vmap's dim joins that batch: moved to the front (prox_tv1d's ops,
    # whose problems are all dims but `dim`) or merged into the leading B (the 2-D
    # and n-D ops), with unbatched tensor arguments expanded to match. The results
    # are the op's on the stacked problems, bit for bit.
    @torch.library.register_vmap("tvcli::prox_tv1d")
    def _prox_tv1d_vmap(info, in_dims, x, lam, dim, solver):
        n, rank = info.batch_size, x.dim() - (in_dims[0] is not None)
        y = torch.ops.tvcli.prox_tv1d(vmap_front(x, in_dims[0], n),
                                      vmap_front(lam, in_dims[1], n), dim % rank + 1, solver)
        return y, 0

    @torch.library.register_vmap("tvcli::prox_tv1d_backward")
    def _prox_tv1d_backward_vmap(info, in_dims, grad_y, y, lam, dim):
        n, rank = info.batch_size, lam.dim() - (in_dims[2] is not None)
        args = [vmap_front(t, b, n) for t, b in zip((grad_y, y, lam), in_dims[:3], strict=True)]
        return torch.ops.tvcli.prox_tv1d_backward(*args, dim % rank + 1), (0, 0)

    def _register_merged_vmap(name: str, ntensors: int) -> None:
        """A vmap rule for an op whose first ``ntensors`` arguments are tensors with
        a leading batch dim B and whose outputs all lead with B."""
        op = getattr(torch.ops.tvcli, name)

        def rule(info, in_dims, *args):
            n = info.batch_size
            # contiguous, as these ops' callers pass them (vmap's dim need not be
            # outermost in memory)
            merged = [merge_vmap_dim(t, b, n).contiguous()
                      for t, b in zip(args[:ntensors], in_dims[:ntensors], strict=True)]
            out = op(*merged, *args[ntensors:])
            return tuple(split_vmap_dim(o, n) for o in out), (0,) * len(out)

        torch.library.register_vmap(f"tvcli::{name}", rule)

    for _name, _ntensors in (("prox_tv2d_dykstra", 2), ("prox_tv2d_dykstra_backward", 3),
                             ("prox_tv2d_solve", 2), ("prox_tv2d_region_backward", 3),
                             ("prox_tv_nd", 2), ("prox_tv_nd_backward", 4)):
        _register_merged_vmap(_name, _ntensors)

    # torch.func (grad, vjp, jacrev, vmap) runs neither the C++ autograd Function of
    # prox_tv1d nor the autograd that torch.library.register_autograd gives the 2-D
    # ops (torch 2.13: "must override the setup_context staticmethod"). Under its
    # transforms the callers use these Functions instead: the same op, the same
    # setup and backward as above. Their forward and backward call only ops with
    # the vmap rules above, so vmap may run them as they are (generate_vmap_rule).
    def _function_for(name: str, op, setup_context, backward) -> type:
        """An autograd.Function calling ``op`` with ``setup_context`` and ``backward``."""
        return type(name, (torch.autograd.Function,), {
            "__doc__": f"``{op}`` for torch.func transforms.",
            "generate_vmap_rule": True,
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


def concrete(t: torch.Tensor) -> torch.Tensor:
    """``t`` without torch.func's wrappers: under vmap, the values of every batch
    entry at once. For input checks and shortcut tests that read values (``bool``
    of a reduction), which vmap does not allow on its batched tensors; a check
    that holds for every entry holds for each."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t
