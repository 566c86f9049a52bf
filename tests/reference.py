"""Independent float64 reference for the 1-D TV prox: the taut string.

With S_n = x_0 + ... + x_{n-1} (S_0 = 0), the solution y is the slope of the
shortest path r from (0, 0) to (N, S_N) that stays in the tube
|r_n - S_n| <= lam (Davies & Kovac; Grasmair). This module finds that path with
a plain greedy "funnel" sweep in Python floats: a different formulation and
different code from the C++ engine (Condat's dual sweep), so agreement between
the two is evidence, not an echo. O(N) typical, O(N^2) worst case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def taut_string(x: Sequence[float], lam: float) -> list[float]:
    """Exact 1-D TV prox of ``x`` (a sequence of finite floats), ``lam`` >= 0."""
    n = len(x)
    if n <= 1 or lam == 0:
        return [float(v) for v in x]
    s = [0.0]
    for v in x:
        s.append(s[-1] + float(v))
    lo = [v - lam for v in s]
    hi = [v + lam for v in s]
    lo[0] = hi[0] = 0.0
    lo[n] = hi[n] = s[n]
    y = [0.0] * n
    i, ri = 0, 0.0  # current vertex of the string: (i, r_i)
    while i < n:
        best_lo, j_lo = -math.inf, i  # steepest slope forced by the lower bound
        best_hi, j_hi = math.inf, i  # flattest slope allowed by the upper bound
        j = i + 1
        while True:
            d = j - i
            slope_lo = (lo[j] - ri) / d
            slope_hi = (hi[j] - ri) / d
            if slope_lo > best_hi:  # must pass over the upper point j_hi
                slope, nxt, rnext = best_hi, j_hi, hi[j_hi]
                break
            if slope_hi < best_lo:  # must pass under the lower point j_lo
                slope, nxt, rnext = best_lo, j_lo, lo[j_lo]
                break
            if slope_lo >= best_lo:
                best_lo, j_lo = slope_lo, j
            if slope_hi <= best_hi:
                best_hi, j_hi = slope_hi, j
            if j == n:  # the end point is pinned (lo == hi): straight to it
                slope, nxt, rnext = slope_lo, n, s[n]
                break
            j += 1
        for k in range(i, nxt):
            y[k] = slope
        i, ri = nxt, rnext
    return y
