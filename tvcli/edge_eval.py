"""tvcli's own BSDS boundary benchmark: thinning, NMS and correspondence matching.

The BSDS500 protocol (Arbelaez et al., TPAMI 2011, ``evaluation_bdry_image.m``)
for one image, at each threshold t of the edge-probability map:

1. ``B = thin(pred >= t)``: morphological thinning to one-pixel-wide edges,
   MATLAB's ``bwmorph(B, 'thin', Inf)`` (Lam, Lee & Suen 1992, the parallel
   two-subiteration algorithm; :func:`thin`).
2. For every human boundary map G_k: a one-to-one correspondence between the
   pixels of B and of G_k, a pair allowed when the two pixels lie within
   ``max_dist * sqrt(H^2 + W^2)`` pixels (Euclidean, inclusive). Recall counts
   the matched pixels of every G_k over all their pixels; precision counts the
   pixels of B matched to at least one G_k over all pixels of B.

The matching. BSDS's ``correspondPixels`` solves a min-cost perfect matching
with outlier nodes whose cost (100 x the tolerance) dwarfs every real pair's
cost (at most the tolerance), on a sparsified graph, with Goldberg's
approximate CSA solver. Its objective therefore first maximises the number of
matched pairs and only then their total distance, and only the count enters
the benchmark. tvcli computes that count exactly as a **maximum-cardinality
bipartite matching** on the graph of all pairs within the tolerance: a
Hopcroft-Karp matcher compiled into ``tvcli._C`` (``csrc/cpu/edge_match.cpp``),
or without the compiled engine SciPy's sparse LAPJV on the outlier
formulation (also exact, slower; see :func:`max_matching`).
It can differ from BSDS's count only where BSDS's approximations (sparse
outlier graph, CSA's epsilon-optimality, long augmenting paths whose summed
distances exceed two outlier costs) leave a pair unmatched; the tests bound the
effect against pyEdgeEval (a port of the BSDS C++ code) on real images.

Speed. Per image, the pairs within the tolerance are enumerated once, between
every pixel that can be on at any threshold (``pred >= min(thresholds)``) and
each ground truth (at most |G_k| x 61 pairs at BSDS's 4.3-pixel tolerance);
each threshold only selects rows of that sparse matrix. Thinning touches only
the pixels that are on. Identical thinned maps at consecutive thresholds reuse
the previous counts.

NMS (:func:`nms`) is the standard step *before* the benchmark for dense edge
maps (HED, RCF, DexiNed all evaluate NMS-thinned maps): P. Dollar's structured
edge toolbox procedure, re-implemented from its description: orientation from
the second derivatives of the triangle-smoothed map, suppression of pixels not
larger than 1.01 x their bilinearly interpolated neighbours one pixel along the
normal, and a linear fade over 5 pixels at the image border.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["thin", "nms", "tolerance_offsets", "ImageMatcher", "max_matching", "edge_counts_fast"]


# ---------------------------------------------------------------------------
# Thinning (bwmorph 'thin', Inf)

# Neighbour order x1..x8 of Lam, Lee & Suen: E, NE, N, NW, W, SW, S, SE as
# (row, column) offsets; bit k-1 of a neighbourhood code is x_k.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


@lru_cache(maxsize=1)
def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables (256,) bool of the two subiterations, indexed by the
    neighbourhood code. Conditions G1 (crossing number 1), G2 (2 <= min(n1, n2)
    <= 3) and G3 / G3' of Lam, Lee & Suen (1992), section 4, algorithm A1."""
    first = np.zeros(256, bool)
    second = np.zeros(256, bool)
    for code in range(256):
        x = [0] + [(code >> k) & 1 for k in range(8)] + [code & 1]  # x[1..9], x9 = x1
        xh = sum(1 for i in range(1, 5) if x[2 * i - 1] == 0 and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(x[2 * k - 1] | x[2 * k] for k in range(1, 5))
        n2 = sum(x[2 * k] | x[2 * k + 1] for k in range(1, 5))
        g12 = xh == 1 and 2 <= min(n1, n2) <= 3
        first[code] = g12 and ((x[2] | x[3] | (1 - x[8])) & x[1]) == 0
        second[code] = g12 and ((x[6] | x[7] | (1 - x[4])) & x[5]) == 0
    return first, second


def thin(bmap: np.ndarray) -> np.ndarray:
    """Thins a binary map to one-pixel-wide curves, iterating to convergence.

    Same result as MATLAB's ``bwmorph(bmap, 'thin', Inf)`` and scikit-image's
    ``morphology.thin`` (tested against the latter). Pixels outside the image
    count as background. Work is proportional to the number of on pixels.

    Args:
        bmap: (H, W) array, non-zero = on.
    Returns:
        (H, W) bool array.
    """
    b = np.asarray(bmap)
    if b.ndim != 2:
        raise ValueError(f"thin needs a 2-D map, got shape {b.shape}")
    h, w = b.shape
    wp = w + 2
    img = np.zeros((h + 2) * wp, np.uint8)
    img.reshape(h + 2, wp)[1:-1, 1:-1] = b != 0
    offs = np.array([dy * wp + dx for dy, dx in _NEIGHBOURS], np.int64)
    weights = (1 << np.arange(8)).astype(np.int32)
    luts = _thin_luts()
    on = np.flatnonzero(img)
    while True:
        changed = False
        for lut in luts:
            if on.size == 0:
                break
            code = img[on[:, None] + offs[None, :]].astype(np.int32) @ weights
            kill = lut[code]
            if kill.any():
                img[on[kill]] = 0  # all deletions of a subiteration at once (parallel)
                on = on[~kill]
                changed = True
        if not changed:
            break
    return img.reshape(h + 2, wp)[1:-1, 1:-1].astype(bool)


# ---------------------------------------------------------------------------
# Non-maximum suppression of dense edge maps


def _tri_filter(x: np.ndarray, r: int) -> np.ndarray:
    """Separable triangle filter of radius r (weights 1..r+1..1, normalised),
    symmetric padding (edge sample repeated)."""
    k = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float64)
    k /= k.sum()
    from scipy.ndimage import convolve1d

    # SciPy's 'reflect' is the symmetric padding (d c b a | a b c d)
    return convolve1d(convolve1d(x, k, 0, mode="reflect"), k, 1, mode="reflect")


