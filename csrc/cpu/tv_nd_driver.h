// Host driver of the n-D TV prox (isotropic / colour / anisotropic, weight maps):
// FISTA on the dual with a certified stop, csrc/core/tv_nd_fgp.h. One driver, two
// bindings: the torch op (csrc/cpu/tv_nd_cpu.cpp, ATen's thread pool) and the
// torch-free module tvcli._core (csrc/py/core_module.cpp, OpenMP). Both pass a
// "parallel backend" policy Par with
//
//   static int64_t num_threads();
//   static void for_range(int64_t begin, int64_t end, int64_t grain, const F& f);
//       f(b, e) over chunks of [begin, end), as at::parallel_for
//   static double reduce(int64_t begin, int64_t end, int64_t grain, double ident,
//                        const F& f, const SF& sf);
//       chunks and combines exactly as at::parallel_reduce (the OpenMP policy
//       copies ATen's split: csrc/cpu/parallel_omp.h)
//
// so that, for the same inputs and thread count, both give the same bits.
//
// Parallelism: with at least as many problems as threads, one problem per thread
// (its state allocated by the thread, so memory is threads x one problem, not the
// batch); otherwise the problems run one after another and every sweep is split
// over lines of the last axis (a big image or volume), the state's zeroing too.
// Lines are independent inside a sweep, so y does not depend on the split; only
// the gap's summation order does (to rounding).
//
// An iteration is two sweeps over the problem: the residual r = x - D^T q (one
// image, C n values), and the fused update (dual step, projection, momentum) that
// reads r, q, p and writes q, p. Every check_every iterations (and at max_iter)
// the certificate runs in double: re-projection of p, y = x - D^T p~, the gap
// (three sweeps split over threads, or one fused sweep in one thread). Near tol
// (merge_flat) it may also certify the midpoint of y and its average over the
// dual's flat regions (tv_nd_merge.h); a float32 state may hand its iterate to a
// float64 one at a check (f32_until, StateHandoff).
//
// Host only (std::vector); the arguments are checked by the bindings.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "../core/tv_nd_fgp.h"
#include "../core/tv_nd_options.h"
#include "tv_nd_merge.h"

namespace tvcli {
namespace tvnd_driver {

using core::tvnd::Geometry;
using core::tvnd::Problem;

// Lines per task of a line-parallel sweep: ~4096 elements.
inline int64_t line_grain(int64_t w) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(w, 1)); }

// Whether one problem's data are usable: x finite, w finite and >= 0.
template <typename T>
bool problem_ok(const T* x, int64_t nx, const T* w, int64_t nw) {
  for (int64_t i = 0; i < nx; ++i)
    if (!core::is_finite(x[i])) return false;
  for (int64_t i = 0; i < nw; ++i)
    if (!core::is_finite(w[i]) || !(w[i] >= T(0))) return false;
  return true;
}

// Runs `f(l)` for l in [0, lines): over threads when `split`, else in this thread.
template <class Par, typename F>
void for_lines(bool split, int64_t lines, int64_t grain, const F& f) {
  if (!split) {
    for (int64_t l = 0; l < lines; ++l) f(l);
    return;
  }
  Par::for_range(0, lines, grain, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) f(l);
  });
}

// A solve's state array, allocated without being written: solve_problem zeroes it
// line by line (zero_values) in the threads that will sweep those lines, so that
// the page faults and the zeroing of a big problem's state split over the threads
// instead of falling on the caller alone (measured: ~5 % of a 2-thread photo solve).
template <typename V>
struct StateArray {
  std::unique_ptr<V[]> buf;
  size_t count = 0;
  explicit StateArray(size_t n) : buf(new V[n]), count(n) {}
  V* data() { return buf.get(); }
  size_t size() const { return count; }
  V& operator[](size_t i) { return buf[i]; }
};

// Zeroes `len` values at a + off (memset: 0.0 is all zero bits).
template <typename V>
inline void zero_values(V* a, int64_t off, int64_t len) {
  std::memset(static_cast<void*>(a + off), 0, size_t(len) * sizeof(V));
}

