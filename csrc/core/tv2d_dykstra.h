// Proximal Dykstra for the 2-D anisotropic TV prox (Yeh et al. 2022, Alg. 1) on
// one contiguous H x W image, with the exact backward of the K unrolled iterations.
//
//   Y = X, P = Q = 0;  repeat K times:
//     A = Y + P;  Z = prox_rows(A);  P = A - Z
//     B = Z + Q;  Y = prox_cols(B);  Q = B - Y
//
// The forward keeps Y, P, Q, Z of one image in a workspace (small images stay in
// cache, so a layer's many channels cost no memory traffic between passes) and
// records, for every pass, the sign of each jump of its output (int8, 0 inside a
// constant run). That is all the backward needs: the Jacobian of a 1-D prox is the
// average over the output's runs, and its lam-derivative uses the jump signs
// (DESIGN.md section 3), so the backward needs neither the iterates nor a replay.
#pragma once

#include "tv1d_direct.h"
#include "tv1d_dp.h"
#include "tv_common.h"

namespace tvcli {
namespace core {

// Which exact 1-D solver runs the inner passes of the 2-D loops. Condat's is
// faster on rough lines (noise-like feature maps: ~2x), the DP on long smooth
// ones (2-D iterates of photos: ~1.5x); callers pick per use (tv2d_cpu.cpp).
enum class LineSolver { kCondat, kDP };

template <typename A>
TV_HOST_DEVICE TV_INLINE void tv1d_line(const A* in, int64_t n, A lam, A* out, A* ws,
                                        LineSolver solver) {
  if (solver == LineSolver::kDP) {
    tv1d_dp_solve<A>(in, n, lam, out, ws);
  } else {
    tv1d_direct<A, A>(in, n, 1, out, 1, lam);
  }
}

// Doubles of workspace for tv2d_dykstra_forward / _backward on an h x w image.
TV_HOST_DEVICE TV_INLINE int64_t tv2d_dykstra_workspace(int64_t h, int64_t w) {
  const int64_t n = h > w ? h : w;
  return 4 * h * w + 2 * n + tv1d_dp_workspace(n);
}

// Backward of one 1-D prox on a contiguous line: out = run-mean of g (runs where
// sign == 0), returns this line's dL/dlam = sum over runs of (s_right - s_left) * mean.
// identity (lam == 0): out = g.
template <typename A>
TV_HOST_DEVICE inline A tv1d_backward_from_signs(const int8_t* sgn, int64_t ss, const A* g,
                                                 A* out, int64_t n, bool identity) {
  A glam = A(0), left = A(0);
  int64_t start = 0;
  while (start < n) {
    int64_t end = start;
    A sum = g[start];
    while (end + 1 < n && sgn[end * ss] == 0) sum += g[++end];
    ++end;  // run is [start, end)
    const A mean = sum / A(end - start);
    const A right = end < n ? A(sgn[(end - 1) * ss]) : A(0);
    glam += (right - left) * mean;
    left = right;
    for (int64_t i = start; i < end; ++i) out[i] = identity ? g[i] : mean;
    start = end;
  }
  return glam;
}

// Stored in the first sign of an image whose input held NaN/Inf (signs are -1..1).
constexpr int8_t kBadImage = 2;

template <typename A>
TV_HOST_DEVICE TV_INLINE int8_t jump_sign(A a, A b) {
  return int8_t((b > a) - (b < a));
}

// Forward. x, y: h*w contiguous (T); sgn: 2*K planes of h*w (plane 2k: row pass k,
// element (i, j) = sign(Z[i][j+1] - Z[i][j]); plane 2k+1: column pass k, element
// (i, j) = sign(Y[i+1][j] - Y[i][j])). lam finite >= 0; x may hold NaN/Inf.
template <typename T, typename A>
TV_HOST_DEVICE inline void tv2d_dykstra_forward(const T* x, T* y, int8_t* sgn, int64_t h,
                                                int64_t w, int64_t iters, A lam, A* ws,
                                                LineSolver solver) {
  const int64_t hw = h * w, n = h > w ? h : w;
  A* Y = ws;
  A* P = Y + hw;
  A* Q = P + hw;
  A* Z = Q + hw;
  A* in = Z + hw;
  A* out = in + n;
  A* dp = out + n;
  bool finite = true;
  for (int64_t k = 0; k < hw; ++k) {
    Y[k] = A(x[k]);
    finite = finite && is_finite(Y[k]);
    P[k] = A(0);
    Q[k] = A(0);
  }
  if (!finite) {
    // As prox_tv1d: lam == 0 keeps the image (identity), otherwise all NaN; the
    // marker kBadImage in the first sign tells the backward to return NaN.
    const T nan = T(quiet_nan<A>());
    for (int64_t k = 0; k < hw; ++k) y[k] = lam == A(0) ? x[k] : nan;
    for (int64_t k = 0; k < 2 * iters * hw; ++k) sgn[k] = 0;
    sgn[0] = kBadImage;
    return;
  }
  for (int64_t it = 0; it < iters; ++it) {
    int8_t* sr = sgn + (2 * it) * hw;
    int8_t* sc = sr + hw;
    for (int64_t i = 0; i < h; ++i) {  // rows
      const int64_t o = i * w;
      for (int64_t j = 0; j < w; ++j) in[j] = Y[o + j] + P[o + j];
      tv1d_line<A>(in, w, lam, out, dp, solver);
      for (int64_t j = 0; j < w; ++j) {
        P[o + j] = in[j] - out[j];
        Z[o + j] = out[j];
        sr[o + j] = j + 1 < w ? jump_sign(out[j], out[j + 1]) : int8_t(0);
      }
    }
    for (int64_t j = 0; j < w; ++j) {  // columns
      for (int64_t i = 0; i < h; ++i) in[i] = Z[i * w + j] + Q[i * w + j];
      tv1d_line<A>(in, h, lam, out, dp, solver);
      for (int64_t i = 0; i < h; ++i) {
        Q[i * w + j] = in[i] - out[i];
        Y[i * w + j] = out[i];
        sc[i * w + j] = i + 1 < h ? jump_sign(out[i], out[i + 1]) : int8_t(0);
      }
    }
  }
  for (int64_t k = 0; k < hw; ++k) y[k] = T(Y[k]);
}

// Backward of the K unrolled iterations. g: dL/dY (h*w), gx: dL/dX out; returns
// dL/dlam. Reverse mode of the forward above, iteration by iteration:
//   gYe = gY - gQ;  gB = gQ + J_cols^T gYe;  gZ = gQ' = gB
//   gZe = gZ - gP;  gA = gP + J_rows^T gZe;  gY = gP' = gA
template <typename T, typename A>
TV_HOST_DEVICE inline A tv2d_dykstra_backward(const int8_t* sgn, const T* g, T* gx, int64_t h,
                                              int64_t w, int64_t iters, bool identity,
                                              A* ws) {
  const int64_t hw = h * w, n = h > w ? h : w;
  A* gY = ws;
  A* gP = gY + hw;
  A* gQ = gP + hw;
  A* in = ws + 4 * hw;
  A* out = in + n;
  if (hw > 0 && sgn[0] == kBadImage) {
    for (int64_t k = 0; k < hw; ++k) gx[k] = T(quiet_nan<A>());
    return quiet_nan<A>();
  }
  A glam = A(0);
  for (int64_t k = 0; k < hw; ++k) {
    gY[k] = A(g[k]);
    gP[k] = A(0);
    gQ[k] = A(0);
  }
  for (int64_t it = iters - 1; it >= 0; --it) {
    const int8_t* sr = sgn + (2 * it) * hw;
    const int8_t* sc = sr + hw;
    for (int64_t j = 0; j < w; ++j) {
      for (int64_t i = 0; i < h; ++i) in[i] = gY[i * w + j] - gQ[i * w + j];
      glam += tv1d_backward_from_signs<A>(sc + j, w, in, out, h, identity);
      for (int64_t i = 0; i < h; ++i) gQ[i * w + j] += out[i];
    }
    for (int64_t i = 0; i < h; ++i) {
      const int64_t o = i * w;
      for (int64_t j = 0; j < w; ++j) in[j] = gQ[o + j] - gP[o + j];
      glam += tv1d_backward_from_signs<A>(sr + o, 1, in, out, w, identity);
      for (int64_t j = 0; j < w; ++j) {
        gP[o + j] += out[j];
        gY[o + j] = gP[o + j];
      }
    }
  }
  for (int64_t k = 0; k < hw; ++k) gx[k] = T(gY[k]);
  return glam;
}

}  // namespace core
}  // namespace tvcli
