// Per-thread bodies of the 2-D CUDA kernels (tv2d_kernels.cu), torch-free and
// host/device, calling the same csrc/core functions as the CPU engine.
//
// Two ways to cover a batch of (h, w) images, both built from the same
// per-line / per-element bodies below:
//
// * fused (one block per image, grid-stride over images): the image's state
//   lives in the block's shared memory, and a block runs the whole operator -- K Dykstra
//   iterations forward, or their backward -- in one launch. Phases (load, row
//   pass, column pass, store) are separated by block barriers; inside a phase,
//   thread t of the block takes lines t, t + blockDim, ... The phase sequence
//   is written once (dykstra_forward_block, dykstra_backward_block) over a
//   `Par` policy: on the device Par runs the phase for this thread then
//   __syncthreads(); the CPU grid emulator (csrc/testing.cpp) runs it for every
//   thread of the block in turn, which is the same thing for code whose only
//   communication between threads is through the barriers.
// * lines (one launch per phase, thread per (image, line) over the whole
//   batch): for images whose state does not fit in shared memory, where one
//   block per image would leave the GPU idle (one 4096 x 4096 photo).
//
// State per image is kept in the accumulator type A (double; float as an
// option for float32 inputs, see docs/gpu.md), row-major with row pitch
// `pitch` >= w: an odd pitch in shared memory keeps the threads of a row pass
// (each walking its own row) on different banks. Signs and images in global
// memory are contiguous (pitch w).
//
// Arithmetic equals the CPU's per element: the row pass computes
// S = Y + P, Z = prox(S), P = S - Z with the same core::tv1d_direct<A, A> as
// core::tv2d_dykstra_forward (Condat's solver, the paper-mode default), the
// backward runs core::run_means_lines (the per-line loop the CPU uses for
// leftover lines) on one line per thread; only dL/dlam is summed in another
// order (per line, then per image).
#pragma once

#include <math.h>

#include "../core/tv1d_direct.h"
#include "../core/tv2d_dykstra.h"
#include "../core/tv2d_regions.h"
#include "../core/tv_common.h"

namespace tvcli {
namespace cuda {

// ---------------------------------------------------------------- paper mode

template <typename T, typename A>
struct DykstraFwdArgs {
  const T* x;           // (batch, h, w)
  T* y;                 // (batch, h, w)
  int8_t* sgn;          // (batch, 2 iters, h, w), as the CPU op
  const T* lam;         // (batch,)
  const uint8_t* bad;   // (batch,): 1 where the image holds NaN/Inf
  A* state;             // lines path: every image's state (null when fused)
  int64_t batch, h, w, pitch, iters;
  bool sharp;           // y = 2 x - prox (core::sharpen_store) instead of the prox
};

// Elements of A per image state: Y, P, Q and a scratch line plane S.
TV_HOST_DEVICE TV_INLINE int64_t dykstra_fwd_state(int64_t h, int64_t pitch) {
  return 4 * h * pitch;
}
// Row pitch of the fused path's state in shared memory: odd, so that a row
// pass's threads (each walking its own row) fall on different banks.
TV_HOST_DEVICE TV_INLINE int64_t fused_pitch(int64_t w) { return w % 2 == 0 ? w + 1 : w; }
// Elements of A per image in the backward: gP, gQ and the run-means scratch M.
TV_HOST_DEVICE TV_INLINE int64_t dykstra_bwd_state(int64_t h, int64_t w) { return 3 * h * w; }

template <typename A>
struct FwdState {
  A* Y;
  A* P;
  A* Q;
  A* S;
};

template <typename T, typename A>
TV_HOST_DEVICE TV_INLINE FwdState<A> fwd_state(const DykstraFwdArgs<T, A>& a, A* base) {
  const int64_t plane = a.h * a.pitch;
  return {base, base + plane, base + 2 * plane, base + 3 * plane};
}

// Element k (< h w) of image b: Y = x, P = Q = 0.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_load_elem(const DykstraFwdArgs<T, A>& a, int64_t b, A* base,
                                             int64_t k) {
  if (a.bad[b]) return;
  const FwdState<A> st = fwd_state(a, base);
  const int64_t o = (k / a.w) * a.pitch + k % a.w;
  st.Y[o] = A(a.x[b * a.h * a.w + k]);
  st.P[o] = A(0);
  st.Q[o] = A(0);
}

// Row i of image b in iteration it: S = Y + P; Z = prox_row(S) (into Y); P = S - Z;
// signs of Z's jumps into plane 2 it.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_row(const DykstraFwdArgs<T, A>& a, int64_t b, A* base,
                                       int64_t i, int64_t it) {
  if (a.bad[b]) return;
  const FwdState<A> st = fwd_state(a, base);
  const int64_t w = a.w, o = i * a.pitch;
  A* S = st.S + o;
  A* Y = st.Y + o;
  A* P = st.P + o;
  for (int64_t j = 0; j < w; ++j) S[j] = Y[j] + P[j];
  core::tv1d_direct<A, A>(S, w, 1, Y, 1, A(a.lam[b]));
  int8_t* sr = a.sgn + ((b * 2 * a.iters + 2 * it) * a.h + i) * w;
  for (int64_t j = 0; j < w; ++j) {
    P[j] = S[j] - Y[j];
    sr[j] = j + 1 < w ? core::jump_sign(Y[j], Y[j + 1]) : int8_t(0);
  }
}

