"""Exactness of the 1-D prox on rounding-stressing inputs (issue 11, part 1).

The fuzz harness is tests/fuzz_tv1d.py (kinds, KKT check, taut-string
reference); benchmarks/fuzz_exactness.py runs it at full size and
docs/exactness.md has its figures. Here: the rows the harness found against
the old right-boundary restart of Condat's sweep, a quick slice of every kind
(CI), and the full >= 10^6-signal run (slow).
"""

from __future__ import annotations

import fuzz_tv1d as fz
import numpy as np
import pytest
import torch

import tvcli
from tvcli._extension import HAS_EXT
from tvcli.solver_stats import prox_tv1d_pn_stats

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="compiled engine not built")

# Found by the harness's "ties" kind on the old code (docs/exactness.md), and
# by a random search over decimal rows. Old results: last sample 0.35 (exact
# 0.4); the 8-sample row sent the sweep past the end of the signal.
REGRESSION_ROWS = [
    ([0.4, 0.3, 0.4, 0.2, 0.3, 0.5, 0.4, 0.6, 0.2, 0.1, 0.2, 0.4, 0.1, 0.0, 0.2, 0.2, 0.5,
      0.3, 0.6, 0.3, 0.4], 0.1),
    ([0.2, 0.0, 0.6, 0.1, 0.2, 0.0, 0.2, 0.3], 0.2),
]


def _regression_rows() -> list[tuple[np.ndarray, float]]:
    rows = [(np.array(x, dtype=np.float64), lam) for x, lam in REGRESSION_ROWS]
    rows += [(np.array(x, dtype=np.float64), lam) for x, lam in HARNESS_ROWS]
    return rows


# Rows the harness found on the old code (benchmarks/fuzz_exactness.py --scale
# full, kind "ties", seed 0; docs/exactness.md): batch 80, row 143 crashed
# the process (segmentation fault: the sweep ran past the end of the row);
# batches 528 / 592 gave KKT residuals 0.22 / 0.4 (wrong last samples).
HARNESS_ROWS: list[tuple[list[float], float]] = [
    ([0.6, 0.2, 0.5, 0.1, 0.6, 0.0, 0.2, 0.6, 0.2, 0.6, 0.2, 0.0, 0.0, 0.5, 0.1], 0.4),
    ([0.4, 0.6, 0.2, 0.0, 0.6, 0.2, 0.1, 0.3, 0.2, 0.5, 0.0, 0.6, 0.3, 0.6, 0.0, 0.3, 0.4,
      0.2], 0.3),
    ([0.3, 0.1, 0.4, 0.4, 0.0, 0.2, 0.2, 0.6, 0.4, 0.6, 0.6, 0.1, 0.1, 0.3, 0.0, 0.5, 0.3,
      0.3, 0.3, 0.1, 0.6, 0.0, 0.5], 0.5),
]


@pytest.mark.parametrize("solver", ["direct", "pn"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_regression_rows_are_exact(solver: str, dtype: torch.dtype) -> None:
    for x, lam in _regression_rows():
        # Padded on both sides with NaN canaries: a solver that reads past the
        # row turns its output NaN; the view itself is a strided slice.
        buf = torch.full((3 * x.size,), float("nan"), dtype=torch.float64)
        buf[x.size:2 * x.size] = torch.from_numpy(x)
        xt = buf[x.size:2 * x.size].to(dtype)
        y = tvcli.prox_tv1d(xt[None], lam, solver=solver)[0].double().numpy()
        ref = fz.independent_prox(xt.double().numpy(), lam)
        assert np.all(np.isfinite(y))
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        assert np.abs(y - ref).max() <= tol * max(1.0, lam), (x.tolist(), lam)
        if dtype == torch.float64:
            r = fz.kkt_residual(x[None], y[None], np.array([[lam]]))
            assert r[0] <= fz.F64_TOL


def test_pn_fallback_is_checked() -> None:
    """With no Newton iterations most signals fall back to Condat's sweep, whose
    answer the polish must verify: status 2 (fallback, verified), never 3
    (unverified), and the answer optimal."""
    g = torch.Generator().manual_seed(3)
    walks = torch.randn(64, 200, generator=g, dtype=torch.float64).cumsum(1).numpy()
    rows = _regression_rows() + [(w, 0.7) for w in walks]
    statuses = []
    for x, lam in rows:
        y, _, status = prox_tv1d_pn_stats(torch.from_numpy(x[None]), lam, max_iter=0)
        statuses.append(int(status[0]))
        r = fz.kkt_residual(x[None], y.numpy(), np.array([[lam]]))
        assert r[0] <= fz.F64_TOL
    assert 3 not in statuses
    assert statuses.count(2) > 0, "the fallback path was not exercised"


def test_kkt_check_catches_a_wrong_last_sample() -> None:
    """The harness's check itself: the old answer on the first regression row
    (last sample 0.35 instead of 0.4) must fail it, the exact one pass."""
    x = np.array(REGRESSION_ROWS[0][0])
    y = fz.independent_prox(x, 0.1)
    lam = np.array([[0.1]])
    assert fz.kkt_residual(x[None], y[None], lam)[0] <= fz.F64_TOL
    bad = y.copy()
    bad[-1] = 0.35
    assert fz.kkt_residual(x[None], bad[None], lam)[0] > 1e-3
    tie = y.copy()  # a tie split by one ulp is not an error beyond its size
    tie[-1] = np.nextafter(tie[-1], 1.0)
    assert fz.kkt_residual(x[None], tie[None], lam)[0] <= fz.F64_TOL


def _run(scale: str) -> dict:
    import importlib.util
    import os

    path = os.path.join(fz.REPO, "benchmarks", "fuzz_exactness.py")
    spec = importlib.util.spec_from_file_location("fuzz_exactness", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.run(scale, seed=0, ref_every=50 if scale == "quick" else 200, log=lambda *_: None)


def _assert_clean(res: dict) -> None:
    for kind, v in res.items():
        if kind == "_total":
            continue
        for key in ("direct/f64", "pn/f64", "direct/f32"):
            s = v[key]
            assert s["kkt_fail"] == 0, (kind, key, s["kkt_max"], s["failures"][:1])
            assert s["ref_fail"] == 0, (kind, key, s["ref_max"])


def test_fuzz_quick_slice() -> None:
    """Every kind at a small size (~15k signals per solver, a few seconds)."""
    res = _run("quick")
    _assert_clean(res)
    assert res["_total"]["signals"] > 10000


@pytest.mark.slow
def test_fuzz_full() -> None:
    """The >= 10^6-signal run of docs/exactness.md (see there for its time)."""
    import os

    if not os.path.isdir(fz.SHARED_PHOTOS):
        pytest.skip("needs the BSDS500 photos under ../shared/data")
    res = _run("full")
    _assert_clean(res)
    assert res["_total"]["signals"] >= 1_000_000
