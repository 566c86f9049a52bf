// Exact 1-D total-variation proximity operator, direct (non-iterative) solver.
//
//   y = argmin_y 1/2 ||y - x||^2 + lam * sum_n |y[n+1] - y[n]|
//
// Algorithm: L. Condat, "A direct algorithm for 1D total variation denoising",
// IEEE SPL 2013, written anew here with explicit bounds: the published code can
// read one element past the end of a signal when rounding makes the last
// segment's bounds cross, which we guard against (see DESIGN.md section 8).
// The output is exactly constant on each segment (one value is stored for the
// whole segment), which the exact backward in tv1d_backward.h relies on.
//
// Work is O(N) on typical signals, O(N^2) in the worst case; no workspace.
// Arithmetic runs in the accumulator type A (double for both float and double
// storage on the CPU) so that lam >> |x| does not cost float32 its precision.
#pragma once

#include "tv_common.h"

namespace tvcli {
namespace core {

// 1/m for the segment lengths m that Condat's sweep divides by. On the host a
// table of the first kInvTableSize values takes the division off the sweep's
// serial dependency chain (a load and a multiply instead of a ~15-cycle
// divide); devices divide (a host table is not addressable there).
constexpr int kInvTableSize = 256;

struct InvTable {
  double v[kInvTableSize];
  constexpr InvTable() : v() {
    v[0] = 0.0;
    for (int i = 1; i < kInvTableSize; ++i) v[i] = 1.0 / i;
  }
};

#if !defined(__CUDA_ARCH__)
inline constexpr InvTable kInvTable{};
#endif

template <typename A>
TV_HOST_DEVICE TV_INLINE A div_count(A num, int64_t m) {
#if defined(__CUDA_ARCH__)
  return num / A(m);
#else
  return m < kInvTableSize ? num * A(kInvTable.v[m]) : num / A(m);
#endif
}

// Condat's taut-string-like sweep. Preconditions (checked by the caller):
// n >= 2, 0 < lam < +inf, every x finite.
template <typename T, typename A>
TV_HOST_DEVICE inline void tv1d_condat(const T* x, int64_t n, int64_t sx, T* y,
                                       int64_t sy, A lam) {
  int64_t k = 0, k0 = 0;          // current sample; first sample of the open segment
  int64_t kplus = 0, kminus = 0;  // last positions where umax = -lam, umin = lam
  A umin = lam, umax = -lam;      // dual variable bounds
  A vmin = A(x[0]) - lam, vmax = A(x[0]) + lam;  // bounds of the segment value
  const A twolam = lam + lam;
  const A minlam = -lam;
  for (;;) {
    while (k == n - 1) {  // right boundary: close the open segment(s)
      if (umin < A(0)) {  // vmin too high: a negative jump is needed
        do { y[k0 * sy] = T(vmin); } while (++k0 <= kminus);
        if (k0 >= n) return;  // guard: rounding closed the last segment already
        k = kminus = k0;
        vmin = A(x[k0 * sx]);
        umin = lam;
        umax = vmin + umin - vmax;
      } else if (umax > A(0)) {  // vmax too low: a positive jump is needed
        do { y[k0 * sy] = T(vmax); } while (++k0 <= kplus);
        if (k0 >= n) return;
        k = kplus = k0;
        vmax = A(x[k0 * sx]);
        umax = minlam;
        umin = vmax + umax - vmin;
      } else {
        vmin += div_count(umin, k - k0 + 1);
        const T v = T(vmin);
        do { y[k0 * sy] = v; } while (++k0 <= k);
        return;
      }
    }
    const A xnext = A(x[(k + 1) * sx]);
    if ((umin += xnext - vmin) < minlam) {  // negative jump
      const T v = T(vmin);
      do { y[k0 * sy] = v; } while (++k0 <= kminus);  // kminus <= k < n-1
      k = kminus = kplus = k0;
      vmin = A(x[k0 * sx]);
      vmax = vmin + twolam;
      umin = lam;
      umax = minlam;
    } else if ((umax += xnext - vmax) > lam) {  // positive jump
      const T v = T(vmax);
      do { y[k0 * sy] = v; } while (++k0 <= kplus);
      k = kminus = kplus = k0;
      vmax = A(x[k0 * sx]);
      vmin = vmax - twolam;
      umin = lam;
      umax = minlam;
    } else {  // no jump: extend the segment
      ++k;
      if (umin >= lam) {
        kminus = k;
        vmin += div_count(umin - lam, k - k0 + 1);
        umin = lam;
      }
      if (umax <= minlam) {
        kplus = k;
        vmax += div_count(umax + lam, k - k0 + 1);
        umax = minlam;
      }
    }
  }
}

// Outcome of the cheap checks that run before any solver.
enum class Prescreen { kSolve, kDone };

// Handles every case that needs no solver, writing y when it does:
//   lam == 0          -> y = x exactly (NaN/Inf elements included);
//   n == 1            -> y = x;
//   lam NaN or < 0, or any x non-finite -> y = NaN over the whole signal;
//   lam >= n * (max x - min x) / 4      -> y = mean(x) (the solution is then
//       constant: every partial sum of x - mean is bounded by that value).
// The last rule also makes lam = +inf and lam >> |x| exact and cheap.
template <typename T, typename A>
TV_HOST_DEVICE inline Prescreen tv1d_prescreen(const T* x, int64_t n, int64_t sx,
                                               T* y, int64_t sy, A lam) {
  if (n <= 0) return Prescreen::kDone;
  if (lam == A(0) || n == 1) {
    if (lam == lam && !(lam < A(0))) {
      for (int64_t i = 0; i < n; ++i) y[i * sy] = x[i * sx];
      return Prescreen::kDone;
    }
  }
  // One branch-free pass: v - v is 0 for finite v and NaN for NaN/Inf, so
  // `poison` ends NaN exactly when some sample is not finite.
  A lo = A(x[0]), hi = lo, sum = A(0), poison = A(0);
  for (int64_t i = 0; i < n; ++i) {
    const A v = A(x[i * sx]);
    poison += v - v;
    sum += v;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  const bool finite = poison == A(0) && lam == lam && !(lam < A(0));
  if (!finite) {
    const T nan = T(quiet_nan<A>());
    for (int64_t i = 0; i < n; ++i) y[i * sy] = nan;
    return Prescreen::kDone;
  }
  if (lam >= A(0.25) * A(n) * (hi - lo)) {
    const T mean = T(sum / A(n));
    for (int64_t i = 0; i < n; ++i) y[i * sy] = mean;
    return Prescreen::kDone;
  }
  return Prescreen::kSolve;
}

// The whole direct prox for one strided signal: prescreen, then Condat.
template <typename T, typename A>
TV_HOST_DEVICE inline void tv1d_direct(const T* x, int64_t n, int64_t sx, T* y,
                                       int64_t sy, A lam) {
  if (tv1d_prescreen<T, A>(x, n, sx, y, sy, lam) == Prescreen::kDone) return;
  tv1d_condat<T, A>(x, n, sx, y, sy, lam);
}

}  // namespace core
}  // namespace tvcli