def _bilinear(e: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """e sampled at real (row y, column x), clamped to the image."""
    h, w = e.shape
    y = np.clip(y, 0, h - 1.001)
    x = np.clip(x, 0, w - 1.001)
    y0 = y.astype(np.int64)
    x0 = x.astype(np.int64)
    dy = y - y0
    dx = x - x0
    return (e[y0, x0] * (1 - dy) * (1 - dx) + e[y0 + 1, x0] * dy * (1 - dx)
            + e[y0, x0 + 1] * (1 - dy) * dx + e[y0 + 1, x0 + 1] * dy * dx)


def nms(edge: np.ndarray, radius: int = 1, border: int = 5, margin: float = 1.01,
        smooth: bool = True) -> np.ndarray:
    """Non-maximum suppression of an edge-probability map along the edge normal.

    Args:
        edge: (H, W) float edge strength (e.g. in [0, 1]).
        radius: compare with neighbours at distances 1..radius along the normal.
        border: fade edges linearly to 0 over this many pixels at the border
            (suppresses the responses padding creates there); 0 for none.
        margin: a pixel survives if margin x its value is at least every
            compared neighbour's value.
        smooth: first blur the map with the radius-1 triangle filter
            ([1, 2, 1] / 4 in each direction), as the standard HED / RCF /
            DexiNed evaluation does; the output values are the blurred ones.
    Returns:
        (H, W) float64 map: the surviving values, zeros elsewhere.
    """
    e = np.asarray(edge, np.float64)
    if e.ndim != 2:
        raise ValueError(f"nms needs a 2-D map, got shape {e.shape}")
    if min(e.shape) < 2:
        raise ValueError(f"nms needs at least 2 x 2 pixels, got shape {e.shape}")
    if smooth:
        e = _tri_filter(e, 1)
    # np.gradient gives (d/drow, d/dcolumn): (y, x) derivatives
    oy, ox = np.gradient(_tri_filter(e, 4))
    oyy, oxy = np.gradient(oy)
    _, oxx = np.gradient(ox)
    # the normal's angle from the x (column) axis, in [0, pi)
    theta = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)
    cy, cx = np.nonzero(e)
    val = e[cy, cx] * margin
    keep = np.ones(cy.size, bool)
    co, so = np.cos(theta[cy, cx]), np.sin(theta[cy, cx])
    for d in range(-radius, radius + 1):
        if d == 0:
            continue
        keep &= val >= _bilinear(e, cy + d * so, cx + d * co)
    out = np.zeros_like(e)
    out[cy[keep], cx[keep]] = e[cy[keep], cx[keep]]
    if border > 0:
        # pixel i < border from an edge is scaled by i / border; the factors of
        # the four borders multiply (corners fade faster)
        for axis in (0, 1):
            n = e.shape[axis]
            f = np.ones(n)
            ramp = np.arange(min(border, n)) / border
            f[:ramp.size] *= ramp
            f[n - ramp.size:] *= ramp[::-1]
            out *= f[:, None] if axis == 0 else f[None, :]
    return out


