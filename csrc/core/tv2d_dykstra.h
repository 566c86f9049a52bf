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

#include <string.h>

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

// Doubles of workspace for tv2d_dykstra_forward (4 h w + 2 n + the DP's) and
// tv2d_dykstra_backward (3 h w + 2 n doubles and h w bytes) on an h x w image,
// n = max(h, w).
TV_HOST_DEVICE TV_INLINE int64_t tv2d_dykstra_workspace(int64_t h, int64_t w) {
  const int64_t n = h > w ? h : w, fwd = 4 * h * w + 2 * n + tv1d_dp_workspace(n);
  const int64_t bwd = 3 * h * w + 2 * n + (h * w + 7) / 8;
  return fwd > bwd ? fwd : bwd;
}

// Stored in the first sign of an image whose input held NaN/Inf (signs are -1..1).
constexpr int8_t kBadImage = 2;

template <typename A>
TV_HOST_DEVICE TV_INLINE int8_t jump_sign(A a, A b) {
  return int8_t((b > a) - (b < a));
}

// TV sharpening's output element from the input x and the prox p, both rounded to
// T: 2 x - p, as PyTorch rounds `2 * x - y` (2 x is exact, then one rounded
// subtraction; no fused multiply-add: the build contracts none, -ffp-contract=off,
// --fmad=false). NaNs as PyTorch's CPU subtraction gives them (measured, torch
// 2.13, AVX-512 and AVX2 kernels): it computes fmadd(y, -1, 2 x), whose result is
// y's NaN (quieted) whenever y is NaN, even when x is NaN too, while a plain
// `2 x - p` would give x's; so a NaN p is returned as p + 0 (p quieted).
template <typename T>
TV_HOST_DEVICE TV_INLINE T sharpen_store(T x, T p) {
  const T two_x = T(2) * x;
  return p != p ? p + T(0) : two_x - p;
}

// The sharpened backward's dL/dx element from g = dL/d(output) and r = the prox's
// vector-Jacobian product with -g (rounded to T): 2 g + r, as autograd through
// `2 * x - y` sums the two paths (g * 2 from the product first, then the prox's
// gradient of -g added to it: r's NaN wins where both are NaN, as above).
template <typename T>
TV_HOST_DEVICE TV_INLINE T sharpen_grad(T g, T r) {
  const T two_g = g * T(2);
  return r != r ? r + T(0) : two_g + r;
}

// Forward. x, y: h*w contiguous (T); sgn: 2*K planes of h*w (plane 2k: row pass k,
// element (i, j) = sign(Z[i][j+1] - Z[i][j]); plane 2k+1: column pass k, element
// (i, j) = sign(Y[i+1][j] - Y[i][j])). lam finite >= 0; x may hold NaN/Inf.
// sharp: y = sharpen_store(x, prox) instead of the prox (paper eq. 4, TV sharpening).
template <typename T, typename A>
TV_HOST_DEVICE inline void tv2d_dykstra_forward(const T* x, T* y, int8_t* sgn, int64_t h,
                                                int64_t w, int64_t iters, A lam, A* ws,
                                                LineSolver solver, bool sharp = false) {
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
    for (int64_t k = 0; k < hw; ++k) {
      const T p = lam == A(0) ? x[k] : nan;
      y[k] = sharp ? sharpen_store(x[k], p) : p;
    }
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
  if (sharp) {
    for (int64_t k = 0; k < hw; ++k) y[k] = sharpen_store(x[k], T(Y[k]));
  } else {
    for (int64_t k = 0; k < hw; ++k) y[k] = T(Y[k]);
  }
}