// Column j of image b in iteration it: S = Z + Q; Y = prox_col(S); Q = S - Y;
// signs of Y's jumps into plane 2 it + 1.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_col(const DykstraFwdArgs<T, A>& a, int64_t b, A* base,
                                       int64_t j, int64_t it) {
  if (a.bad[b]) return;
  const FwdState<A> st = fwd_state(a, base);
  const int64_t h = a.h, w = a.w, p = a.pitch;
  A* S = st.S + j;
  A* Y = st.Y + j;
  A* Q = st.Q + j;
  for (int64_t i = 0; i < h; ++i) S[i * p] = Y[i * p] + Q[i * p];
  core::tv1d_direct<A, A>(S, h, p, Y, p, A(a.lam[b]));
  int8_t* sc = a.sgn + (b * 2 * a.iters + 2 * it + 1) * h * w + j;
  for (int64_t i = 0; i < h; ++i) {
    Q[i * p] = S[i * p] - Y[i * p];
    sc[i * w] = i + 1 < h ? core::jump_sign(Y[i * p], Y[(i + 1) * p]) : int8_t(0);
  }
}

// Element k of image b: y = Y; a NaN/Inf image gives x at lam 0, else NaN, and
// all-zero signs with core::kBadImage first (as core::tv2d_dykstra_forward);
// sharp: 2 x - that (core::sharpen_store).
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_store_elem(const DykstraFwdArgs<T, A>& a, int64_t b, A* base,
                                              int64_t k) {
  const int64_t hw = a.h * a.w, o = b * hw + k;
  if (a.bad[b]) {
    const T p = A(a.lam[b]) == A(0) ? a.x[o] : T(core::quiet_nan<A>());
    a.y[o] = a.sharp ? core::sharpen_store(a.x[o], p) : p;
    for (int64_t q = 0; q < 2 * a.iters; ++q) {
      a.sgn[(b * 2 * a.iters + q) * hw + k] = q == 0 && k == 0 ? core::kBadImage : int8_t(0);
    }
    return;
  }
  const T p = T(fwd_state(a, base).Y[(k / a.w) * a.pitch + k % a.w]);
  a.y[o] = a.sharp ? core::sharpen_store(a.x[o], p) : p;
}

// One phase of a fused kernel over items 0 .. count-1 (lines or elements of
// the block's image): par(f) runs f(thread, block_dim) for every thread of the
// block, then a barrier; thread t takes items t, t + block_dim, ...
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename Par, typename F>
TV_HOST_DEVICE inline void block_phase(const Par& par, int64_t count, const F& item) {
  par([&](uint32_t t, uint32_t bd) {
    for (int64_t l = t; l < count; l += bd) item(l);
  });
}

