"""The compiled n-D TV prox on numpy arrays, without torch (``tvcli._core``).

``tvcli._core`` is the torch-free build of the solver behind
``torch.ops.tvcli.prox_tv_nd``: the same driver and core (csrc/cpu/tv_nd_driver.h,
csrc/core/tv_nd_fgp.h), compiled with the same flags, on OpenMP threads split as
ATen splits them, so that it returns the same bits at the same thread count. The
command line's default smoothing uses it to skip torch's import
(:mod:`tvcli.cli.fast_filter`). This module also holds the solver settings that
:mod:`tvcli.prox_nd` passes to the torch op, so that both callers agree.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["ADAPTIVE_CHECKS", "CHECK_EVERY", "F32_STATE_MIN_TOL", "MERGE_FLAT", "core_module",
           "f32_state_args", "prox_tv_nd", "stalled_f32"]

# Float32 dual state (1.6-2.3x the speed of float64, the same iterations on photos)
# down to a bound of this fraction of the largest weight. Measured
# (docs/tv_variants.md "State precision"): a float32 state stalls at a certified
# bound of 2e-4 to 5e-4 x max(w) on 64x64 noise, and reached 1.3e-4 x w on noisy
# Kodak photos with the float64 state's iteration counts; 4x margin. On the CPU the
# state turns float64 there (the op's f32_until) when tol is below it; elsewhere
# (CUDA) the float32 state is used only when tol is at least that. A problem that
# still ends at max_iter with a float32 state is solved again with the float64 state
# (:func:`stalled_f32`).
F32_STATE_MIN_TOL = 2e-3
# Iterations between two certificates (duality-gap checks): the first, and the
# least spacing of the later ones.
CHECK_EVERY = 5
# On the CPU the later certificates go where the bound's decay predicts tol
# (csrc/cpu/tv_nd_driver.h, next_check_predicted) instead of every 5 iterations up
# to 100 and ~10 % apart after: a certificate costs about two iterations.
ADAPTIVE_CHECKS = True
# On the CPU, near tol, the certificate also tries the midpoint of y and its average
# over nearly flat regions (csrc/cpu/tv_nd_merge.h): a lower bound, fewer iterations.
MERGE_FLAT = True


def core_module() -> ModuleType | None:
    """``tvcli._core``, or None when this installation did not build it."""
    try:
        from tvcli import _core
    except ImportError:
        return None
    return _core


def f32_state_args(float32_data: bool, tol: float, wmax: float, *,
                   can_switch: bool) -> tuple[bool, float]:
    """The op's ``(f32_state, f32_until)``. Float32 data start with a float32 dual
    state when ``can_switch`` (the CPU driver turns it float64 once the bound is <=
    ``F32_STATE_MIN_TOL x max(w)``), else only when ``tol >= F32_STATE_MIN_TOL x
    wmax`` (``wmax`` the largest weight as a Python float, ``tol`` as passed)."""
    if not float32_data:
        return False, 0.0
    if can_switch:
        return True, F32_STATE_MIN_TOL
    return tol >= F32_STATE_MIN_TOL * wmax, 0.0


def stalled_f32(info_rows: list[list[float]], max_iter: int) -> list[int]:
    """Problems a float32-state solve left unconverged at ``max_iter`` (``info_rows``:
    the solver's info as lists [iterations, bound, converged]): both callers solve
    them again with the float64 state, so that a float32 stall costs time, not
    accuracy. Problems skipped as bad (0 iterations, NaN bound) are not listed."""
    return [b for b, (it, _bound, conv) in enumerate(info_rows)
            if conv == 0.0 and it >= max_iter]


def prox_tv_nd(x, w, nd: int, norm: str, tol: float, max_iter: int, *, threads: int,
               check_every: int = CHECK_EVERY, f32_state: bool = False,
               restart: bool = True, adaptive_checks: bool = False,
               merge_flat: bool = False, f32_until: float = 0.0):
    """``torch.ops.tvcli.prox_tv_nd`` on numpy arrays: x C-contiguous ``(B, C, *S)``
    float32 / float64 (``nd = len(S)`` in 1..4), w x's dtype ``(B, 1, *S)`` or ``(B, 1,
    1, ...)``, on ``threads`` OpenMP threads (clamped to
    :func:`tvcli.threads.max_threads` with a ``RuntimeWarning``, as torch's are).
    Returns ``(y, info)``: y x's shape and dtype, info float64 ``(B, 3)``
    [iterations, RMS error bound, converged].

    Raises:
        ImportError: tvcli._core is not built.
        ValueError / TypeError: bad arguments (one line, as the torch op's).
    """
    import warnings

    import numpy as np

    from tvcli.threads import clamp_threads

    threads, reason = clamp_threads(threads)
    if reason is not None:
        warnings.warn(f"tvcli: {reason}", RuntimeWarning, stacklevel=2)
    core = core_module()
    if core is None:
        raise ImportError("tvcli._core is not built (see docs/building.md)")
    y = np.empty_like(x)
    info = np.empty((x.shape[0], 3), dtype=np.float64)
    core.prox_tv_nd(x, w, y, info, int(nd), str(norm), float(tol), int(max_iter),
                    int(check_every), bool(f32_state), bool(restart), int(threads),
                    bool(adaptive_checks), bool(merge_flat), float(f32_until))
    return y, info