// ---------------------------------------------------------------- backward
//
// The Jacobian of a 1-D prox maps a line's input to its run means (runs: maximal
// stretches where the pass's jump sign is 0), and the pass's dL/dlam is
// sum over runs of (s_right - s_left) * mean (s_left / s_right: the signs at the
// run's ends, 0 at the line's ends) = sum over p < n-1 of s[p] * (out[p] - out[p+1]).
// Runs are short on rough inputs (1-3 samples on noise), so a loop over runs
// mispredicts its branches. Instead many lines of a pass advance one position at a
// time (lines in lockstep), each with
//   forward:  c[p] = (s[p-1] == 0 ? c[p-1] + x[p] : x[p]),  m[p] = c[p] / count[p]
//   reverse:  out[p] = (p == n-1 || s[p] != 0) ? m[p] : out[p+1]
// c / count is the per-run sum / length of a left-to-right loop bit for bit, so the
// gradient w.r.t. x equals the per-run loop's; only dL/dlam's order of summation
// differs. A line of one sample adds 0 * out (the per-run form's (0 - 0) * mean), so
// NaN in g reaches dL/dlam there too.
//
// Arrays of a pass are n positions x (lines), position-major with row stride ld
// (element (p, l) at p * ld + l): the column pass works on the row-major image
// directly (lines: columns); the row pass on a transposed copy (lines: rows).
// On the host (g++ / clang) strips of 8 lines run as 2-wide vectors, branch-free,
// with the strip's running sums in registers; left-over lines, and device builds,
// take the plain per-line loop. Both compute the same values.

template <typename A>
struct is_double {
  static constexpr bool value = false;
};
template <>
struct is_double<double> {
  static constexpr bool value = true;
};

// How a pass gets its input x and where its output J x goes.
enum class LockstepIO {
  kFirst,    // x = a, d = J x
  kUpdate,   // x = a - d, d += J x
  kInPlace,  // x = m on entry, J x left in m
};

template <LockstepIO IO, typename Tin, typename A>
TV_HOST_DEVICE TV_INLINE A lockstep_input(const Tin* a, const A* d, const A* m, int64_t k) {
  return IO == LockstepIO::kFirst ? A(a[k]) : IO == LockstepIO::kUpdate ? A(a[k]) - d[k] : m[k];
}

template <LockstepIO IO, typename A>
TV_HOST_DEVICE TV_INLINE void lockstep_output(A* d, A* m, int64_t k, A out) {
  if (IO == LockstepIO::kFirst) d[k] = out;
  if (IO == LockstepIO::kUpdate) d[k] += out;
  if (IO == LockstepIO::kInPlace) m[k] = out;
}

// Lines [0, L) of a pass (a, d, m, s pre-offset to the first line). m: scratch
// (n * ld; holds J x for kInPlace); s: the pass's signs (rows p < n-1 read);
// c, cnt: L each. Returns these lines' dL/dlam.
template <LockstepIO IO, typename Tin, typename A>
TV_HOST_DEVICE inline A run_means_lines(const Tin* a, A* d, A* m, const int8_t* s, int64_t n,
                                        int64_t L, int64_t ld, A* c, A* cnt) {
  for (int64_t l = 0; l < L; ++l) {
    const A x = lockstep_input<IO, Tin, A>(a, d, m, l);
    c[l] = x;
    cnt[l] = A(1);
    m[l] = x;
  }
  for (int64_t p = 1; p < n; ++p) {
    const int64_t o = p * ld;
    for (int64_t l = 0; l < L; ++l) {
      const A x = lockstep_input<IO, Tin, A>(a, d, m, o + l);
      const bool keep = s[o - ld + l] == 0;  // same run as p - 1
      c[l] = keep ? c[l] + x : x;
      cnt[l] = keep ? cnt[l] + A(1) : A(1);
      m[o + l] = c[l] / cnt[l];
    }
  }
  A glam = A(0);
  const int64_t last = (n - 1) * ld;
  for (int64_t l = 0; l < L; ++l) {
    const A out = m[last + l];
    if (n == 1) glam += A(0) * out;
    lockstep_output<IO, A>(d, m, last + l, out);
  }
  for (int64_t p = n - 2; p >= 0; --p) {
    const int64_t o = p * ld;
    for (int64_t l = 0; l < L; ++l) {
      const A next = m[o + ld + l];
      const int8_t sg = s[o + l];
      const A out = sg != 0 ? m[o + l] : next;
      glam += A(sg) * (out - next);
      m[o + l] = out;
      lockstep_output<IO, A>(d, m, o + l, out);
    }
  }
  return glam;
}

// g++ >= 9 or clang: vector extensions with __builtin_convertvector.
#if !defined(__CUDACC__) && !defined(__HIPCC__) && !defined(TVCLI_NO_SIMD) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
#define TVCLI_BWD_SIMD 1
#endif

