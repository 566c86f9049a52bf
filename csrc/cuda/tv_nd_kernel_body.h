// Thread bodies of the n-D TV prox's CUDA kernels (tv_nd_kernels.cu) and the
// launch sequence the CUDA glue (tv_nd_cuda.cpp) and the CPU grid emulator
// (csrc/testing_tv_nd.cpp) share. Torch-free, host and device.
//
// One thread per pixel of one problem: a launch has blockIdx.y over problems
// (grid-stride) and blockIdx.x * blockDim.x + threadIdx.x over the problem's
// pixels (grid-stride), so that a block's partial sum (restart test, gap) belongs
// to one problem and needs one atomicAdd. Per-problem phases run one thread per
// problem. The arithmetic is csrc/core/tv_nd_fgp.h's per-pixel twins, which round
// like the CPU op's line sweeps: y equals the CPU op's bit for bit whenever the
// sums (restart test, gap: other order) take the same decisions.
#pragma once

#include "../core/tv_nd_fgp.h"

namespace tvcli {
namespace cuda {
namespace tvnd {

using core::tvnd::Geometry;
using core::tvnd::Problem;

// Problem states (NdArgs::state).
constexpr uint8_t kRunning = 1;
constexpr uint8_t kFinishing = 2;  // stopped at this check: store y, then done
constexpr uint8_t kBad = 3;        // non-finite x or bad w: NaN, then done
constexpr uint8_t kDone = 0;

// Phases, in launch order (tv_nd_loop). "px": one thread per pixel; "pb": one
// thread per problem.
enum Phase : int {
  kInit = 0,      // pb: state, t, sums
  kValidate = 1,  // px: a non-finite x or a negative / non-finite w marks kBad
  kNanStore = 2,  // px: y = NaN for kBad
  kSettle = 3,    // pb: kBad -> info [0, NaN, 0], kDone
  kResidual = 4,  // px: r = x - D^T q
  kUpdate = 5,    // px: p, q; sums <q - p+, p+ - p> into dot
  kAdvance = 6,   // pb: t (restart when dot > 0); kFinishing -> kDone
  kScale = 7,     // px: certificate shrink factors / weights
  kCertY = 8,     // px: y = x - D^T p~
  kGap = 9,       // px: gap terms into gap
  kCheck = 10,    // pb: bound; stop -> kFinishing, info
  kStore = 11,    // px: y_out = y for kFinishing
};

TV_HOST_DEVICE TV_INLINE bool per_pixel(int phase) {
  return phase == kValidate || phase == kNanStore || phase == kResidual || phase == kUpdate ||
         phase == kScale || phase == kCertY || phase == kGap || phase == kStore;
}

// Batch-major buffers: problem b's slice of each starts at b times its size.
template <typename T, typename S>
struct NdArgs {
  Geometry g;
  int64_t batch;
  const T* x;  // (B, C, n)
  const T* w;  // (B, n) or (B, 1)
  bool w_map;
  bool iso;
  bool restart;
  S* p;        // (B, nd, C, n), zeros
  S* q;        // (B, nd, C, n), zeros
  S* r;        // (B, C, lines, w + 1)
  double* y;   // (B, C, lines, w + 1)
  double* s;   // (B, n)
  double* t;    // (B,) FISTA's t
  double* dot;  // (B,) restart test sums
  double* gap;  // (B,) gap sums
  double* info;  // (B, 3) iterations, bound, converged
  uint8_t* state;  // (B,)
  int* running;    // problems not yet done (the caller sets it to batch)
  T* out;          // (B, C, n)
  double tol;
  int64_t max_iter;
  S inv_l;
};

template <typename T, typename S>
TV_HOST_DEVICE TV_INLINE Problem<T, S> problem_of(const NdArgs<T, S>& a, int64_t b) {
  const Geometry& g = a.g;
  const int64_t cn = g.channels * g.n, lp = g.channels * g.lines * (g.w + 1);
  return Problem<T, S>{a.x + b * cn,
                       a.w + (a.w_map ? b * g.n : b),
                       a.w_map,
                       a.p + b * g.nd * cn,
                       a.q + b * g.nd * cn,
                       a.r + b * lp,
                       a.y + b * lp,
                       a.s + b * g.n,
                       g.lines};
}

// Whether problem b takes part in a per-pixel phase.
template <typename T, typename S>
TV_HOST_DEVICE TV_INLINE bool takes_part(const NdArgs<T, S>& a, int phase, int64_t b) {
  const uint8_t st = a.state[b];
  switch (phase) {
    case kValidate:
      return st == kRunning;
    case kNanStore:
      return st == kBad;
    case kStore:
      return st == kFinishing;
    default:
      return st == kRunning;
  }
}

// Pixel i of problem b in a per-pixel phase; returns its share of the phase's
// per-problem sum (kUpdate: restart test; kGap: gap), else 0.
template <typename T, typename S, bool ISO>
TV_HOST_DEVICE TV_INLINE double pixel_body(const NdArgs<T, S>& a, int phase, int64_t b, int64_t i,
                                           int64_t it) {
  const Geometry& g = a.g;
  const Problem<T, S> P = problem_of(a, b);
  switch (phase) {
    case kValidate: {
      bool ok = true;
      for (int64_t c = 0; c < g.channels; ++c) ok = ok && core::is_finite(P.x[c * g.n + i]);
      if (a.w_map || i == 0) {
        const T wi = P.w[a.w_map ? i : 0];
        ok = ok && core::is_finite(wi) && wi >= T(0);
      }
      if (!ok) a.state[b] = kBad;  // every writer writes the same value
      return 0.0;
    }
    case kNanStore:
      for (int64_t c = 0; c < g.channels; ++c)
        a.out[b * g.channels * g.n + c * g.n + i] = core::quiet_nan<T>();
      return 0.0;
    case kResidual:
      core::tvnd::residual_at(g, P, i);
      return 0.0;
    case kUpdate: {
      const double t = a.t[b];
      const S beta = S((t - 1.0) / core::tvnd::next_t(t));
      return core::tvnd::update_at<T, S, ISO>(g, P, i, a.inv_l, beta);
    }
    case kScale:
      core::tvnd::cert_scale_at<T, S, ISO>(g, P, i);
      return 0.0;
    case kCertY:
      core::tvnd::cert_y_at<T, S, ISO>(g, P, i);
      return 0.0;
    case kGap:
      return core::tvnd::gap_at<T, S, ISO>(g, P, i);
    case kStore: {
      const int64_t l = i / g.w, j = i - l * g.w;
      for (int64_t c = 0; c < g.channels; ++c)
        a.out[b * g.channels * g.n + c * g.n + i] = T(P.y[(c * g.lines + l) * (g.w + 1) + j]);
      return 0.0;
    }
    default:
      (void)it;
      return 0.0;
  }
}

// Adds a block's sum of a per-pixel phase to problem b's accumulator.
template <typename T, typename S>
TV_HOST_DEVICE TV_INLINE double* sum_target(const NdArgs<T, S>& a, int phase, int64_t b) {
  if (phase == kUpdate) return a.dot + b;
  if (phase == kGap) return a.gap + b;
  return nullptr;
}

// running -= 1: atomic on the device (problems of one launch finish together);
// the emulator runs one thread at a time.
TV_HOST_DEVICE TV_INLINE void one_less(int* running) {
#if defined(__CUDA_ARCH__)
  atomicSub(running, 1);
#else
  *running -= 1;
#endif
}

// Problem b in a per-problem phase at iteration it.
template <typename T, typename S>
TV_HOST_DEVICE TV_INLINE void problem_body(const NdArgs<T, S>& a, int phase, int64_t b,
                                           int64_t it) {
  uint8_t& st = a.state[b];
  switch (phase) {
    case kInit:
      st = kRunning;
      a.t[b] = 1.0;
      a.dot[b] = 0.0;
      a.gap[b] = 0.0;
      return;
    case kSettle:
      if (st == kBad) {
        a.info[3 * b] = 0.0;
        a.info[3 * b + 1] = core::quiet_nan<double>();
        a.info[3 * b + 2] = 0.0;
        st = kDone;
        one_less(a.running);
      }
      return;
    case kAdvance:
      if (st == kFinishing) {
        st = kDone;
      } else if (st == kRunning) {
        const double tn = core::tvnd::next_t(a.t[b]);
        a.t[b] = (a.restart && a.dot[b] > 0.0) ? 1.0 : tn;
      }
      a.dot[b] = 0.0;
      return;
    case kCheck: {
      if (st != kRunning) return;
      const double bound = core::tvnd::rms_bound(a.gap[b], a.g.channels * a.g.n);
      a.gap[b] = 0.0;
      const bool done = bound <= a.tol;
      if (done || it == a.max_iter) {
        a.info[3 * b] = double(it);
        a.info[3 * b + 1] = bound;
        a.info[3 * b + 2] = done ? 1.0 : 0.0;
        st = kFinishing;
        one_less(a.running);
      }
      return;
    }
    default:
      return;
  }
}

// Launch sequence: launch(phase, it) enqueues one phase; running() reads how
// many problems are not done (a device sync in the glue; called every
// sync_every checks and after the last).
template <typename Launch, typename Running>
void tv_nd_loop(int64_t max_iter, int64_t check_every, int64_t sync_every, const Launch& launch,
                const Running& running) {
  launch(kInit, 0);
  launch(kValidate, 0);
  launch(kNanStore, 0);
  launch(kSettle, 0);
  int64_t check_at = check_every, checks = 0;
  for (int64_t it = 1; it <= max_iter; ++it) {
    launch(kResidual, it);
    launch(kUpdate, it);
    launch(kAdvance, it);
    if (it != check_at && it != max_iter) continue;
    check_at = core::tvnd::next_check(it, check_every);
    launch(kScale, it);
    launch(kCertY, it);
    launch(kGap, it);
    launch(kCheck, it);
    launch(kStore, it);
    if (++checks % sync_every == 0 && running() == 0) return;
  }
}

}  // namespace tvnd
}  // namespace cuda
}  // namespace tvcli
