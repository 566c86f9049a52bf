"""tvcli.edge_eval: thinning, NMS, matching and the BSDS counts.

Known answers on synthetic maps; scikit-image's thinning and SciPy as
references; pyEdgeEval (the BSDS C++ matcher's port) on BSDS500 test images
when both are available (skipped otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tvcli import edge_eval as E
from tvcli import metrics as M

BSDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bsds500"


def _random_blobs(rng, h=40, w=50, p=0.06, grow=1):
    from scipy import ndimage as ndi

    b = rng.random((h, w)) < p
    return ndi.binary_dilation(b, iterations=grow) if grow else b


# ------------------------------------------------------------------ thinning


def test_thin_matches_scikit_image():
    skm = pytest.importorskip("skimage.morphology")
    rng = np.random.default_rng(0)
    for i in range(40):
        b = _random_blobs(rng, p=0.03 + 0.01 * (i % 5), grow=i % 4)
        np.testing.assert_array_equal(E.thin(b), skm.thin(b), err_msg=f"case {i}")


def test_thin_known_cases():
    # A 3-pixel-thick bar thins to a one-pixel line of (almost) its length.
    b = np.zeros((9, 20), bool)
    b[3:6, 2:18] = True
    t = E.thin(b)
    assert t.sum() >= 12 and t[:, 5:15].sum(axis=0).max() == 1
    # One-pixel lines and isolated pixels stay.
    line = np.zeros((5, 8), bool)
    line[2, 1:7] = True
    line[0, 0] = True
    np.testing.assert_array_equal(E.thin(line), line)
    assert not E.thin(np.zeros((4, 4))).any()
    with pytest.raises(ValueError, match="2-D"):
        E.thin(np.zeros((2, 2, 2)))


# ------------------------------------------------------------------ matching


def _brute_force_matching(adj: list[list[int]]) -> int:
    """Maximum matching size by simple augmenting paths (Kuhn), for tiny graphs."""
    match_col: dict[int, int] = {}

    def augment(u, seen):
        for v in adj[u]:
            if v in seen:
                continue
            seen.add(v)
            if v not in match_col or augment(match_col[v], seen):
                match_col[v] = u
                return True
        return False

    return sum(augment(u, set()) for u in range(len(adj)))


@pytest.mark.parametrize("backend", ["auto", "scipy"])
def test_max_matching_random_graphs(backend):
    from scipy.sparse import random as sprandom

    rng = np.random.default_rng(1)
    for i in range(60):
        n, m = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        a = sprandom(n, m, density=float(rng.uniform(0.02, 0.3)), format="csr",
                     random_state=int(rng.integers(1 << 30)))
        a.sort_indices()
        adj = [list(a.indices[a.indptr[u]:a.indptr[u + 1]]) for u in range(n)]
        got = E.max_matching(a.indptr, a.indices, m, backend=backend)
        cols = got[got >= 0]
        assert len(set(cols.tolist())) == cols.size, "a column matched twice"
        for u in np.flatnonzero(got >= 0):  # every pair is an edge
            assert got[u] in adj[u]
        assert cols.size == _brute_force_matching(adj), f"case {i}"
        # the sub-graph of some rows, in a given order
        rows = rng.permutation(n)[: int(rng.integers(1, n + 1))]
        got = E.max_matching(a.indptr, a.indices, m, backend=backend, rows=rows)
        for k in np.flatnonzero(got >= 0):
            assert got[k] in adj[rows[k]]
        assert (got >= 0).sum() == _brute_force_matching([adj[r] for r in rows]), f"rows {i}"


def test_max_matching_needs_augmenting_paths():
    # Greedy in row order takes (0, 0) and leaves row 1 (only column 0) free;
    # the maximum matches both: (0, 1), (1, 0).
    got = E.max_matching(np.array([0, 2, 3]), np.array([0, 1, 0]), 2)
    assert sorted(got.tolist()) == [0, 1]
    # A long chain: row i links columns i and i + 1, row n-1 only column n-1...
    n = 2000
    ip = np.concatenate([[0], np.cumsum([2] * (n - 1) + [1])])
    ix = np.concatenate([[i, i + 1] for i in range(n - 1)] + [[0]])
    got = E.max_matching(ip, ix, n)
    assert (got >= 0).all()


# ------------------------------------------------------------------ counts


def _square(h=48, w=64, off=0):
    g = np.zeros((h, w), bool)
    g[10 + off, 10:50] = g[30 + off, 10:50] = True
    g[10 + off:31 + off, 10] = g[10 + off:31 + off, 50] = True
    return g


def test_counts_known_answers():
    g = _square()
    th = np.array([0.5])
    cr, sr, cp, sp = E.edge_counts_fast(g.astype(float), [g], th)
    # thinning takes the 4 corner pixels off; every other pixel matches itself
    assert sr[0] == g.sum() and cr[0] == cp[0] == sp[0] == E.thin(g).sum() == g.sum() - 4
    # Tolerance 0.0075 x diagonal 80 = 0.6 px: a one-pixel shift matches only
    # where the shifted square still overlaps (its two vertical sides).
    s = _square(off=1).astype(float)
    cr, sr, cp, sp = E.edge_counts_fast(s, [g], th)
    assert cr[0] == cp[0] == (E.thin(s > 0) & g).sum() == 2 * 19
    # At 0.02 x 80 = 1.6 px every (thinned) predicted pixel matches.
    cr, sr, cp, sp = E.edge_counts_fast(s, [g], th, max_dist=0.02)
    assert cr[0] == cp[0] == sp[0] == g.sum() - 4
    # Two annotators: recall sums over both, precision counts a pixel once.
    cr, sr, cp, sp = E.edge_counts_fast(g.astype(float), [g, g], th)
    assert sr[0] == 2 * g.sum() and cp[0] == sp[0] <= g.sum()
    # One-to-one: two predicted lines next to one true line match it once.
    one = np.zeros((40, 40), bool)
    one[20, 5:35] = True
    two = one | np.roll(one, 1, axis=0)
    cr, sr, cp, sp = E.edge_counts_fast(two.astype(float), [one], th, apply_thin=False)
    assert cr[0] == sr[0] == 30 and cp[0] == 30 and sp[0] == 60


def test_metrics_on_synthetic_maps():
    g = _square()
    r = M.edge_ods_ois_ap([g.astype(float)], [[g]], thresholds=9)
    # one precision/recall point: BSDS's Area_PR is then 0 by definition
    assert r.ods > 0.97 and r.ois > 0.97 and r.ap == 0
    empty = M.edge_ods_ois_ap([np.zeros_like(g, float)], [[g]], thresholds=9)
    assert empty.ods == 0 and empty.ap == 0
    # Half the edges at strength 0.3, half at 0.8: recall 1/2 above 0.3.
    p = g.astype(float) * 0.8
    p[:, :30] *= 0.3 / 0.8
    r = M.edge_ods_ois_ap([p], [[g]], thresholds=99)
    i = int(np.searchsorted(np.asarray(r.curve["threshold"]), 0.5))
    assert r.curve["recall"][i] == pytest.approx((g[:, 30:]).sum() / g.sum(), abs=0.03)
    assert r.curve["precision"][i] == pytest.approx(1.0)
    assert 0.4 < r.ap < 1 and r.ods > 0.97


def test_nms_keeps_ridges_only():
    # a vertical ridge, and the same slightly tilted (the orientation is
    # estimated from second derivatives)
    yy, xx = np.mgrid[0:40, 0:60].astype(float)
    for slope in (0.0, 0.1):
        ridge = np.exp(-0.5 * ((xx - 30 - slope * (yy - 20)) / 2.0) ** 2)
        out = E.nms(ridge)
        width = (out[5:35] > 0.05).sum(axis=1)
        # where the crest falls midway between two pixels, the 1.01 margin keeps both
        assert width.max() <= 2 and (width == 1).mean() > 0.85, slope
        assert out[0].max() == 0 and out[20].max() > 0.9  # border fade
    with pytest.raises(ValueError, match="2-D"):
        E.nms(np.zeros(5))


# ------------------------------------------------------------------ pyEdgeEval


def _bsds_pairs(n):
    from tvcli.data.bsds import bsds_split, read_bsds_boundaries

    if not BSDS.is_dir():
        pytest.skip("BSDS500 not at ../shared/data/bsds500")
    pairs = bsds_split(BSDS, "test")[:n]
    return [(p, read_bsds_boundaries(m)) for p, m in pairs]


def _gradient_edges(path):
    from PIL import Image
    from scipy import ndimage as ndi

    g = np.asarray(Image.open(path).convert("L"), float) / 255
    g = ndi.gaussian_filter(g, 2)
    e = np.hypot(ndi.sobel(g, 0), ndi.sobel(g, 1))
    return E.nms(np.clip(e / np.quantile(e, 0.99), 0, 1))


@pytest.mark.skipif(not M.edge_backend_available(), reason="pyEdgeEval not installed")
def test_nms_agrees_with_pyedgeeval():
    from pyEdgeEval.preprocess import fast_nms

    rng = np.random.default_rng(3)
    from scipy import ndimage as ndi

    e = ndi.gaussian_filter(rng.random((60, 80)), 2)
    e /= e.max()
    ours, ref = E.nms(e), fast_nms(img=e, r=1, s=5, m=1.01, half_prec=False)
    # identical up to pixels whose comparison is decided by rounding
    assert (np.abs(ours - ref) > 1e-6).mean() < 0.01


@pytest.mark.slow
@pytest.mark.skipif(not M.edge_backend_available(), reason="pyEdgeEval not installed")
def test_agrees_with_pyedgeeval_on_bsds():
    """ODS / OIS / AP within 0.005 of pyEdgeEval's port of the BSDS matcher on
    three BSDS500 test images (25 thresholds to keep pyEdgeEval's run short)."""
    pairs = _bsds_pairs(3)
    preds = [_gradient_edges(p) for p, _ in pairs]
    gts = [g for _, g in pairs]
    ours = M.edge_ods_ois_ap(preds, gts, thresholds=25)
    ref = M.edge_ods_ois_ap(preds, gts, thresholds=25, backend="pyedgeeval")
    for k in ("ods", "ois", "ap"):
        assert getattr(ours, k) == pytest.approx(getattr(ref, k), abs=0.005), k
    assert 0.3 < ours.ods < 0.9


@pytest.mark.skipif(not M.edge_backend_available(), reason="pyEdgeEval not installed")
def test_counts_close_to_pyedgeeval_on_a_crop():
    """Fast version of the BSDS agreement: one 120 x 160 crop, 9 thresholds."""
    (path, gts), = _bsds_pairs(1)
    pred = _gradient_edges(path)[100:220, 150:310]
    crops = [g[100:220, 150:310] for g in gts]
    ours = M.edge_counts(pred, crops, 9)
    ref = M.edge_counts(pred, crops, 9, backend="pyedgeeval")
    np.testing.assert_array_equal(ours.sum_r, ref.sum_r)
    for f in ("count_r", "count_p", "sum_p"):
        a, b = getattr(ours, f), getattr(ref, f)
        assert np.all(np.abs(a - b) <= 0.03 * np.maximum(b, 10)), (f, a, b)
