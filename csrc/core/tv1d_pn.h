// 1-D TV prox by projected Newton on the dual (DESIGN.md section 2; Yeh et al.
// 2022 section 3.2; proxTV's PN_TV1), followed by an exact polish.
//
// Dual problem (D the (N-1) x N forward difference, (D^T w)_j = w_{j-1} - w_j,
// w_{-1} = w_{N-1} = 0):
//
//   min_w f(w) = 1/2 ||x - D^T w||^2   s.t.  |w_i| <= lam,     y = x - D^T w,
//
// gradient g = -D y (g_i = y_i - y_{i+1}), Hessian D D^T = tridiag(-1, 2, -1),
// duality gap  sum_i lam |g_i| + w_i g_i.
//
// One iteration:
//  1. inactive set I: every i except those at a bound whose gradient pushes
//     outwards (w_i = -lam, g_i > 0, or w_i = lam, g_i < 0);
//  2. Newton direction d_I = (D D^T)_II^{-1} g_I. (D D^T)_II is block diagonal,
//     one tridiag(-1, 2, -1) block per run of consecutive inactive indices, and
//     its LDL^T factors are known in closed form: D_k = (k + 1) / k at the k-th
//     (1-based) index of a run, L_{k+1,k} = -k / (k + 1). So the O(N) solve
//     stores no factors: a forward pass z_k = g_k + c_{k-1} z_{k-1} and a
//     backward pass d_k = c_k (z_k + d_{k+1}) with c_k = k / (k + 1), where
//     c = 0 marks an active index (then d = 0 and the recurrence restarts);
//  3. projected step w <- clip(w - s d) with Armijo backtracking (sigma = 0.05,
//     along the projection arc) from s = 1, shrinking s by quadratic
//     interpolation of f along the path.
// Three passes over the signal per iteration when s = 1 is accepted (the
// usual case): pass 1, the back substitution fused with the trial step, and
// the next pass 1. It stops when the gap is below gap_tol * lam * TV(x)
// (relative to the primal objective at y = x), after max_iter iterations, or
// when no step decreases f (rounding level).
//
// Start: see tv1d_pn (each excursion of the unconstrained dual scaled into the
// box). All of this is the paper's method; the start, the fused passes and the
// closed-form LDL^T are ours.
//
// Polish: the dual only fixes where y may jump (|w_i| = lam). Each segment
// between such indices gets its exact value
//     y = (sum of x over the segment + w_right - w_left) / length,
// and the result is accepted only if it satisfies the optimality conditions to
// rounding: with w rebuilt from y (w_j = w_{j-1} + y_j - x_j, i.e. u = -w =
// cumsum(x - y)), |w_j| <= lam inside segments, and at each breakpoint w_i = lam
// only where y does not decrease (-lam only where it does not increase). These
// are the KKT conditions, so an accepted y is the exact prox. If a gap stop is
// rejected, the iterations go on with the gap test off and the polish is tried
// once more. Otherwise (active set not yet right: iteration cap, stagnation)
// the signal is solved again by tv1d_condat, and that answer is checked the
// same way rather than trusted: its jumps become the active set (w = +-lam by
// the jump's sign, 0 elsewhere) and the polish must accept it. If it does not
// (a rounding case of the sweep), the sweep runs again over the reversed
// signal, which rounds along a different path, and is checked likewise; if
// both fail, the forward sweep's answer is returned with status kUnverified,
// so that a caller can see it. Every output is piecewise constant, which the
// exact backward relies on.
//
// Workspace: tv1d_pn_workspace_size(n) accumulator values per signal, read and
// written with an element stride (1 on the CPU; the number of launched threads
// on the GPU, so that neighbouring threads touch neighbouring addresses).
#pragma once

#include "tv1d_direct.h"
#include "tv_common.h"