# ---------------------------------------------------------------------------
# Matching


def tolerance_offsets(h: int, w: int, max_dist: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel offsets (dy, dx) within the tolerance ``max_dist * diagonal`` of an
    H x W image (inclusive), and that tolerance in pixels."""
    r = max_dist * float(np.hypot(h, w))
    k = int(np.ceil(r))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    sel = dy * dy + dx * dx <= r * r
    return dy[sel].astype(np.int64), dx[sel].astype(np.int64), r


class ImageMatcher:
    """Correspondence counts of one image's binary edge maps against its ground
    truths; pairs within the tolerance are enumerated once at construction.

    Args:
        candidates: (H, W) bool, every pixel that may be on in a later query
            (a superset is fine, e.g. ``pred >= min threshold``).
        gts: K boundary maps (H, W), non-zero = boundary.
        max_dist: tolerance as a fraction of the image diagonal.
    """

    def __init__(self, candidates: np.ndarray, gts: Sequence[np.ndarray], max_dist: float):
        from scipy.sparse import csr_matrix

        cand = np.asarray(candidates, bool)
        h, w = cand.shape
        self.shape = (h, w)
        dy, dx, _ = tolerance_offsets(h, w, max_dist)
        k = int(max(np.abs(dy).max(), np.abs(dx).max()))
        wp = w + 2 * k
        index = np.full((h + 2 * k) * wp, -1, np.int64)  # candidate pixel -> row
        cy, cx = np.nonzero(cand)
        self.n_cand = cy.size
        index[(cy + k) * wp + cx + k] = np.arange(cy.size)
        self.cand_index = index.reshape(h + 2 * k, wp)[k:h + k, k:w + k]
        offs = dy * wp + dx
        self.graphs = []  # per ground truth: (rows x |G_k|) csr of allowed pairs
        self.gt_sizes = []
        self.degrees = []
        for g in gts:
            g = np.asarray(g)
            if g.shape != (h, w):
                raise ValueError(f"ground truth {g.shape} and edge map {(h, w)} sizes differ")
            gy, gx = np.nonzero(g)
            base = (gy + k) * wp + gx + k
            rows = index[base[:, None] + offs[None, :]]  # (|G|, n_offsets)
            gi, oi = np.nonzero(rows >= 0)
            mat = csr_matrix((np.ones(gi.size, np.int8), (rows[gi, oi], gi)),
                             shape=(cy.size, gy.size))
            mat.sort_indices()
            self.graphs.append(mat)
            self.degrees.append(np.diff(mat.indptr))
            self.gt_sizes.append(gy.size)

    def counts(self, bmap: np.ndarray) -> tuple[int, int, int, int]:
        """``(matched GT pixels, GT pixels, matched predicted pixels, predicted
        pixels)`` summed over ground truths as BSDS does (the predicted ones
        counted once: matched to any ground truth).

        Args:
            bmap: (H, W) bool, on pixels must be candidates.
        """
        rows = self.cand_index[np.asarray(bmap, bool)]
        if (rows < 0).any():
            raise ValueError("edge map has pixels outside the candidate set")
        matched_p = np.zeros(rows.size, bool)
        cnt_r = 0
        for mat, deg in zip(self.graphs, self.degrees, strict=True):
            has = deg[rows] > 0  # rows with no pair cannot match: leave them out
            if not has.any():
                continue
            m = max_matching(mat.indptr, mat.indices, mat.shape[1], rows=rows[has])
            hit = m >= 0
            cnt_r += int(hit.sum())
            matched_p[np.flatnonzero(has)[hit]] = True
        return cnt_r, int(sum(self.gt_sizes)), int(matched_p.sum()), int(rows.size)


@lru_cache(maxsize=1)
def _compiled_matcher():
    try:
        import torch

        from tvcli._extension import HAS_EXT

        if HAS_EXT and torch._C._dispatch_has_kernel_for_dispatch_key(
                "tvcli::bipartite_match", "CPU"):
            return torch.ops.tvcli.bipartite_match
    except (ImportError, RuntimeError):
        pass
    return None


def _csr(indptr, indices, n_cols):
    from scipy.sparse import csr_matrix

    return csr_matrix((np.ones(indices.size, np.int8), indices, indptr),
                      shape=(indptr.size - 1, n_cols))


def max_matching(indptr: np.ndarray, indices: np.ndarray, n_cols: int,
                 backend: str = "auto", rows: np.ndarray | None = None) -> np.ndarray:
    """Maximum-cardinality matching of a bipartite graph given as CSR rows.

    Args:
        indptr: (n_rows + 1,) CSR row pointers; indices: (nnz,) column of each
            pair; n_cols: number of columns.
        backend: ``"auto"`` (the compiled Hopcroft-Karp when built, else
            ``"scipy"``), ``"compiled"`` or ``"scipy"``: SciPy's sparse
            LAPJV (``min_weight_full_bipartite_matching``) on the BSDS outlier
            formulation (pairs cost 1, a node left unmatched costs 100; the
            outlier nodes pair up along the real pairs, so every matching
            extends to a perfect one and its cost falls strictly with its size:
            the minimum is a maximum-cardinality matching). SciPy's own
            Hopcroft-Karp is not used: it takes seconds on some of these graphs.
        rows: optional (k,) row indices: match the sub-graph of those rows.
    Returns:
        (n_rows,) or (k,) int64: each row's column, -1 when unmatched.
    """
    indptr = np.asarray(indptr, np.int64)
    indices = np.asarray(indices, np.int64)
    rows_t = None if rows is None else np.ascontiguousarray(rows, np.int64)
    if backend not in ("auto", "compiled", "scipy"):
        raise ValueError(f"unknown matching backend {backend!r}")
    op = _compiled_matcher() if backend != "scipy" else None
    if op is not None:
        import torch

        return op(torch.from_numpy(indptr), torch.from_numpy(indices), int(n_cols),
                  None if rows_t is None else torch.from_numpy(rows_t)).numpy()
    if backend == "compiled":
        raise RuntimeError("the compiled matcher is not built (tvcli._C)")
    if rows_t is not None:
        sub = _csr(indptr, indices, n_cols)[rows_t]
        indptr, indices = sub.indptr.astype(np.int64), sub.indices.astype(np.int64)
    n = indptr.size - 1
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    if n == 0 or indices.size == 0:
        return np.full(n, -1, np.int64)
    i = np.repeat(np.arange(n), np.diff(indptr))
    j = indices
    # rows: n real + n_cols outlier nodes; columns: n_cols real + n outlier nodes.
    # A real row may go to its own outlier column, a real column to its own
    # outlier row; outlier rows and columns pair up along the real pairs.
    rr = np.concatenate([i, np.arange(n), n + np.arange(n_cols), n + j])
    cc = np.concatenate([j, n_cols + np.arange(n), np.arange(n_cols), n_cols + i])
    ww = np.concatenate([np.ones(i.size), np.full(n, 100.0), np.full(n_cols, 100.0),
                         np.full(i.size, 1e-6)])
    big = csr_matrix((ww, (rr, cc)), shape=(n + n_cols, n + n_cols))
    r, c = min_weight_full_bipartite_matching(big)
    out = np.full(n, -1, np.int64)
    real = (r < n) & (c < n_cols)
    out[r[real]] = c[real]
    return out


def edge_counts_fast(
    pred: np.ndarray,
    gts: Sequence[np.ndarray],
    thresholds: np.ndarray,
    max_dist: float = 0.0075,
    apply_thin: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-threshold BSDS counts of one image.

    Args:
        pred: (H, W) float edge strength.
        gts: K boundary maps (H, W).
        thresholds: (T,) thresholds; ``pred >= t`` is the binary map at t.
        max_dist: tolerance, fraction of the image diagonal.
        apply_thin: thin each binary map first (the BSDS default).
    Returns:
        ``(count_r, sum_r, count_p, sum_p)``, each (T,) float64.
    """
    p = np.asarray(pred, np.float64)
    th = np.asarray(thresholds, np.float64)
    out = np.zeros((4, th.size))
    if th.size == 0:
        return tuple(out)  # type: ignore[return-value]
    matcher = ImageMatcher(p >= th.min(), gts, max_dist)
    prev_key = None
    prev = None
    for i, t in enumerate(th):
        b = p >= t
        if apply_thin:
            b = thin(b)
        key = np.flatnonzero(b)
        if prev_key is not None and key.size == prev_key.size and np.array_equal(key, prev_key):
            out[:, i] = prev
            continue
        prev = matcher.counts(b)
        prev_key = key
        out[:, i] = prev
    return tuple(out)  # type: ignore[return-value]
