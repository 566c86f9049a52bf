// Exact 1-D TV prox by dynamic programming (N. Johnson, "A dynamic programming
// algorithm for the fused lasso and L0-segmentation", JCGS 2013), for the inner
// passes of the 2-D solvers.
//
// Why a second exact 1-D solver: Condat's sweep (tv1d_direct.h) restarts from the
// start of the open segment after every jump, so on long flat segments (images at
// lam ~ 0.1, and the smooth iterates of the 2-D loops) it rescans each sample many
// times; we measured ~47 ns per sample on 512-sample rows of a photo at lam 0.1.
// The DP below touches every knot a bounded number of times (O(N) worst case),
// at the price of a workspace of 8 N accumulators and two divisions per sample.
//
// Operates on contiguous signals in the accumulator type A (the 2-D loops gather
// rows / columns into a scratch line first). The output is exactly constant on
// each segment (the back-pass copies values), like tv1d_direct's.
#pragma once

#include "tv_common.h"

namespace tvcli {
namespace core {

// Workspace size (elements of A) that tv1d_dp needs for a signal of length n.
TV_HOST_DEVICE TV_INLINE int64_t tv1d_dp_workspace(int64_t n) { return 8 * n + 8; }

// Johnson's DP. Preconditions: n >= 2, 0 < lam < inf, every y finite.
// y: input (n), beta: output (n, may not alias y), ws: tv1d_dp_workspace(n).
template <typename A>
TV_HOST_DEVICE inline void tv1d_dp(const A* y, int64_t n, A lam, A* beta, A* ws) {
  // Knots of the derivative of the running message are kept in x[l..r] with
  // slope / offset increments a, b; tm / tp are the back-pointer thresholds.
  A* x = ws;
  A* a = ws + 2 * n;
  A* b = ws + 4 * n;
  A* tm = ws + 6 * n;
  A* tp = ws + 7 * n;
  int64_t l = n - 1, r = n;
  tm[0] = -lam + y[0];
  tp[0] = lam + y[0];
  x[l] = tm[0];
  x[r] = tp[0];
  a[l] = A(1);
  b[l] = -y[0] + lam;
  a[r] = A(-1);
  b[r] = y[0] + lam;
  A afirst = A(1), bfirst = -lam - y[1], alast = A(-1), blast = -lam + y[1];
  for (int64_t k = 1; k < n - 1; ++k) {
    // Lowest point where the derivative exceeds -lam (l only moves left by one
    // per step and r right by one, so x[l..r] stays inside [0, 2n)).
    A alo = afirst, blo = bfirst;
    int64_t lo = l;
    for (; lo <= r; ++lo) {
      if (alo * x[lo] + blo > -lam) break;
      alo += a[lo];
      blo += b[lo];
    }
    tm[k] = (-lam - blo) / alo;
    l = lo - 1;
    x[l] = tm[k];
    A ahi = alast, bhi = blast;
    int64_t hi = r;
    for (; hi >= l; --hi) {
      if (-ahi * x[hi] - bhi < lam) break;
      ahi += a[hi];
      bhi += b[hi];
    }
    tp[k] = (lam + bhi) / (-ahi);
    r = hi + 1;
    x[r] = tp[k];
    a[l] = alo;
    b[l] = blo + lam;
    a[r] = ahi;
    b[r] = bhi + lam;
    afirst = A(1);
    bfirst = -lam - y[k + 1];
    alast = A(-1);
    blast = -lam + y[k + 1];
  }
  A alo = afirst, blo = bfirst;
  for (int64_t lo = l; lo <= r; ++lo) {
    if (alo * x[lo] + blo > A(0)) break;
    alo += a[lo];
    blo += b[lo];
  }
  beta[n - 1] = -blo / alo;
  for (int64_t k = n - 2; k >= 0; --k) {
    const A next = beta[k + 1];
    beta[k] = next > tp[k] ? tp[k] : (next < tm[k] ? tm[k] : next);
  }
}

// Exact 1-D prox of a contiguous finite signal with the cheap cases first:
// lam == 0 or n == 1 -> copy; lam >= n * (max - min) / 4 -> the mean (as
// tv1d_prescreen); otherwise the DP. lam must be finite and >= 0.
template <typename A>
TV_HOST_DEVICE inline void tv1d_dp_solve(const A* in, int64_t n, A lam, A* out, A* ws) {
  if (n <= 0) return;
  if (lam == A(0) || n == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = in[i];
    return;
  }
  A lo = in[0], hi = in[0], sum = A(0);
  for (int64_t i = 0; i < n; ++i) {
    const A v = in[i];
    sum += v;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  if (lam >= A(0.25) * A(n) * (hi - lo)) {
    const A mean = sum / A(n);
    for (int64_t i = 0; i < n; ++i) out[i] = mean;
    return;
  }
  tv1d_dp<A>(in, n, lam, out, ws);
}

}  // namespace core
}  // namespace tvcli