// The fused forward of image b on one block (see block_phase for par).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename T, typename A, typename Par>
TV_HOST_DEVICE inline void dykstra_forward_block(const DykstraFwdArgs<T, A>& a, int64_t b,
                                                 A* base, const Par& par) {
  const int64_t hw = a.h * a.w;
  block_phase(par, hw, [&](int64_t k) { dykstra_load_elem(a, b, base, k); });
  for (int64_t it = 0; it < a.iters; ++it) {
    block_phase(par, a.h, [&](int64_t i) { dykstra_row(a, b, base, i, it); });
    block_phase(par, a.w, [&](int64_t j) { dykstra_col(a, b, base, j, it); });
  }
  block_phase(par, hw, [&](int64_t k) { dykstra_store_elem(a, b, base, k); });
}

template <typename T, typename A>
struct DykstraBwdArgs {
  const int8_t* sgn;  // (batch, 2 iters, h, w) from the forward
  const T* g;         // (batch, h, w) dL/dY
  T* gx;              // (batch, h, w) dL/dX
  const T* lam;       // (batch,)
  T* glam;            // (batch,) dL/dlam
  A* state;           // lines path: every image's state (null when fused)
  A* glam_rows;       // (batch, h): per-row-line dL/dlam over the iterations
  A* glam_cols;       // (batch, w)
  int64_t batch, h, w, iters;
  bool sharp;         // the backward of 2 x - prox: the prox's of -g, gx = 2 g + that
};

template <typename T, typename A>
TV_HOST_DEVICE TV_INLINE bool bwd_bad(const DykstraBwdArgs<T, A>& a, int64_t b) {
  return a.iters > 0 && a.sgn[b * 2 * a.iters * a.h * a.w] == core::kBadImage;
}

// Column line j of image b in backward iteration it (iters - 1 down to 0): as
// core::dykstra_bwd_cols on one line. State: gP, gQ, M (h w each, pitch w).
// sharp: the first pass reads -g from column j of gP (written here: gP is first
// written by the row pass after this one), A(-g) being -A(g) bit for bit.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_bwd_col(const DykstraBwdArgs<T, A>& a, int64_t b, A* base,
                                           int64_t j, int64_t it) {
  if (a.iters <= 0 || bwd_bad(a, b)) return;
  const int64_t h = a.h, w = a.w, hw = h * w;
  A* gP = base;
  A* gQ = base + hw;
  A* M = base + 2 * hw;
  const bool first = it == a.iters - 1;
  const bool identity = !(A(a.lam[b]) > A(0));
  const int8_t* sc = a.sgn + (b * 2 * a.iters + 2 * it + 1) * hw + j;
  const T* g = a.g + b * hw + j;
  A c, cnt;
  using core::LockstepIO;
  A gl;
  if (first && a.sharp) {
    for (int64_t i = 0; i < h; ++i) gP[i * w + j] = A(-g[i * w]);
    gl = core::run_means_lines<LockstepIO::kFirst, A, A>(gP + j, gQ + j, M + j, sc, h, 1, w, &c,
                                                         &cnt);
  } else {
    gl = first ? core::run_means_lines<LockstepIO::kFirst, T, A>(g, gQ + j, M + j, sc, h, 1, w,
                                                                 &c, &cnt)
               : core::run_means_lines<LockstepIO::kUpdate, A, A>(gP + j, gQ + j, M + j, sc, h,
                                                                  1, w, &c, &cnt);
  }
  if (identity) {
    for (int64_t i = 0; i < h; ++i) {
      gQ[i * w + j] = first ? (a.sharp ? gP[i * w + j] : A(g[i * w])) : gP[i * w + j];
    }
  }
  A* slot = a.glam_cols + b * w + j;
  *slot = first ? gl : *slot + gl;
}