// The iteration of the certificate after one at `it` whose bound (> tol) was
// `bound`, the one before at `prev_it` (0: none) `prev_bound`: where the bound's
// decay since then, fitted as bound ~ it^-a (a measured 0.85-1.75 on noisy photos),
// reaches tol, predicted a little early (a x 1.25). At least check_every later; at
// most it / 2 later below iteration 100 and it / 10 from there (the fixed
// schedule's spacing: long solves' decay is irregular, with restarts, and a wider
// step overshot by up to 20 % in measurements); the fixed spacing
// (core::tvnd::next_check) when there is nothing to fit: the first check, a bound
// that did not fall (after a momentum restart), or tol 0.
inline int64_t next_check_predicted(int64_t it, int64_t check_every, int64_t prev_it,
                                    double prev_bound, double bound, double tol) {
  if (prev_it <= 0 || !(tol > 0.0) || !(bound > tol) || !(prev_bound > bound) ||
      !std::isfinite(prev_bound))
    return core::tvnd::next_check(it, check_every);
  double a = std::log(prev_bound / bound) / std::log(double(it) / double(prev_it));
  a = std::min(std::max(1.25 * a, 0.5), 4.0);
  const double at = double(it) * std::pow(bound / tol, 1.0 / a);
  const int64_t step = it < 100 ? it / 2 : it / 10;
  const double lo = double(it + check_every), hi = double(it + std::max(check_every, step));
  return int64_t(std::ceil(std::min(std::max(at, lo), hi)));
}

// A solve's state at a check, to go on with another dual state type (float32 ->
// float64, TvNdOptions::f32_until).
struct StateHandoff {
  std::vector<double> p, q;
  double t = 1.0;
  int64_t it = 0;  // the check it was taken at (0: none); also the last check's
  int64_t check_at = 0;
  double prev_bound = 0.0;  // that check's plain bound
  MergePolicy policy;
  bool active() const { return it > 0; }
};

