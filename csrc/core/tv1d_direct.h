// Exact 1-D total-variation proximity operator, direct (non-iterative) solver.
//
//   y = argmin_y 1/2 ||y - x||^2 + lam * sum_n |y[n+1] - y[n]|
//
// Algorithm: L. Condat, "A direct algorithm for 1D total variation denoising",
// IEEE SPL 2013, written anew here with explicit bounds and one deliberate
// change at the right boundary (see tv1d_condat): the published code keeps
// the opposite bound of the closed segment when it restarts there, which
// rounding can make inconsistent (DESIGN.md section 8, docs/exactness.md).
// The output is exactly constant on each segment (one value is stored for the
// whole segment), which the exact backward in tv1d_backward.h relies on.
//
// Work is O(N) on typical signals, O(N^2) in the worst case; no workspace.
// Arithmetic runs in the accumulator type A (double for both float and double
// storage on the CPU and the GPU) so that lam >> |x| does not cost float32 its
// precision.
#pragma once

#include "tv_common.h"

namespace tvcli {
namespace core {

// Division by a segment length m. One rule on every target, so that host and
// device results agree bit for bit: the quotient is num * r(m), where r(m) is
// 1 / m correctly rounded to double (IEEE division), converted to A. The host
// reads r(m) from a table for m < kInvTableSize (a load and a multiply instead
// of a ~15-cycle divide on the sweep's serial dependency chain); longer
// segments and devices (a host table is not addressable there) compute the same
// correctly rounded 1.0 / m, off the chain through num. Together with no
// contraction into fused multiply-adds (-ffp-contract=off on the host,
// --fmad=false in nvcc) every operation rounds the same way on both.
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

// The rule as the solvers use it (see above): table on the host, division on
// the device, the same bits on both.
struct CountInverse {
  static TV_HOST_DEVICE TV_INLINE double of(int64_t m) {
#if defined(__CUDA_ARCH__)
    return 1.0 / double(m);
#else
    return m < kInvTableSize ? kInvTable.v[m] : 1.0 / double(m);
#endif
  }
};

// What a device computes, usable on the host: the CPU grid emulation runs the
// solvers with it to check that host and device agree (csrc/testing.cpp).
struct CountInverseComputed {
  static TV_HOST_DEVICE TV_INLINE double of(int64_t m) { return 1.0 / double(m); }
};

template <typename A, typename Inv = CountInverse>
TV_HOST_DEVICE TV_INLINE A div_count(A num, int64_t m) {
  return num * A(Inv::of(m));
}

// Segments at least this long get their value recomputed from their samples
// when they close (see segment_value); shorter ones keep the sweep's value.
constexpr int64_t kLongSegment = 64;

// sum_{j=k0..k1} (x_j - base), compensated (Neumaier): a plain sum of 512
// samples spread over [0, 1] errs by ~1e-12, the size of the bound we check.
// Out of line on the host: inlined into the sweep's loop it cost ~3% on short
// rows, where it never runs.
template <typename T, typename A>
TV_HOST_DEVICE TV_NOINLINE_HOST A sum_of_deviations(const T* x, int64_t sx, int64_t k0,
                                                    int64_t k1, A base) {
  A sum = A(0), comp = A(0);
  for (int64_t j = k0; j <= k1; ++j) {
    const A v = A(x[j * sx]) - base;
    const A t = sum + v;
    const A as = sum < A(0) ? -sum : sum, av = v < A(0) ? -v : v;
    comp += as >= av ? (sum - t) + v : (v - t) + sum;
    sum = t;
  }
  return sum + comp;
}

// Value of the closed segment [k0, k1] from the optimality conditions: the
// dual enters at u_in (0, or +-lam after a jump) and leaves at u_out (+-lam
// at a jump, 0 at the end of the signal), so
//   v = (u_in - u_out + sum_{j=k0..k1} x_j) / (k1 - k0 + 1),
// summed as deviations from x[k0]. Why: the sweep updates a segment's value
// incrementally, and each update's rounding (eps |v|) enters the dual
// multiplied by the length; over a 440-sample flat segment of values ~1 that
// reached a residual of 1.1e-12 (docs/exactness.md).
template <typename T, typename A, typename Inv>
TV_HOST_DEVICE inline T segment_value(const T* x, int64_t sx, int64_t k0, int64_t k1, A u_in,
                                      A u_out) {
  const A base = A(x[k0 * sx]);
  const A sum = sum_of_deviations<T, A>(x, sx, k0 + 1, k1, base);
  return T(base + div_count<A, Inv>(sum + (u_in - u_out), k1 - k0 + 1));
}

// Writes the closed segment [k0, k1] and moves k0 past it (to k1 + 1). Its value
// is the sweep's bound v, or for a long segment the value from its samples and
// its entry / exit duals u_in / u_out (see segment_value).
template <typename T, typename A, typename Inv>
TV_HOST_DEVICE TV_INLINE void close_segment(const T* x, int64_t sx, T* y, int64_t sy,
                                            int64_t& k0, int64_t k1, A v, A u_in, A u_out) {
  const T value = TV_UNLIKELY(k1 - k0 + 1 >= kLongSegment)
                      ? segment_value<T, A, Inv>(x, sx, k0, k1, u_in, u_out)
                      : T(v);
  do { y[k0 * sy] = value; } while (++k0 <= k1);
}

// Condat's taut-string-like sweep. Preconditions (checked by the caller):
// n >= 2, 0 < lam < +inf, every x finite.
//
// State: the open segment starts at k0; vmin <= vmax bound its value; umin /
// umax are the running dual sums at k for the values vmin / vmax, and kminus /
// kplus the last samples where those duals touched +lam / -lam. Every jump,
// in the sweep and at the right boundary alike, closes the segment at kminus
// (value vmin) or kplus (value vmax) and restarts the sweep just after it with
// fresh bounds, so k0 <= kminus, kplus <= k <= n - 1 always holds and every
// write stays inside [k0, k].
//
// Why the boundary restarts fresh (our change to the published code): Condat
// keeps the opposite bound (vmax after a negative jump) and its index (kplus)
// across a boundary restart. That bound is valid in exact arithmetic, but
// where the exact solution has a tie (the segment value pinned, vmin == vmax)
// rounding can leave vmin a few ulps above vmax, so that umin < 0 < umax at
// the boundary. The kept bound then yields a "jump" back to a segment that
// ends before k0 (kplus < k0): the published code writes the kept vmax into
// one sample and carries on from an inconsistent state. Reported: the last
// sample of a photo row off by 5e-5 (issue 11); found here on short rows of
// tenths: last samples off by 0.05-0.2, and (in the sweep, after such a
// restart left kminus = n - 1) reads and writes past the end of the signal
// (a segmentation fault). Restarting fresh solves the rest [k0, n-1] as its own
// problem with the entry dual +-lam that the jump fixes, which is exact in
// exact arithmetic and under rounding keeps the dual within rounding of the
// bounds (at worst a tie is split into two segments whose values differ by
// rounding). docs/exactness.md has the fuzz figures.
template <typename T, typename A, typename Inv = CountInverse>
TV_HOST_DEVICE inline void tv1d_condat(const T* x, int64_t n, int64_t sx, T* y,
                                       int64_t sy, A lam) {
  int64_t k = 0, k0 = 0;          // current sample; first sample of the open segment
  int64_t kplus = 0, kminus = 0;  // last positions where umax = -lam, umin = lam
  A umin = lam, umax = -lam;      // dual variable bounds
  A vmin = A(x[0]) - lam, vmax = A(x[0]) + lam;  // bounds of the segment value
  const A twolam = lam + lam;
  const A minlam = -lam;
  A u_in = A(0);  // dual entering the open segment: 0 at the start, then +-lam
  // A jump closes the segment at kminus (value vmin, exit dual lam: negative
  // jump) or kplus (value vmax, exit dual -lam: positive jump) and restarts the
  // sweep just after it with fresh bounds and that entry dual.
  const auto negative_jump = [&] {
    close_segment<T, A, Inv>(x, sx, y, sy, k0, kminus, vmin, u_in, lam);
    u_in = lam;
    k = kminus = kplus = k0;
    vmin = A(x[k0 * sx]);
    vmax = vmin + twolam;
    umin = lam;
    umax = minlam;
  };
  const auto positive_jump = [&] {
    close_segment<T, A, Inv>(x, sx, y, sy, k0, kplus, vmax, u_in, minlam);
    u_in = minlam;
    k = kminus = kplus = k0;
    vmax = A(x[k0 * sx]);
    vmin = vmax - twolam;
    umin = lam;
    umax = minlam;
  };
  for (;;) {
    while (k == n - 1) {  // right boundary: close the open segment(s)
      if (umin < A(0)) {  // vmin too high: a negative jump is needed
        // umin < 0 here implies kminus < n - 1 (the step that sets
        // kminus = k also sets umin = lam), so k0 stays <= n - 1.
        negative_jump();
      } else if (umax > A(0)) {  // vmax too low: a positive jump is needed
        positive_jump();
      } else {
        vmin += div_count<A, Inv>(umin, k - k0 + 1);
        close_segment<T, A, Inv>(x, sx, y, sy, k0, k, vmin, u_in, A(0));
        return;
      }
    }
    const A xnext = A(x[(k + 1) * sx]);
    if ((umin += xnext - vmin) < minlam) {
      negative_jump();  // kminus <= k < n - 1
    } else if ((umax += xnext - vmax) > lam) {
      positive_jump();
    } else {  // no jump: extend the segment
      ++k;
      if (umin >= lam) {
        kminus = k;
        vmin += div_count<A, Inv>(umin - lam, k - k0 + 1);
        umin = lam;
      }
      if (umax <= minlam) {
        kplus = k;
        vmax += div_count<A, Inv>(umax + lam, k - k0 + 1);
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
  A lo = A(x[0]), hi = lo, poison = A(0);
  for (int64_t i = 0; i < n; ++i) {
    const A v = A(x[i * sx]);
    poison += v - v;
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
    // Second pass, only here: the mean summed compensated (see
    // sum_of_deviations; a plain sum left residuals of ~1e-12).
    const A base = A(x[0]);
    const T mean = T(base + sum_of_deviations<T, A>(x, sx, 1, n - 1, base) / A(n));
    for (int64_t i = 0; i < n; ++i) y[i * sy] = mean;
    return Prescreen::kDone;
  }
  return Prescreen::kSolve;
}

// The whole direct prox for one strided signal: prescreen, then Condat.
template <typename T, typename A, typename Inv = CountInverse>
TV_HOST_DEVICE inline void tv1d_direct(const T* x, int64_t n, int64_t sx, T* y,
                                       int64_t sy, A lam) {
  if (tv1d_prescreen<T, A>(x, n, sx, y, sy, lam) == Prescreen::kDone) return;
  tv1d_condat<T, A, Inv>(x, n, sx, y, sy, lam);
}

}  // namespace core
}  // namespace tvcli