// Row line i: as core::dykstra_bwd_rows on one line, without the transposed
// copy (one thread walks its row in place): X = gQ - gP (gQ first), gP += J X.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_bwd_row(const DykstraBwdArgs<T, A>& a, int64_t b, A* base,
                                           int64_t i, int64_t it) {
  if (a.iters <= 0 || bwd_bad(a, b)) return;
  const int64_t w = a.w, hw = a.h * w, o = i * w;
  A* gP = base;
  A* gQ = base + hw;
  A* M = base + 2 * hw;
  const bool first = it == a.iters - 1;
  const bool identity = !(A(a.lam[b]) > A(0));
  const int8_t* sr = a.sgn + (b * 2 * a.iters + 2 * it) * hw + o;
  A c, cnt;
  using core::LockstepIO;
  const A gl = first ? core::run_means_lines<LockstepIO::kFirst, A, A>(gQ + o, gP + o, M + o,
                                                                       sr, w, 1, 1, &c, &cnt)
                     : core::run_means_lines<LockstepIO::kUpdate, A, A>(gQ + o, gP + o, M + o,
                                                                        sr, w, 1, 1, &c, &cnt);
  if (identity) {
    for (int64_t j = 0; j < w; ++j) gP[o + j] = gQ[o + j];
  }
  A* slot = a.glam_rows + b * a.h + i;
  *slot = first ? gl : *slot + gl;
}

// Element k of image b: dL/dX = gP (g itself for K = 0, NaN for a bad image);
// sharp: 2 g + that (core::sharpen_grad; -g for K = 0).
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_bwd_store_elem(const DykstraBwdArgs<T, A>& a, int64_t b,
                                                  A* base, int64_t k) {
  const int64_t o = b * a.h * a.w + k;
  T r;
  if (bwd_bad(a, b)) {
    r = T(core::quiet_nan<A>());
  } else if (a.iters <= 0) {
    r = a.sharp ? T(-a.g[o]) : a.g[o];
  } else {
    r = T(base[k]);
  }
  a.gx[o] = a.sharp ? core::sharpen_grad(a.g[o], r) : r;
}

// dL/dlam of image b: its lines' sums, rows then columns.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_bwd_glam(const DykstraBwdArgs<T, A>& a, int64_t b) {
  if (bwd_bad(a, b)) {
    a.glam[b] = T(core::quiet_nan<A>());
    return;
  }
  A s = A(0);
  if (a.iters > 0) {
    for (int64_t i = 0; i < a.h; ++i) s += a.glam_rows[b * a.h + i];
    for (int64_t j = 0; j < a.w; ++j) s += a.glam_cols[b * a.w + j];
  }
  a.glam[b] = T(s);
}

#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename T, typename A, typename Par>
TV_HOST_DEVICE inline void dykstra_backward_block(const DykstraBwdArgs<T, A>& a, int64_t b,
                                                  A* base, const Par& par) {
  const int64_t hw = a.h * a.w;
  for (int64_t it = a.iters - 1; it >= 0; --it) {
    block_phase(par, a.w, [&](int64_t j) { dykstra_bwd_col(a, b, base, j, it); });
    block_phase(par, a.h, [&](int64_t i) { dykstra_bwd_row(a, b, base, i, it); });
  }
  par([&](uint32_t t, uint32_t bd) {
    for (int64_t k = t; k < hw; k += bd) dykstra_bwd_store_elem(a, b, base, k);
    if (t == 0) dykstra_bwd_glam(a, b);
  });
}

// Lines path: global thread g of `threads` takes items g, g + threads, ... of
// `count` (item -> (image, line) or (image, element) by division).
TV_HOST_DEVICE TV_INLINE int64_t global_thread(uint32_t block, uint32_t block_dim,
                                               uint32_t thread) {
  return static_cast<int64_t>(block) * block_dim + thread;
}

// Items per image of one launch of the forward's lines path. kind: 0 load
// (elements), 1 rows, 2 columns, 3 store (elements).
template <typename T, typename A>
TV_HOST_DEVICE TV_INLINE int64_t lines_items(const DykstraFwdArgs<T, A>& a, int kind) {
  return kind == 1 ? a.h : (kind == 2 ? a.w : a.h * a.w);
}