#if defined(TVCLI_BWD_SIMD)
// Host-only: g++ / clang vector extensions (SSE2 on x86-64, NEON on arm64), no
// intrinsics. Selects are bit masks: "keep ? c + x : x" as plain code becomes a
// branch that g++ then will not vectorise.
namespace simd {
typedef double v2d __attribute__((vector_size(16)));
typedef float v2f __attribute__((vector_size(8)));
typedef int64_t v2l __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef int16_t v8s __attribute__((vector_size(16)));
typedef int8_t v16b __attribute__((vector_size(16)));

// Lanes I... of the concatenation a:b (__builtin_shufflevector is g++ >= 12 / clang).
#if defined(__clang__) || (__GNUC__ >= 12 && !defined(TVCLI_SIMD_GNU_SHUFFLE))
#define TVCLI_SHUFFLE(a, b, Mask, I) __builtin_shufflevector(a, b, I...)
#else
#define TVCLI_SHUFFLE(a, b, Mask, I) __builtin_shuffle(a, b, Mask{I...})
#endif
// __builtin_shuffle's mask: an integer vector of the operand's lane width.
template <typename V>
struct ShuffleMask {
  using type = V;
};
template <>
struct ShuffleMask<v2d> {
  using type = v2l;
};
template <int... I, typename V>
inline V shuffle(V a, V b) {
  return TVCLI_SHUFFLE(a, b, typename ShuffleMask<V>::type, I);
}
#undef TVCLI_SHUFFLE

inline v2d load(const double* p) {
  v2d v;
  memcpy(&v, p, sizeof v);
  return v;
}
inline v2d load(const float* p) {
  v2f v;
  memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, v2d);
}
inline void store(double* p, v2d v) { memcpy(p, &v, sizeof v); }

// 8 signs in the low bytes.
inline v16b load8(const int8_t* p) {
  int64_t t;
  memcpy(&t, p, sizeof t);
  const v2l v = {t, 0};
  return (v16b)v;
}

// Bytes 0..7 of b, each repeated over a 64-bit lane (0 -> 0, -1 -> all ones, and the
// lane's sign bit is the byte's): 3 unpack steps.
inline void spread8(v16b b, v2l out[4]) {
  const v16b b2 = shuffle<0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7>(b, b);
  const v8s w = (v8s)b2;
  const v4i lo = (v4i)shuffle<0, 0, 1, 1, 2, 2, 3, 3>(w, w);
  const v4i hi = (v4i)shuffle<4, 4, 5, 5, 6, 6, 7, 7>(w, w);
  out[0] = (v2l)shuffle<0, 0, 1, 1>(lo, lo);
  out[1] = (v2l)shuffle<2, 2, 3, 3>(lo, lo);
  out[2] = (v2l)shuffle<0, 0, 1, 1>(hi, hi);
  out[3] = (v2l)shuffle<2, 2, 3, 3>(hi, hi);
}

template <LockstepIO IO, typename Tin>
inline v2d input(const Tin* a, const double* d, const double* m, int64_t k) {
  if (IO == LockstepIO::kFirst) return load(a + k);
  if (IO == LockstepIO::kUpdate) return load(a + k) - load(d + k);
  return load(m + k);
}

template <LockstepIO IO>
inline void output(double* d, double* m, int64_t k, v2d out) {
  if (IO == LockstepIO::kFirst) store(d + k, out);
  if (IO == LockstepIO::kUpdate) store(d + k, load(d + k) + out);
  if (IO == LockstepIO::kInPlace) store(m + k, out);
}

