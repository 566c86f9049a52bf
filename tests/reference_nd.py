"""Independent float64 reference for the n-D TV prox (isotropic, colour, anisotropic,
weight maps): the problem written in cvxpy and solved by an interior-point conic
solver (Clarabel), a method that shares nothing with tvcli's dual solvers.

Same discretisation as tvcli.prox_tv (forward differences along the spatial axes,
none past the last slice); problems are small (a few hundred unknowns).
"""

from __future__ import annotations

import numpy as np


def prox_tv_cvxpy(x: np.ndarray, w: np.ndarray, norm: str) -> np.ndarray:
    """Prox of one problem ``x`` of shape ``(C, *S)`` (C channels sharing the norm
    when ``norm == "iso"`` and C > 1) with weights ``w`` of shape ``S``.

    Returns y of x's shape (float64), accurate to ~1e-7 or better (Clarabel's
    tolerances tightened; measured against 1e-12-gap runs).
    """
    import cvxpy as cp
    from scipy import sparse

    c, spatial = x.shape[0], x.shape[1:]
    n = int(np.prod(spatial))
    nd = len(spatial)
    idx = np.arange(n).reshape(spatial)
    y = cp.Variable((c, n))
    diffs = []  # for each direction: (index i, index i + e_d) of the existing differences
    for d in range(nd):
        a = np.take(idx, range(spatial[d] - 1), axis=d).reshape(-1)
        b = np.take(idx, range(1, spatial[d]), axis=d).reshape(-1)
        diffs.append((a, b))
    terms = []
    if norm == "aniso":
        for a, b in diffs:
            terms.append(cp.sum(cp.multiply(w.reshape(-1)[a], cp.abs(y[:, b] - y[:, a]))))
    else:
        # One column per pixel: [direction x channel] entries, 0 where the
        # difference does not exist (last slice).
        blocks = []
        for a, b in diffs:
            ones = np.ones(len(a))
            dmat = sparse.coo_matrix(
                (np.concatenate([ones, -ones]), (np.concatenate([a, a]), np.concatenate([b, a]))),
                shape=(n, n),
            ).tocsr()
            blocks.append(y @ dmat.T)  # (c, n): difference from each pixel
        stacked = cp.vstack(blocks)  # (nd * c, n)
        terms.append(cp.sum(cp.multiply(w.reshape(-1), cp.norm(stacked, 2, axis=0))))
    obj = 0.5 * cp.sum_squares(y - x.reshape(c, n)) + sum(terms)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11,
               max_iter=500)
    return np.asarray(y.value).reshape(x.shape)