// The forward's lines path, shared by its launcher (tv2d_kernels.cu) and the CPU
// emulator: launch(kind, it) runs one launch over the batch.
template <typename T, typename A, typename Launch>
inline void lines_passes(const DykstraFwdArgs<T, A>& a, Launch&& launch) {
  launch(0, 0);
  for (int64_t it = 0; it < a.iters; ++it) {
    launch(1, it);
    launch(2, it);
  }
  launch(3, 0);
}

// One launch of the forward's lines path (kind: see lines_items); image b's
// state at a.state + b * its size.
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_forward_lines_thread(const DykstraFwdArgs<T, A>& a, int kind,
                                                        int64_t it, uint32_t block,
                                                        uint32_t block_dim, uint32_t thread,
                                                        uint32_t grid_dim) {
  // per = lines_items(a, kind), spelled out: through the call ptxas allocated
  // more registers here (sm_90: 94 -> 118 for double state).
  const int64_t size = dykstra_fwd_state(a.h, a.pitch), hw = a.h * a.w;
  const int64_t per = kind == 1 ? a.h : (kind == 2 ? a.w : hw);
  const int64_t count = a.batch * per, step = static_cast<int64_t>(grid_dim) * block_dim;
  for (int64_t s = global_thread(block, block_dim, thread); s < count; s += step) {
    const int64_t b = s / per, l = s % per;
    A* base = a.state + b * size;
    if (kind == 0) dykstra_load_elem(a, b, base, l);
    if (kind == 1) dykstra_row(a, b, base, l, it);
    if (kind == 2) dykstra_col(a, b, base, l, it);
    if (kind == 3) dykstra_store_elem(a, b, base, l);
  }
}

// Items per image of one launch of the backward's lines path. kind: 1 rows,
// 2 columns, 3 store gx (elements), 4 dL/dlam (images).
template <typename T, typename A>
TV_HOST_DEVICE TV_INLINE int64_t lines_items(const DykstraBwdArgs<T, A>& a, int kind) {
  return kind == 1 ? a.h : (kind == 2 ? a.w : (kind == 3 ? a.h * a.w : 1));
}

// The backward's lines path (as the forward's): columns then rows of every
// iteration, last to first, then gx and dL/dlam.
template <typename T, typename A, typename Launch>
inline void lines_passes(const DykstraBwdArgs<T, A>& a, Launch&& launch) {
  for (int64_t it = a.iters - 1; it >= 0; --it) {
    launch(2, it);
    launch(1, it);
  }
  launch(3, 0);
  launch(4, 0);
}

// One launch of the backward's lines path (kind: see lines_items).
template <typename T, typename A>
TV_HOST_DEVICE inline void dykstra_backward_lines_thread(const DykstraBwdArgs<T, A>& a,
                                                         int kind, int64_t it, uint32_t block,
                                                         uint32_t block_dim, uint32_t thread,
                                                         uint32_t grid_dim) {
  // per = lines_items(a, kind), spelled out as in the forward.
  const int64_t size = dykstra_bwd_state(a.h, a.w), hw = a.h * a.w;
  const int64_t per = kind == 1 ? a.h : (kind == 2 ? a.w : (kind == 3 ? hw : 1));
  const int64_t count = a.batch * per, step = static_cast<int64_t>(grid_dim) * block_dim;
  for (int64_t s = global_thread(block, block_dim, thread); s < count; s += step) {
    const int64_t b = s / per, l = s % per;
    A* base = a.state + b * size;
    if (kind == 1) dykstra_bwd_row(a, b, base, l, it);
    if (kind == 2) dykstra_bwd_col(a, b, base, l, it);
    if (kind == 3) dykstra_bwd_store_elem(a, b, base, l);
    if (kind == 4) dykstra_bwd_glam(a, b);
  }
}

// ---------------------------------------------------------------- converged mode
//
// FISTA on the dual (csrc/cpu/tv2d_cpu.cpp explains the method), all state in
// double, every image of the batch in the same launches; an image stops (its
// `active` flag drops) at the first check whose certified bound is <= tol, as
// on the CPU. The 1-D passes use Condat's solver (the CPU uses the DP solver
// here: both exact, their roundings differ; the stopping rule is the same).