// run_means_lines for exactly 8 lines: same values (forward bit for bit).
template <LockstepIO IO, typename Tin>
inline double run_means_strip8(const Tin* a, double* d, double* m, const int8_t* s, int64_t n,
                               int64_t ld) {
  const v2l sign = {INT64_MIN, INT64_MIN};  // also the bits of -0.0
  const v2d one = {1.0, 1.0}, zero = {0.0, 0.0};
  v2d c[4], cnt[4], acc[4], next[4];
  for (int q = 0; q < 4; ++q) {
    c[q] = input<IO, Tin>(a, d, m, 2 * q);
    cnt[q] = one;
    store(m + 2 * q, c[q]);
  }
  for (int64_t p = 1; p < n; ++p) {
    const int64_t o = p * ld;
    v2l keep[4];  // same run as p - 1
    spread8((v16b)(load8(s + o - ld) == 0), keep);
    for (int q = 0; q < 4; ++q) {
      // keep ? c + x : -0 + x (== x, bit for bit)
      const v2d x = input<IO, Tin>(a, d, m, o + 2 * q);
      c[q] = (v2d)(((v2l)c[q] & keep[q]) | (sign & ~keep[q])) + x;
      cnt[q] = (v2d)((v2l)cnt[q] & keep[q]) + one;
      store(m + o + 2 * q, c[q] / cnt[q]);
    }
  }
  const int64_t last = (n - 1) * ld;
  for (int q = 0; q < 4; ++q) {
    next[q] = load(m + last + 2 * q);
    acc[q] = n == 1 ? zero * next[q] : zero;
    output<IO>(d, m, last + 2 * q, next[q]);
  }
  for (int64_t p = n - 2; p >= 0; --p) {
    const int64_t o = p * ld;
    v2l sg[4];  // s repeated over each lane: its sign bit is s's, and it is 0 iff s is
    spread8(load8(s + o), sg);
    for (int q = 0; q < 4; ++q) {
      const v2l inner = (v2l)((v4i)sg[q] == 0);  // not a run's end (both halves agree)
      const v2l nx = (v2l)next[q];
      const v2d out = (v2d)((((v2l)load(m + o + 2 * q) ^ nx) & ~inner) ^ nx);
      acc[q] += (v2d)((v2l)(out - next[q]) ^ (sg[q] & sign));  // s * (out - next)
      next[q] = out;
      output<IO>(d, m, o + 2 * q, out);
    }
  }
  const v2d t = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  return t[0] + t[1];
}

inline void store8(int8_t* p, v16b v, int half) {
  const int64_t t = ((v2l)v)[half];
  memcpy(p, &t, sizeof t);
}

// dst[j * h + i] = src[i * w + j] for i, j < 8 (an 8 x 8 block of a w-wide image into
// its h-wide transpose): 3 unpack steps.
inline void transpose8x8(const int8_t* src, int64_t w, int8_t* dst, int64_t h) {
  v16b r[8];
  for (int k = 0; k < 8; ++k) r[k] = load8(src + k * w);
  v8s a[4];
  for (int k = 0; k < 4; ++k) {
    a[k] = (v8s)shuffle<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(r[2 * k],
                                                                                r[2 * k + 1]);
  }
  const v4i b0 = (v4i)shuffle<0, 8, 1, 9, 2, 10, 3, 11>(a[0], a[1]);
  const v4i b1 = (v4i)shuffle<4, 12, 5, 13, 6, 14, 7, 15>(a[0], a[1]);
  const v4i b2 = (v4i)shuffle<0, 8, 1, 9, 2, 10, 3, 11>(a[2], a[3]);
  const v4i b3 = (v4i)shuffle<4, 12, 5, 13, 6, 14, 7, 15>(a[2], a[3]);
  const v16b c[4] = {(v16b)shuffle<0, 4, 1, 5>(b0, b2),
                     (v16b)shuffle<2, 6, 3, 7>(b0, b2),
                     (v16b)shuffle<0, 4, 1, 5>(b1, b3),
                     (v16b)shuffle<2, 6, 3, 7>(b1, b3)};
  for (int k = 0; k < 4; ++k) {
    store8(dst + (2 * k) * h, c[k], 0);
    store8(dst + (2 * k + 1) * h, c[k], 1);
  }
}
}  // namespace simd
#endif

// One pass over L lines (arrays pre-offset, row stride ld): strips of 8 lines on the
// host's vectors, the rest line by line.
template <LockstepIO IO, typename Tin, typename A>
TV_HOST_DEVICE inline A run_means(const Tin* a, A* d, A* m, const int8_t* s, int64_t n,
                                  int64_t L, int64_t ld, A* c, A* cnt) {
  A glam = A(0);
  int64_t l0 = 0;
#if defined(TVCLI_BWD_SIMD)
  if constexpr (is_double<A>::value) {
    for (; l0 + 8 <= L; l0 += 8) {
      glam += simd::run_means_strip8<IO, Tin>(a == nullptr ? a : a + l0,
                                              d == nullptr ? d : d + l0, m + l0, s + l0, n, ld);
    }
  }
#endif
  if (l0 < L) {
    glam += run_means_lines<IO, Tin, A>(a == nullptr ? a : a + l0, d == nullptr ? d : d + l0,
                                        m + l0, s + l0, n, L - l0, ld, c, cnt);
  }
  return glam;
}