// Solves one problem. With `handoff` (a float32 state and o.f32_until > 0), it stops
// at the first check whose plain bound is <= o.f32_until x max(w) but above tol and
// leaves the state there (handoff->active()) instead of writing y; with `resume`, it
// goes on from such a state.
template <class Par, typename T, typename S, int ND, bool ISO>
void solve_problem(const Geometry& g, const T* x, const T* w, bool w_map, T* y_out,
                   double* info, const TvNdOptions& o, bool split,
                   StateHandoff* handoff = nullptr, const StateHandoff* resume = nullptr) {
  const int64_t C = g.channels, n = g.n, W = g.w, lines = g.lines, entries = C * n;
  if (!problem_ok(x, entries, w, w_map ? n : 1)) {
    for (int64_t i = 0; i < entries; ++i) y_out[i] = std::numeric_limits<T>::quiet_NaN();
    info[0] = 0.0;
    info[1] = std::numeric_limits<double>::quiet_NaN();
    info[2] = 0.0;
    return;
  }
  StateArray<S> p(size_t(ND * entries)), q(size_t(ND * entries));
  // One thread: the residual runs a slab ahead of the update (sweep_fused) in a
  // ring of the outermost axis's slab plus one line; threads split over lines:
  // the whole residual first.
  const int64_t ring = split ? lines : (ND >= 2 ? g.line_step[0] : 0) + 1;
  StateArray<S> r(static_cast<size_t>(C * ring * (W + 1)));
  StateArray<double> y(static_cast<size_t>(C * lines * (W + 1)));
  StateArray<double> s(static_cast<size_t>(n));
  const std::vector<S> zero(static_cast<size_t>(W), S(0));
  Problem<T, S> P{x, w, w_map, p.data(), q.data(), r.data(), y.data(), s.data(), ring};
  const S inv_l = S(1.0 / core::tvnd::lipschitz(ND));
  const int64_t grain = line_grain(W);
  // Every array starts at zero, as value-initialised vectors did; line l's parts
  // in the thread that sweeps line l (the ring of one thread's fused sweep, in full).
  if (!split) zero_values(r.data(), 0, int64_t(r.size()));
  for_lines<Par>(split, lines, grain, [&](int64_t l) {
    for (int64_t k = 0; k < ND * C; ++k) {
      zero_values(p.data(), k * n + l * W, W);
      zero_values(q.data(), k * n + l * W, W);
    }
    for (int64_t c = 0; c < C; ++c) {
      if (split) zero_values(r.data(), (c * ring + l) * (W + 1), W + 1);
      zero_values(y.data(), (c * lines + l) * (W + 1), W + 1);
    }
    zero_values(s.data(), l * W, W);
  });
  std::vector<S> n2_seq(static_cast<size_t>(W)), sc_seq(static_cast<size_t>(W));
  double t = 1.0;
  int64_t check_at = o.check_every;
  int64_t prev_check = 0;  // the last certificate's iteration and bound (adaptive)
  double prev_bound = 0.0;
  MergeWork mw;
  const bool merge_ok = o.merge_flat && merge_fits(n);
  MergePolicy policy = MergePolicy::for_norm(ISO);
  int64_t it0 = 1;
  if (resume) {
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] = S(resume->p[i]);
      q[i] = S(resume->q[i]);
    }
    t = resume->t;
    it0 = resume->it + 1;
    check_at = resume->check_at;
    prev_check = resume->it;
    prev_bound = resume->prev_bound;
    policy = resume->policy;
  }
  double switch_at = -1.0;  // plain bound at which the state hands off (< 0: never)
  if (handoff && o.f32_until > 0.0) {
    double wmax = 0.0;
    for (int64_t i = 0; i < (w_map ? n : 1); ++i) wmax = std::max(wmax, double(w[i]));
    switch_at = o.f32_until * wmax;
  }
  for (int64_t it = it0; it <= o.max_iter; ++it) {
    const double tn = core::tvnd::next_t(t);
    const S beta = S((t - 1.0) / tn);
    t = tn;
    double dot = 0.0;
    if (split) {
      for_lines<Par>(true, lines, grain, [&](int64_t l) {
        core::tvnd::residual_line<T, S, ND>(g, P, l, zero.data());
      });
      // The update sweep, and the restart test's <q - p+, p+ - p> (O'Donoghue &
      // Candes 2015, gradient scheme): momentum starts over (t = 1) when it is > 0.
      dot = Par::reduce(
          0, lines, grain, 0.0,
          [&](int64_t b, int64_t e, double acc) {
            std::vector<S> n2(static_cast<size_t>(ISO ? W : 0)),
                sc(static_cast<size_t>(ISO ? W : 0));
            for (int64_t l = b; l < e; ++l)
              core::tvnd::update_line<T, S, ND, ISO>(g, P, l, inv_l, beta, n2.data(), sc.data(),
                                                     &acc);
            return acc;
          },
          [](double a, double b) { return a + b; });
    } else {
      // One sweep: the residual of line l + ahead (ahead = the outermost axis's
      // line step, the farthest next line an update reads) just before the update
      // of line l, which is the last to read the old q that residual needs.
      const int64_t ahead = ring - 1;
      for (int64_t l = 0; l < std::min(ahead, lines); ++l)
        core::tvnd::residual_line<T, S, ND>(g, P, l, zero.data());
      for (int64_t l = 0; l < lines; ++l) {
        if (l + ahead < lines) core::tvnd::residual_line<T, S, ND>(g, P, l + ahead, zero.data());
        core::tvnd::update_line<T, S, ND, ISO>(g, P, l, inv_l, beta, n2_seq.data(), sc_seq.data(),
                                               &dot);
      }
    }
    if (o.restart && dot > 0.0) t = 1.0;
    if (it != check_at && it != o.max_iter) continue;
    auto gap_range = [&](int64_t b, int64_t e, double acc) {
      std::vector<double> a(static_cast<size_t>(W)), c(static_cast<size_t>(W));
      for (int64_t l = b; l < e; ++l)
        acc += core::tvnd::gap_line<T, S, ND, ISO>(g, P, l, a.data(), c.data());
      return acc;
    };
    double gap = 0.0;
    if (split) {
      for_lines<Par>(true, lines, grain,
                     [&](int64_t l) { core::tvnd::cert_scale_line<T, S, ND, ISO>(g, P, l); });
      for_lines<Par>(true, lines, grain, [&](int64_t l) {
        core::tvnd::cert_y_line<T, S, ND, ISO>(g, P, l, zero.data());
      });
      gap = Par::reduce(0, lines, grain, 0.0, gap_range,
                        [](double a, double b) { return a + b; });
    } else {
      // One sweep, as the iteration's: the shrink factors and y of line l + ahead
      // (y reads the factors of its own and earlier lines), then the gap of line l
      // (it reads y of lines up to l + ahead). Same values and the same order of
      // the gap's sum as three sweeps, at about a third of the memory traffic.
      const int64_t ahead = ring - 1;
      auto scale_and_y = [&](int64_t l) {
        core::tvnd::cert_scale_line<T, S, ND, ISO>(g, P, l);
        core::tvnd::cert_y_line<T, S, ND, ISO>(g, P, l, zero.data());
      };
      for (int64_t l = 0; l < std::min(ahead, lines); ++l) scale_and_y(l);
      std::vector<double> a(static_cast<size_t>(W)), c(static_cast<size_t>(W));
      for (int64_t l = 0; l < lines; ++l) {
        if (l + ahead < lines) scale_and_y(l + ahead);
        gap += core::tvnd::gap_line<T, S, ND, ISO>(g, P, l, a.data(), c.data());
      }
    }
    const double plain = core::tvnd::rms_bound(gap, entries);
    double bound = plain;
    const MergeWork* merged = nullptr;  // the candidate whose midpoint is certified
    if (merge_ok && policy.attempt(plain, o.tol)) {
      const double bm = core::tvnd::rms_bound(
          merged_gap<Par, T, S, ND, ISO>(g, P, mw, split, grain), entries);
      policy.record(plain, bm, o.tol);
      if (bm < bound) {
        bound = bm;
        merged = &mw;
      }
    }
    const bool done = bound <= o.tol;
    // The schedule follows the plain bound, aimed at the plain bound whose merged
    // candidate should pass (tol itself without the merge).
    const double target = merge_ok ? policy.target(o.tol) : o.tol;
    check_at = o.adaptive_checks ? next_check_predicted(it, o.check_every, prev_check,
                                                        prev_bound, plain, target)
                                 : core::tvnd::next_check(it, o.check_every);
    prev_check = it;
    prev_bound = plain;
    if (handoff && !done && it != o.max_iter && plain <= switch_at) {
      handoff->p.assign(p.data(), p.data() + p.size());
      handoff->q.assign(q.data(), q.data() + q.size());
      handoff->t = t;
      handoff->it = it;
      handoff->check_at = check_at;
      handoff->prev_bound = prev_bound;
      handoff->policy = policy;
      return;
    }
    if (done || it == o.max_iter) {
      for_lines<Par>(split, lines, grain, [&](int64_t l) {
        for (int64_t c = 0; c < C; ++c) {
          const double* yl = y.data() + (c * lines + l) * (W + 1);
          T* out = y_out + c * n + l * W;
          if (merged) {
            const double* ml = merged_line(*merged, lines, W, c, l);
            for (int64_t j = 0; j < W; ++j) out[j] = T(0.5 * (yl[j] + ml[j]));
          } else {
            for (int64_t j = 0; j < W; ++j) out[j] = T(yl[j]);
          }
        }
      });
      info[0] = double(it);
      info[1] = bound;
      info[2] = done ? 1.0 : 0.0;
      return;
    }
  }
}