struct FistaArgs {
  const double* x;  // (batch, h, w)
  double* v;
  double* w;
  double* z;
  double* u;        // scratch plane
  const double* lam;  // (batch,)
  uint8_t* active;    // (batch,)
  double* info;       // (batch, 3): iterations, bound, converged
  double* row_gap;    // (batch, h)
  int64_t batch, h, wd;
};

// lam = 0 (or one pixel): identity. lam NaN / negative (a device lam tensor is
// not checked on the host, tvcli/prox.py): not solved, NaN out.
TV_HOST_DEVICE inline void fista_init_image(const FistaArgs& a, int64_t b) {
  const bool act = a.lam[b] > 0.0 && a.h * a.wd > 1;
  a.active[b] = act ? 1 : 0;
  a.info[b * 3] = 0.0;
  a.info[b * 3 + 1] = 0.0;
  a.info[b * 3 + 2] = act ? 0.0 : 1.0;
}

// Row s = b h + i: z = w + prox_row(x - w).
TV_HOST_DEVICE inline void fista_row(const FistaArgs& a, int64_t s) {
  const int64_t b = s / a.h;
  if (!a.active[b]) return;
  const int64_t W = a.wd, o = s * W;
  for (int64_t j = 0; j < W; ++j) a.u[o + j] = a.x[o + j] - a.w[o + j];
  core::tv1d_direct<double, double>(a.u + o, W, 1, a.z + o, 1, a.lam[b]);
  for (int64_t j = 0; j < W; ++j) a.z[o + j] = a.w[o + j] + a.z[o + j];
}

// Column s = b w + j: v+ = z - prox_col(z); w = v+ + beta (v+ - v); v = v+.
TV_HOST_DEVICE inline void fista_col(const FistaArgs& a, int64_t s, double beta) {
  const int64_t b = s / a.wd;
  if (!a.active[b]) return;
  const int64_t W = a.wd, H = a.h, o = b * H * W + s % W;
  core::tv1d_direct<double, double>(a.z + o, H, W, a.u + o, W, a.lam[b]);
  for (int64_t i = 0; i < H; ++i) {
    const int64_t k = o + i * W;
    const double vn = a.z[k] - a.u[k];
    a.w[k] = vn + beta * (vn - a.v[k]);
    a.v[k] = vn;
  }
}

// Row s's share of the duality gap, y = z - v: lam TV(y) + <y, y - x> (as the CPU).
TV_HOST_DEVICE inline void fista_gap_row(const FistaArgs& a, int64_t s) {
  const int64_t b = s / a.h, r = s % a.h;
  if (!a.active[b]) return;
  const int64_t W = a.wd, o = s * W;
  double tv = 0.0, inner = 0.0;
  for (int64_t j = 0; j < W; ++j) {
    const double y = a.z[o + j] - a.v[o + j];
    inner += y * (y - a.x[o + j]);
    if (j + 1 < W) tv += fabs(a.z[o + j + 1] - a.v[o + j + 1] - y);
    if (r + 1 < a.h) tv += fabs(a.z[o + j + W] - a.v[o + j + W] - y);
  }
  a.row_gap[s] = a.lam[b] * tv + inner;
}

// Image b after iteration it: count it; on a check, the bound and the stop.
TV_HOST_DEVICE inline void fista_check_image(const FistaArgs& a, int64_t b, int64_t it,
                                             bool check, double tol) {
  if (!a.active[b]) return;
  a.info[b * 3] = double(it);
  if (!check) return;
  double gap = 0.0;
  for (int64_t r = 0; r < a.h; ++r) gap += a.row_gap[b * a.h + r];
  const double bound = core::certified_rms(gap, a.h * a.wd);
  a.info[b * 3 + 1] = bound;
  if (bound <= tol) {
    a.active[b] = 0;
    a.info[b * 3 + 2] = 1.0;
  }
}

// Element k of the batch: y = z - v, x for identity images, NaN for a bad lam.
TV_HOST_DEVICE inline void fista_store_elem(const FistaArgs& a, int64_t k, double* y) {
  const int64_t hw = a.h * a.wd, b = k / hw;
  const double lam = a.lam[b];
  if (lam == 0.0 || hw <= 1) {
    y[k] = a.x[k];
  } else {
    y[k] = lam > 0.0 ? a.z[k] - a.v[k] : core::quiet_nan<double>();
  }
}