// Column pass (positions: rows, lines: columns of the row-major image). Input
// X = Yv - gQ (Yv: g in the first backward iteration, else gP); gQ += J X (gQ = J X
// in the first; gQ = Yv if identity). m: h*w; c, cnt: w.
template <bool First, typename T, typename A>
TV_HOST_DEVICE inline A dykstra_bwd_cols(const T* g, const A* gP, A* gQ, const int8_t* sc,
                                         int64_t h, int64_t w, bool identity, A* m, A* c,
                                         A* cnt) {
  const A glam = First ? run_means<LockstepIO::kFirst, T, A>(g, gQ, m, sc, h, w, w, c, cnt)
                       : run_means<LockstepIO::kUpdate, A, A>(gP, gQ, m, sc, h, w, w, c, cnt);
  if (identity) {
    for (int64_t k = 0; k < h * w; ++k) gQ[k] = First ? A(g[k]) : gP[k];
  }
  return glam;
}

// The row pass's transposed input: m[j * h + i] = gQ[i][j] - gP[i][j] (gQ[i][j] if
// First), st[j * h + i] = sr[i][j].
template <bool First, typename A>
TV_HOST_DEVICE inline void rows_gather(const A* gQ, const A* gP, const int8_t* sr, int64_t h,
                                       int64_t w, A* m, int8_t* st) {
  int64_t i0 = 0;
#if defined(TVCLI_BWD_SIMD)
  if constexpr (is_double<A>::value) {  // 2 x 2 blocks
    for (; i0 + 2 <= h; i0 += 2) {
      const int64_t o = i0 * w;
      for (int64_t j = 0; j + 2 <= w; j += 2) {
        simd::v2d r0 = simd::load(gQ + o + j), r1 = simd::load(gQ + o + w + j);
        if (!First) {
          r0 -= simd::load(gP + o + j);
          r1 -= simd::load(gP + o + w + j);
        }
        simd::store(m + j * h + i0, simd::shuffle<0, 2>(r0, r1));
        simd::store(m + (j + 1) * h + i0, simd::shuffle<1, 3>(r0, r1));
      }
      if (w % 2 != 0) {
        const int64_t j = w - 1;
        for (int64_t i = i0; i < i0 + 2; ++i) {
          const int64_t k = i * w + j;
          m[j * h + i] = First ? gQ[k] : gQ[k] - gP[k];
        }
      }
    }
  }
#endif
  for (int64_t i = i0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      const int64_t k = i * w + j;
      m[j * h + i] = First ? gQ[k] : gQ[k] - gP[k];
    }
  }
  int64_t h8 = 0, w8 = 0;
#if defined(TVCLI_BWD_SIMD)
  h8 = h - h % 8;
  w8 = w - w % 8;
  for (int64_t i = 0; i < h8; i += 8) {
    for (int64_t j = 0; j < w8; j += 8) simd::transpose8x8(sr + i * w + j, w, st + j * h + i, h);
  }
#endif
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = i < h8 ? w8 : 0; j < w; ++j) st[j * h + i] = sr[i * w + j];
  }
}