// B problems of geometry g, contiguous: x, y (B, C, *S); w (B, *S) when w_map,
// else (B) one weight each; info (B, 3): [iterations, RMS error bound, converged].
template <class Par, typename T, typename S, int ND, bool ISO>
void solve_batch(const Geometry& g, int64_t B, const T* xp, const T* wp, bool w_map, T* yp,
                 double* ip, const TvNdOptions& o) {
  const int64_t xs = g.channels * g.n, ws = w_map ? g.n : 1;
  // A float32 state with f32_until hands off to a float64 one near tol.
  constexpr bool kCanSwitch = std::is_same<S, float>::value;
  auto one = [&](int64_t b, bool split) {
    StateHandoff h;
    solve_problem<Par, T, S, ND, ISO>(g, xp + b * xs, wp + b * ws, w_map, yp + b * xs,
                                      ip + 3 * b, o, split,
                                      kCanSwitch && o.f32_until > 0.0 ? &h : nullptr);
    if (h.active())
      solve_problem<Par, T, double, ND, ISO>(g, xp + b * xs, wp + b * ws, w_map, yp + b * xs,
                                             ip + 3 * b, o, split, nullptr, &h);
  };
  if (B >= Par::num_threads()) {
    Par::for_range(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) one(b, false);
    });
  } else {
    for (int64_t b = 0; b < B; ++b) one(b, true);
  }
}

// solve_batch for nd in 1 .. core::tvnd::kMaxDims spatial sizes `sizes` and
// `channels` channels; false (nothing done) for another nd.
template <class Par, typename T, typename S>
bool solve_nd(int nd, bool iso, const int64_t* sizes, int channels, int64_t B, const T* xp,
              const T* wp, bool w_map, T* yp, double* ip, const TvNdOptions& o) {
  if (nd < 1 || nd > core::tvnd::kMaxDims) return false;
  const Geometry g = core::tvnd::make_geometry(nd, sizes, channels);
#define TVCLI_ND_CASE(N)                                                 \
  case N:                                                                \
    if (iso)                                                             \
      solve_batch<Par, T, S, N, true>(g, B, xp, wp, w_map, yp, ip, o);   \
    else                                                                 \
      solve_batch<Par, T, S, N, false>(g, B, xp, wp, w_map, yp, ip, o);  \
    return true;
  switch (nd) {
    TVCLI_ND_CASE(1)
    TVCLI_ND_CASE(2)
    TVCLI_ND_CASE(3)
    TVCLI_ND_CASE(4)
    default:
      return false;
  }
#undef TVCLI_ND_CASE
}

}  // namespace tvnd_driver
}  // namespace tvcli