// One launch of converged mode. kind: -1 init (images), 0 rows, 1 columns,
// 2 gap rows, 3 check (images).
TV_HOST_DEVICE inline void fista_thread(const FistaArgs& a, int kind, int64_t it, bool check,
                                        double beta, double tol, uint32_t block,
                                        uint32_t block_dim, uint32_t thread, uint32_t grid_dim) {
  const int64_t per = kind == 0 || kind == 2 ? a.h : (kind == 1 ? a.wd : 1);
  const int64_t count = a.batch * per, step = static_cast<int64_t>(grid_dim) * block_dim;
  for (int64_t s = global_thread(block, block_dim, thread); s < count; s += step) {
    if (kind == -1) fista_init_image(a, s);
    if (kind == 0) fista_row(a, s);
    if (kind == 1) fista_col(a, s, beta);
    if (kind == 2) fista_gap_row(a, s);
    if (kind == 3) fista_check_image(a, s, it, check, tol);
  }
}

TV_HOST_DEVICE inline void fista_store_thread(const FistaArgs& a, double* y, uint32_t block,
                                              uint32_t block_dim, uint32_t thread,
                                              uint32_t grid_dim) {
  const int64_t count = a.batch * a.h * a.wd, step = static_cast<int64_t>(grid_dim) * block_dim;
  for (int64_t k = global_thread(block, block_dim, thread); k < count; k += step) {
    fista_store_elem(a, k, y);
  }
}

// The iteration loop, shared by the CUDA glue and the CPU emulator: `launch`
// runs one phase over the batch ("row", "col", "gap", "check"), `any_active`
// reads back whether an image is still running (a host sync on the GPU, done
// every `sync_every` checks only; images that stopped cost nothing meanwhile).
template <typename Launch, typename AnyActive>
inline void fista_loop(int64_t max_iter, int64_t check_every, int64_t sync_every,
                       Launch&& launch, AnyActive&& any_active) {
  double t = 1.0;
  int64_t checks = 0;
  for (int64_t it = 1; it <= max_iter; ++it) {
    launch(0, it, false, 0.0);  // rows
    const double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
    const double beta = (t - 1.0) / tn;
    t = tn;
    launch(1, it, false, beta);  // columns
    const bool check = it % check_every == 0 || it == max_iter;
    if (check) launch(2, it, true, 0.0);  // gap per row
    launch(3, it, check, 0.0);            // per image: count, bound, stop
    if (check && ++checks % sync_every == 0 && !any_active()) break;
  }
}

// ---------------------------------------------------------------- region backward

// One image per thread (images t, t + threads, ...), with workspace slot t:
// parent (h w int32) and sum / count / bsign (h w doubles each).
template <typename T>
struct RegionBwdArgs {
  const T* y;
  const T* g;
  T* gx;
  const T* lam;
  T* glam;
  int32_t* parent;  // slots x h w
  double* acc;      // slots x 3 h w
  int64_t batch, h, w, slots;
  double region_tol;
};

template <typename T>
TV_HOST_DEVICE inline void region_backward_thread(const RegionBwdArgs<T>& a, int64_t thread,
                                                  int64_t threads) {
  const int64_t hw = a.h * a.w;
  if (thread >= a.slots) return;
  int32_t* parent = a.parent + thread * hw;
  double* sum = a.acc + thread * 3 * hw;
  const int64_t step = threads < a.slots ? threads : a.slots;
  for (int64_t b = thread; b < a.batch; b += step) {
    const bool identity = !(double(a.lam[b]) > 0.0);
    a.glam[b] = T(core::tv2d_region_backward<T>(a.y + b * hw, a.g + b * hw, a.gx + b * hw, a.h,
                                                a.w, identity ? 0.0 : a.region_tol, identity,
                                                parent, sum, sum + hw, sum + 2 * hw));
  }
}

}  // namespace cuda
}  // namespace tvcli