// gP[i][j] += m[j * h + i] (= if First).
template <bool First, typename A>
TV_HOST_DEVICE inline void rows_scatter(A* gP, const A* m, int64_t h, int64_t w) {
  int64_t i0 = 0;
#if defined(TVCLI_BWD_SIMD)
  if constexpr (is_double<A>::value) {  // 2 x 2 blocks
    for (; i0 + 2 <= h; i0 += 2) {
      const int64_t o = i0 * w;
      for (int64_t j = 0; j + 2 <= w; j += 2) {
        const simd::v2d a = simd::load(m + j * h + i0), b = simd::load(m + (j + 1) * h + i0);
        simd::v2d r0 = simd::shuffle<0, 2>(a, b);
        simd::v2d r1 = simd::shuffle<1, 3>(a, b);
        if (!First) {
          r0 += simd::load(gP + o + j);
          r1 += simd::load(gP + o + w + j);
        }
        simd::store(gP + o + j, r0);
        simd::store(gP + o + w + j, r1);
      }
      if (w % 2 != 0) {
        const int64_t j = w - 1;
        for (int64_t i = i0; i < i0 + 2; ++i) {
          const int64_t k = i * w + j;
          gP[k] = First ? m[j * h + i] : gP[k] + m[j * h + i];
        }
      }
    }
  }
#endif
  for (int64_t i = i0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      const int64_t k = i * w + j;
      gP[k] = First ? m[j * h + i] : gP[k] + m[j * h + i];
    }
  }
}

// Row pass (positions: columns, lines: rows) on transposed copies (rows_gather):
// X = gQ - gP (gP = 0 in the first backward iteration); gP += J X (gP = gQ if
// identity). m, st: h*w; c, cnt: h.
template <bool First, typename A>
TV_HOST_DEVICE inline A dykstra_bwd_rows(A* gP, const A* gQ, const int8_t* sr, int64_t h,
                                         int64_t w, bool identity, A* m, int8_t* st, A* c,
                                         A* cnt) {
  rows_gather<First, A>(gQ, gP, sr, h, w, m, st);
  const A glam = run_means<LockstepIO::kInPlace, A, A>(nullptr, nullptr, m, st, w, h, h, c, cnt);
  if (identity) {
    for (int64_t k = 0; k < h * w; ++k) gP[k] = gQ[k];
  } else {
    rows_scatter<First, A>(gP, m, h, w);
  }
  return glam;
}

// Backward of the K unrolled iterations. g: dL/dY (h*w), gx: dL/dX out; returns
// dL/dlam. Reverse mode of the forward above, iteration by iteration (J symmetric):
//   gYe = gY - gQ;  gB = gQ + J_cols gYe;  gZ = gQ' = gB
//   gZe = gZ - gP;  gA = gP + J_rows gZe;  gY = gP' = gA
// gY equals gP after every iteration but the last one (where gY = g, gP = gQ = 0),
// so only gP and gQ are kept. Workspace: tv2d_dykstra_workspace(h, w).
template <typename T, typename A>
TV_HOST_DEVICE inline A tv2d_dykstra_backward(const int8_t* sgn, const T* g, T* gx, int64_t h,
                                              int64_t w, int64_t iters, bool identity,
                                              A* ws) {
  const int64_t hw = h * w, n = h > w ? h : w;
  if (hw == 0) return A(0);
  if (sgn[0] == kBadImage) {
    for (int64_t k = 0; k < hw; ++k) gx[k] = T(quiet_nan<A>());
    return quiet_nan<A>();
  }
  if (iters <= 0) {
    for (int64_t k = 0; k < hw; ++k) gx[k] = g[k];
    return A(0);
  }
  A* gP = ws;
  A* gQ = gP + hw;
  A* m = gQ + hw;
  A* c = m + hw;
  A* cnt = c + n;
  int8_t* st = reinterpret_cast<int8_t*>(cnt + n);  // h*w bytes
  A glam = A(0);
  for (int64_t it = iters - 1; it >= 0; --it) {
    const int8_t* sr = sgn + (2 * it) * hw;
    const int8_t* sc = sr + hw;
    if (it == iters - 1) {
      glam += dykstra_bwd_cols<true, T, A>(g, gP, gQ, sc, h, w, identity, m, c, cnt);
      glam += dykstra_bwd_rows<true, A>(gP, gQ, sr, h, w, identity, m, st, c, cnt);
    } else {
      glam += dykstra_bwd_cols<false, T, A>(g, gP, gQ, sc, h, w, identity, m, c, cnt);
      glam += dykstra_bwd_rows<false, A>(gP, gQ, sr, h, w, identity, m, st, c, cnt);
    }
  }
  for (int64_t k = 0; k < hw; ++k) gx[k] = T(gP[k]);
  return glam;
}

}  // namespace core
}  // namespace tvcli