namespace tvcli {
namespace core {

struct PNOptions {
  int max_iter = 100;     // Newton iterations before giving up (then Condat)
  double gap_tol = 1e-10;  // duality gap, relative to lam * TV(x)
};

// How a signal was finished, reported for benchmarks and tests.
enum class PNStatus : int8_t {
  kTrivial = 0,   // handled by tv1d_prescreen (lam = 0, n = 1, bad input, constant)
  kPolished = 1,  // projected Newton + polish, verified optimal
  kFallback = 2,  // polish failed verification; solved by tv1d_condat instead
                  // (that answer verified by the polish's checks)
  kUnverified = 3,  // tv1d_condat's answer (forward and reversed) also failed
                    // the checks; the forward answer is returned
};

struct PNResult {
  int iterations;  // Newton iterations taken
  PNStatus status;
};

// Accumulator values of workspace a signal of length n needs.
TV_HOST_DEVICE TV_INLINE int64_t tv1d_pn_workspace_size(int64_t n) {
  return n > 1 ? 3 * (n - 1) : 0;
}

namespace pn_detail {

template <typename A>
TV_HOST_DEVICE TV_INLINE A clip(A v, A lam) {
  return v > lam ? lam : (v < -lam ? -lam : v);
}

template <typename A>
TV_HOST_DEVICE TV_INLINE A abs_of(A v) {
  return v < A(0) ? -v : v;
}

// Unit roundoff of the accumulator (2^-52 or 2^-23).
template <typename A>
TV_HOST_DEVICE TV_INLINE A epsilon() {
  return sizeof(A) >= 8 ? A(2.220446049250313e-16) : A(1.1920929e-7);
}

// Polish + verification (see the header comment). Writes y; returns false if
// the segment structure of w is not optimal to rounding.
template <typename T, typename A>
TV_HOST_DEVICE inline bool polish(const T* x, int64_t n, int64_t sx, T* y, int64_t sy,
                                  A lam, const A* w, int64_t ws, A xmax) {
  const int64_t m = n - 1;
  const A eps = epsilon<A>();
  // An index is a breakpoint once its dual sits at the bound; the small band
  // absorbs a Newton step that lands a rounding error short of the clip.
  const A bound = lam * (A(1) - A(16) * eps);
  // Slack of the |w| <= lam test: the rounding error of the running sums.
  const A slack_unit = A(4) * eps * xmax;
  A w_left = A(0);      // dual value entering the segment: 0 or +-lam
  A prev_value = A(0);  // previous segment's value
  int64_t a = 0;
  while (a < n) {
    int64_t b = a;  // last index of the segment [a, b]
    while (b < m && !(abs_of(w[b * ws]) >= bound)) ++b;
    const A w_right = b < m ? (w[b * ws] > A(0) ? lam : -lam) : A(0);
    // Compensated sum of the deviations from the segment's first sample
    // (tv1d_direct.h): a plain running sum over 500 samples of ~1 errs by
    // ~1e-12, which shows as the residual u_{N-1} = sum(x - y) of an
    // otherwise exact answer (docs/exactness.md).
    const A base = A(x[a * sx]);
    const A sum = sum_of_deviations<T, A>(x, sx, a + 1, b, base);
    const A value = base + (sum + w_right - w_left) / A(b - a + 1);
    // Sign condition at the breakpoint entering this segment. A jump of the
    // wrong sign no larger than rounding is a tie (two segments of equal
    // exact value), which the conditions allow.
    const A tie = A(16) * eps * (abs_of(value) + abs_of(prev_value));
    if (a > 0 && ((w_left > A(0) && value < prev_value - tie) ||
                  (w_left < A(0) && value > prev_value + tie)))
      return false;
    // Rebuild the dual inside the segment and check its bound.
    const T v = T(value);
    A wj = w_left;
    const A tol = A(16) * eps * lam + slack_unit * A(b - a + 1);
    for (int64_t j = a; j < b; ++j) {
      wj += value - A(x[j * sx]);
      if (abs_of(wj) > lam + tol) return false;
      y[j * sy] = v;
    }
    y[b * sy] = v;
    w_left = w_right;
    prev_value = value;
    a = b + 1;
  }
  return true;
}

// Solves by tv1d_condat (over the signal reversed when `reversed`) and checks
// the answer with polish(): the jumps of y give the active set, w_i = +lam
// where y rises after i and -lam where it falls. Returns whether the polish
// accepted it (y then holds the polished values, else a partial mix).
template <typename T, typename A, typename Inv>
TV_HOST_DEVICE inline bool condat_checked(const T* x, int64_t n, int64_t sx, T* y, int64_t sy,
                                          A lam, A* w, int64_t ws, A xmax, bool reversed) {
  if (reversed) {
    tv1d_condat<T, A, Inv>(x + (n - 1) * sx, n, -sx, y + (n - 1) * sy, -sy, lam);
  } else {
    tv1d_condat<T, A, Inv>(x, n, sx, y, sy, lam);
  }
  for (int64_t i = 0; i + 1 < n; ++i) {
    const A d = A(y[(i + 1) * sy]) - A(y[i * sy]);
    w[i * ws] = d > A(0) ? lam : (d < A(0) ? -lam : A(0));
  }
  return polish<T, A>(x, n, sx, y, sy, lam, w, ws, xmax);
}

// Gradient g_i = y_i - y_{i+1} of the dual at w, for one index.
template <typename T, typename A>
TV_HOST_DEVICE TV_INLINE A grad_at(const T* x, int64_t sx, const A* w, int64_t wst, int64_t m,
                                   int64_t i) {
  const A wi = w[i * wst];
  const A y_i = A(x[i * sx]) - (i > 0 ? w[(i - 1) * wst] : A(0)) + wi;
  const A y_next = A(x[(i + 1) * sx]) - wi + (i + 1 < m ? w[(i + 1) * wst] : A(0));
  return y_i - y_next;
}

// Projected Newton iterations from the feasible dual in w, until the gap
// falls to gap_stop (returns true), or no step decreases f, or `iter` reaches
// max_iter (returns false). w and c are swapped as steps are accepted; d is
// scratch. See the header comment for the passes.
//
// The decrease f(w) - f(w') is summed directly as sum_j delta_j (y_j -
// delta_j / 2), delta_j = y_j - y'_j = dw_j - dw_{j-1} (dw = w - w'), not as
// a difference of two values of f: near the solution f(w) - f(w') is far
// below the rounding error of f itself (1e-11 against f ~ 1e5 on long walks).
template <typename T, typename A>
TV_HOST_DEVICE inline bool newton(const T* x, int64_t n, int64_t sx, A lam, A*& w, A*& c,
                                  A* d, int64_t wst, A gap_stop, int max_iter, int& iter) {
  const int64_t m = n - 1;
  const A sigma = A(0.05);
  for (; iter < max_iter; ++iter) {
    // Pass 1: gradient, gap, inactive set and forward substitution.
    A gap = A(0), gd = A(0);
    A z_prev = A(0), c_prev = A(0);
    A k = A(0);  // position inside the current run of inactive indices
    A y_cur = A(x[0]) + w[0];
    for (int64_t i = 0; i < m; ++i) {
      const A wi = w[i * wst];
      const A w_next = i + 1 < m ? w[(i + 1) * wst] : A(0);
      const A y_next = A(x[(i + 1) * sx]) - wi + w_next;
      const A g = y_cur - y_next;
      gap += lam * abs_of(g) + wi * g;
      const bool active = (wi <= -lam && g > A(0)) || (wi >= lam && g < A(0));
      A ci = A(0), zi = A(0);
      if (!active) {
        k += A(1);
        ci = k / (k + A(1));
        zi = g + c_prev * z_prev;
        gd += ci * zi * zi;  // g_I^T H_II^{-1} g_I = z^T D^{-1} z
      } else {
        k = A(0);
      }
      c[i * wst] = ci;
      d[i * wst] = zi;
      c_prev = ci;
      z_prev = zi;
      y_cur = y_next;
    }
    if (gap <= gap_stop) return true;
    if (!(gd > A(0))) return false;  // no inactive index: nothing to move
    // Pass 2 (backward): back substitution d_i = c_i (z_i + d_{i+1}) (c_i = 0
    // gives d_i = 0 at active indices and restarts the run), fused with the
    // full-step trial w' = clip(w - d), written over c as it is consumed.
    //
    // Armijo along the projection arc (Bertsekas): accept w(s) = clip(w - s d)
    // when f(w) - f(w(s)) >= sigma g^T (w - w(s)) = sigma pred. Without
    // clipping pred = s gd; each clipped index corrects it (rare: its gradient
    // is recomputed there only).
    A step = A(1);
    A pred = gd, dec = A(0);
    {
      A d_next = A(0), dw_next = A(0), w_next = A(0);
      for (int64_t i = m - 1; i >= 0; --i) {
        d_next = c[i * wst] * (d[i * wst] + d_next);
        d[i * wst] = d_next;
        const A wi = w[i * wst];
        const A wt = wi - d_next;
        const A wn = clip(wt, lam);
        if (wn != wt) pred -= grad_at(x, sx, w, wst, m, i) * (wn - wt);
        c[i * wst] = wn;
        const A dw = wi - wn;
        const A delta = dw_next - dw;  // y_{i+1} - y'_{i+1}
        dec += delta * (A(x[(i + 1) * sx]) - wi + w_next - A(0.5) * delta);
        dw_next = dw;
        w_next = wi;
      }
      dec += dw_next * (A(x[0]) + w_next - A(0.5) * dw_next);  // j = 0: delta = dw_0
    }
    bool accepted = dec > A(0) && dec >= sigma * pred;
    for (int trial = 0; !accepted && trial < 30; ++trial) {
      // Minimizer of the quadratic through f(0), slope -pred / step and
      // f(step) = f(0) - dec, kept within [0.1, 0.5] * step so that the
      // search always shrinks.
      const A denom = A(2) * (pred - dec);
      const A next = denom > A(0) ? step * pred / denom : A(0.5) * step;
      const A lo = A(0.1) * step, hi = A(0.5) * step;
      step = next < lo ? lo : (next > hi ? hi : next);
      pred = A(0);
      dec = A(0);
      A dw_prev = A(0), w_prev = A(0);
      for (int64_t i = 0; i < m; ++i) {
        const A wi = w[i * wst];
        const A wn = clip(wi - step * d[i * wst], lam);
        c[i * wst] = wn;
        pred += grad_at(x, sx, w, wst, m, i) * (wi - wn);
        const A dw = wi - wn;
        const A delta = dw - dw_prev;  // y_i - y'_i
        dec += delta * (A(x[i * sx]) - w_prev + wi - A(0.5) * delta);
        dw_prev = dw;
        w_prev = wi;
      }
      dec += -dw_prev * (A(x[m * sx]) - w_prev + A(0.5) * dw_prev);  // j = m: delta = -dw
      accepted = dec > A(0) && dec >= sigma * pred;
    }
    if (!accepted) return false;  // stagnation at rounding level: the polish judges
    A* t = w;
    w = c;
    c = t;
  }
  return false;
}

}  // namespace pn_detail

// The whole pn prox for one strided signal. `ws` holds
// tv1d_pn_workspace_size(n) values at element stride `wst`; nothing is
// allocated. Preconditions: those of tv1d_direct (none beyond valid pointers).
template <typename T, typename A, typename Inv = CountInverse>
TV_HOST_DEVICE inline PNResult tv1d_pn(const T* x, int64_t n, int64_t sx, T* y, int64_t sy,
                                       A lam, A* ws, int64_t wst, const PNOptions& opt) {
  using pn_detail::abs_of;
  using pn_detail::clip;
  if (tv1d_prescreen<T, A>(x, n, sx, y, sy, lam) == Prescreen::kDone)
    return {0, PNStatus::kTrivial};
  const int64_t m = n - 1;  // >= 1 here
  A* w = ws;                // dual
  A* c = ws + m * wst;      // LDL^T coefficients, then the trial dual
  A* d = ws + 2 * m * wst;  // forward-substituted gradient, then the direction

  A sum = A(0), tv = A(0), xmax = A(0);  // tv scales the stopping gap
  for (int64_t i = 0; i < n; ++i) {
    const A v = A(x[i * sx]);
    sum += v;
    xmax = abs_of(v) > xmax ? abs_of(v) : xmax;
    if (i > 0) tv += abs_of(v - A(x[(i - 1) * sx]));
  }
  const A mean = sum / A(n);

  // Starting point. The unconstrained dual u_j = -sum_{k<=j}(x_k - mean) (the
  // answer when y is constant) clipped to the box puts every index of an
  // excursion |u| > lam at the bound, and the inactive-set rule then frees them
  // only about half per iteration (by the sign of a noisy gradient). Instead,
  // each maximal excursion (a run of same-sign |u_j| > lam) is scaled down into
  // the box so that only its extreme index sits at the bound: that is where
  // the taut string touches the tube, and on a step plus noise (the paper's
  // workload) the first Newton step then lands on the exact face. Any feasible
  // start is valid; this one cut the mean iteration count there from 4.3 to 1.8.
  {
    A cum = A(0);
    int64_t run_start = -1, run_arg = 0;
    A run_peak = A(0);
    for (int64_t i = 0; i <= m; ++i) {
      A u = A(0);
      if (i < m) {
        cum += A(x[i * sx]) - mean;
        u = -cum;
        w[i * wst] = u;
      }
      const bool out = i < m && abs_of(u) > lam;
      if (run_start >= 0 && (!out || (u > A(0)) != (run_peak > A(0)))) {
        const A scale = lam / abs_of(run_peak);
        for (int64_t j = run_start; j < i; ++j) w[j * wst] *= scale;
        w[run_arg * wst] = run_peak > A(0) ? lam : -lam;  // exactly at the bound
        run_start = -1;
      }
      if (out && run_start < 0) {
        run_start = run_arg = i;
        run_peak = u;
      } else if (out && abs_of(u) > abs_of(run_peak)) {
        run_arg = i;
        run_peak = u;
      }
    }
  }
  // A small gap does not guarantee the exact breakpoints (an index can sit a
  // rounding error inside the bound; seen with lam ~ 1e-6 on long walks). If
  // the polish rejects a gap stop, iterate on with the gap test off, until
  // Newton settles (no inactive index, no descent step) or the cap, and polish
  // once more.
  int iter = 0;
  const A gap_stop = A(opt.gap_tol) * lam * tv;
  bool gap_stopped = pn_detail::newton<T, A>(x, n, sx, lam, w, c, d, wst, gap_stop,
                                             opt.max_iter, iter);
  if (pn_detail::polish<T, A>(x, n, sx, y, sy, lam, w, wst, xmax))
    return {iter, PNStatus::kPolished};
  if (gap_stopped && gap_stop > A(0)) {
    pn_detail::newton<T, A>(x, n, sx, lam, w, c, d, wst, A(-1), opt.max_iter, iter);
    if (pn_detail::polish<T, A>(x, n, sx, y, sy, lam, w, wst, xmax))
      return {iter, PNStatus::kPolished};
  }
  // w (the first m workspace values) is free now: the checks rebuild it.
  if (pn_detail::condat_checked<T, A, Inv>(x, n, sx, y, sy, lam, ws, wst, xmax, false) ||
      pn_detail::condat_checked<T, A, Inv>(x, n, sx, y, sy, lam, ws, wst, xmax, true))
    return {iter, PNStatus::kFallback};
  tv1d_condat<T, A, Inv>(x, n, sx, y, sy, lam);
  return {iter, PNStatus::kUnverified};
}

}  // namespace core
}  // namespace tvcli
