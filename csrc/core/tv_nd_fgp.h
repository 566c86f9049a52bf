// FISTA on the dual ("fast gradient projection", Beck & Teboulle 2009) for the
// n-D total-variation prox, isotropic / colour / anisotropic, with weight maps
// and a certified stopping bound. Header-only, host and device (tv_common.h).
//
// One problem: x of shape (C, *S) (C channels, S the nd <= kMaxDims spatial sizes,
// row-major, n = prod S pixels), weights w >= 0 per pixel (or one per problem),
//
//   y* = argmin_y 1/2 ||y - x||^2 + sum_i w_i ||(D y)_i||,
//
// D the forward differences along each spatial axis (0 on the last slice).
// "iso": ||.|| is the l2 norm over the nd x C entries of pixel i (C = 1: isotropic
// TV; C > 1: colour / vectorial TV); "aniso": the l1 norm (every entry its own box).
//
// Dual state p, q of shape (nd, C, *S) in the state type S (float or double):
//
//   r  = x - D^T q                                   (residual sweep)
//   p+ = proj_ball(w)(q + D r / L),  L = 4 nd        (update sweep, also:)
//   q  = p+ + beta (p+ - p),  beta = (t - 1) / t+
//
// Certificate (always double, whatever S): p is projected again in double (a
// float32 p can lie a rounding outside its ball), y = x - D^T p~, and the gap
//
//   G = sum_i w_i ||(D y)_i|| - <p~_i, (D y)_i>   (+ 2 (k + 2) eps w_i ||(D y)_i||)
//
// bounds ||y - y*||^2 (tv_common.h, certified_rms: the primal and the dual half
// each bound 1/2 of it), so sqrt(G / (C n)) bounds the RMS error of y (the
// rounding allowance is tvcli/tv_nd_ops.py's gap_terms: k entries per pixel's
// norm, every term >= 0, no cancellation of large sums).
//
// Two spellings of every sweep share the per-element expressions below, so that
// they round identically (with -ffp-contract=off / --fmad=false):
//   * *_line: the CPU's, over one line of the last axis (contiguous, vectorisable
//     loops); the residual r and the certificate's y use a line pitch of W + 1,
//     the pad element repeating the line's last value, so that "next minus this"
//     on the last axis is exactly 0 at the line's end without a branch; r may be
//     a ring of lines (Problem::ring) when one thread runs the residual a slab
//     ahead of the update;
//   * *_at: the CUDA kernels', one thread per pixel (csrc/cuda/tv_nd_kernel_body.h).
#pragma once

#include <math.h>

#include "tv_common.h"

// A vectorised sum in the host's line loops (the restart test's inner product):
// OpenMP simd reduction where the host compiler has OpenMP; nothing for nvcc.
#define TVND_PRAGMA(x) _Pragma(#x)
#if defined(_OPENMP) && !defined(__CUDACC__)
#define TVND_SIMD_SUM(v) TVND_PRAGMA(omp simd reduction(+ : v))
#else
#define TVND_SIMD_SUM(v)
#endif

// Per-pixel loops over directions: unrolled on the device (constant indices into
// the geometry keep it in registers instead of a local-memory copy).
#if defined(__CUDACC__)
#define TVND_UNROLL TVND_PRAGMA(unroll)
#else
#define TVND_UNROLL
#endif

namespace tvcli {
namespace core {
namespace tvnd {

constexpr int kMaxDims = 4;

// Shape of one problem. size[] are the nd spatial sizes (row-major); stride[d] the
// pixel stride of axis d; w = size[nd - 1] (the line length); lines = n / w.
struct Geometry {
  int nd;
  int channels;
  int64_t size[kMaxDims];
  int64_t stride[kMaxDims];
  int64_t n;
  int64_t w;
  int64_t lines;
  int64_t line_step[kMaxDims];  // stride[d] / w: lines per step along outer axis d
};

// Row-major geometry of sizes[0 .. nd) with `channels` channels.
TV_HOST_DEVICE inline Geometry make_geometry(int nd, const int64_t* sizes, int channels) {
  Geometry g{};
  g.nd = nd;
  g.channels = channels;
  int64_t s = 1;
  for (int d = nd - 1; d >= 0; --d) {
    g.size[d] = sizes[d];
    g.stride[d] = s;
    s *= sizes[d];
  }
  for (int d = nd; d < kMaxDims; ++d) {
    g.size[d] = 1;
    g.stride[d] = s;
  }
  g.n = s;
  g.w = sizes[nd - 1];
  g.lines = g.w > 0 ? s / g.w : 0;
  for (int d = 0; d < kMaxDims; ++d) g.line_step[d] = g.w > 0 ? g.stride[d] / g.w : 0;
  return g;
}

// ---------------------------------------------------------------- element math

TV_HOST_DEVICE TV_INLINE float sqrt_of(float v) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(v);  // IEEE round-to-nearest, as the host's
#else
  return __builtin_sqrtf(v);
#endif
}
TV_HOST_DEVICE TV_INLINE double sqrt_of(double v) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(v);
#else
  return __builtin_sqrt(v);
#endif
}

// IEEE round-to-nearest division on host and device.
TV_HOST_DEVICE TV_INLINE float div_of(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
TV_HOST_DEVICE TV_INLINE double div_of(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// The step of the dual gradient: q + (D r) / L for one entry.
template <typename S>
TV_HOST_DEVICE TV_INLINE S ascent(S q, S r_next, S r, S inv_l) {
  return q + (r_next - r) * inv_l;
}

// Shrink factor onto the l2 ball of radius w for a vector of squared norm n2:
// w / max(|v|, w, tiny) -- 1 inside the ball (w / w), w / |v| outside, 0 for
// w = 0 (the tiny floor: never 0 / 0). tvcli/tv_nd_ops.py's project, branch-free
// so that the CPU's loops vectorise.
template <typename S>
TV_HOST_DEVICE TV_INLINE S tiny_of();
template <>
TV_HOST_DEVICE TV_INLINE float tiny_of<float>() {
  return 1.17549435082228751e-38f;
}
template <>
TV_HOST_DEVICE TV_INLINE double tiny_of<double>() {
  return 2.2250738585072014e-308;
}

template <typename S>
TV_HOST_DEVICE TV_INLINE S ball_scale(S n2, S w) {
  const S nrm = sqrt_of(n2);
  const S den = nrm > w ? nrm : w;
  return div_of(w, den > tiny_of<S>() ? den : tiny_of<S>());
}

template <typename S>
TV_HOST_DEVICE TV_INLINE S box(S v, S w) {
  return v < -w ? -w : (v > w ? w : v);
}

template <typename S>
TV_HOST_DEVICE TV_INLINE S momentum(S p_new, S p_old, S beta) {
  return p_new + beta * (p_new - p_old);
}

// One gap term and its rounding allowance: size - inner + 2 (k + 2) eps size.
TV_HOST_DEVICE TV_INLINE double gap_term(double size, double inner, int k) {
  constexpr double kEps = 2.220446049250313e-16;  // double's machine epsilon
  return (size - inner) + 2.0 * (k + 2) * kEps * size;
}

// FISTA's t sequence: t+ = (1 + sqrt(1 + 4 t^2)) / 2, beta = (t - 1) / t+.
TV_HOST_DEVICE TV_INLINE double next_t(double t) { return 0.5 * (1.0 + sqrt_of(1.0 + 4.0 * t * t)); }

// Lipschitz constant of D^T D's bound: ||D||^2 <= 4 nd.
TV_HOST_DEVICE TV_INLINE double lipschitz(int nd) { return 4.0 * nd; }

// The iteration of the next certificate after one at `it` that did not stop:
// every check_every iterations at first, then every ~it / 10 (a multiple of
// check_every). A certificate costs about two iterations' memory traffic, so
// checking every 5 of hundreds of iterations would cost a third of the time;
// this spacing keeps it near 10% and overshoots the first iteration that meets
// tol by at most ~10% (the overshoot only makes y more accurate).
TV_HOST_DEVICE TV_INLINE int64_t next_check(int64_t it, int64_t check_every) {
  const int64_t k = it / (10 * check_every);
  return it + check_every * (k > 1 ? k : 1);
}

// RMS error bound of a problem of `entries` values from its gap.
TV_HOST_DEVICE TV_INLINE double rms_bound(double gap, int64_t entries) {
  return certified_rms(gap, entries);
}

// ------------------------------------------------------------ problem pointers

// One problem's data. x: (C, n) in T; w: n weights (w_map) or one; p, q: (nd, C, n)
// in S; r: (C, ring, w + 1) in S; y: (C, lines, w + 1) double; s: n double (the
// certificate's shrink factors (iso) or weights (aniso)).
template <typename T, typename S>
struct Problem {
  const T* x;
  const T* w;
  bool w_map;
  S* p;
  S* q;
  S* r;
  double* y;
  double* s;
  // Lines of r held (CPU line sweeps: line l lives in slot l % ring): all `lines`,
  // or, when one thread runs the residual and the update interleaved
  // (sweep_fused), the slab of the outermost axis plus one line.
  int64_t ring;
};

template <typename T, typename S>
inline S* r_line(const Geometry& g, const Problem<T, S>& P, int64_t c, int64_t l) {
  return P.r + (c * P.ring + l % P.ring) * (g.w + 1);
}

// Multi-index of line l's outer axes (0 .. nd - 2) in `idx`.
TV_HOST_DEVICE TV_INLINE void line_index(const Geometry& g, int64_t l, int64_t* idx) {
  const int64_t pix = l * g.w;
  for (int d = 0; d + 1 < g.nd; ++d) idx[d] = (pix / g.stride[d]) % g.size[d];
}

// ------------------------------------------------------------ CPU line sweeps
//
// `zero` is a caller-provided line of w zeros of S (the missing q / p~ before the
// first slice). Lines are independent inside a sweep: any split of [0, lines)
// among threads gives the same result.

// r = x - D^T q on line l: r_i = x_i + sum_d (q_d[i] - q_d[i - e_d]) (0 before the
// first slice), every channel; then the pad element.
template <typename T, typename S, int ND>
void residual_line(const Geometry& g, const Problem<T, S>& P, int64_t l, const S* zero) {
  const int64_t W = g.w, n = g.n, C = g.channels;
  int64_t idx[kMaxDims];
  line_index(g, l, idx);
  const int64_t base = l * W;
  for (int64_t c = 0; c < C; ++c) {
    const T* x = P.x + c * n + base;
    S* r = r_line(g, P, c, l);
    const S* cur[ND];
    const S* prev[ND];
    for (int d = 0; d < ND; ++d) {
      cur[d] = P.q + (d * C + c) * n + base;
      prev[d] = (d + 1 < ND && idx[d] > 0) ? cur[d] - g.stride[d] : zero;
    }
    {  // j = 0: nothing before it on the last axis
      S acc = S(x[0]);
      for (int d = 0; d + 1 < ND; ++d) acc += cur[d][0] - prev[d][0];
      acc += cur[ND - 1][0] - S(0);
      r[0] = acc;
    }
    for (int64_t j = 1; j < W; ++j) {
      S acc = S(x[j]);
      for (int d = 0; d + 1 < ND; ++d) acc += cur[d][j] - prev[d][j];
      acc += cur[ND - 1][j] - cur[ND - 1][j - 1];
      r[j] = acc;
    }
    r[W] = r[W - 1];
  }
}

// p+ = proj(q + D r / L), q = p+ + beta (p+ - p), p = p+ on line l. `n2` and
// `scale` are caller-provided lines of w elements of S (iso only). Adds the line's
// <q - p+, p+ - p> (the restart test; summed in S per line) to *dot.
template <typename T, typename S, int ND, bool ISO>
void update_line(const Geometry& g, const Problem<T, S>& P, int64_t l, S inv_l, S beta,
                 S* n2, S* scale, double* dot) {
  S dacc = S(0);
  const int64_t W = g.w, n = g.n, C = g.channels;
  int64_t idx[kMaxDims];
  line_index(g, l, idx);
  const int64_t base = l * W;
  // The line of the next slice along each outer axis; l itself on the last slice,
  // so that r_next - r is exactly 0 there (the last axis: the next element).
  int64_t next_line[ND];
  for (int d = 0; d + 1 < ND; ++d) next_line[d] = idx[d] + 1 < g.size[d] ? l + g.line_step[d] : l;
  next_line[ND - 1] = l;
  auto r_next = [&](int d, int64_t c) -> const S* {
    return d + 1 < ND ? r_line(g, P, c, next_line[d]) : r_line(g, P, c, l) + 1;
  };
  const T* w = P.w + (P.w_map ? base : 0);
  if (ISO) {
    for (int64_t j = 0; j < W; ++j) n2[j] = S(0);
    for (int d = 0; d < ND; ++d)
      for (int64_t c = 0; c < C; ++c) {
        const S* q = P.q + (d * C + c) * n + base;
        const S* r = r_line(g, P, c, l);
        const S* rn = r_next(d, c);
        for (int64_t j = 0; j < W; ++j) {
          const S v = ascent(q[j], rn[j], r[j], inv_l);
          n2[j] += v * v;
        }
      }
    if (P.w_map) {
      for (int64_t j = 0; j < W; ++j) scale[j] = ball_scale(n2[j], S(w[j]));
    } else {
      const S w0 = S(w[0]);
      for (int64_t j = 0; j < W; ++j) scale[j] = ball_scale(n2[j], w0);
    }
  }
  for (int d = 0; d < ND; ++d)
    for (int64_t c = 0; c < C; ++c) {
      S* q = P.q + (d * C + c) * n + base;
      S* p = P.p + (d * C + c) * n + base;
      const S* r = r_line(g, P, c, l);
      const S* rn = r_next(d, c);
      if (ISO) {
        TVND_SIMD_SUM(dacc)
        for (int64_t j = 0; j < W; ++j) {
          const S pn = ascent(q[j], rn[j], r[j], inv_l) * scale[j];
          dacc += (q[j] - pn) * (pn - p[j]);
          q[j] = momentum(pn, p[j], beta);
          p[j] = pn;
        }
      } else if (P.w_map) {
        TVND_SIMD_SUM(dacc)
        for (int64_t j = 0; j < W; ++j) {
          const S pn = box(ascent(q[j], rn[j], r[j], inv_l), S(w[j]));
          dacc += (q[j] - pn) * (pn - p[j]);
          q[j] = momentum(pn, p[j], beta);
          p[j] = pn;
        }
      } else {
        const S w0 = S(w[0]);
        TVND_SIMD_SUM(dacc)
        for (int64_t j = 0; j < W; ++j) {
          const S pn = box(ascent(q[j], rn[j], r[j], inv_l), w0);
          dacc += (q[j] - pn) * (pn - p[j]);
          q[j] = momentum(pn, p[j], beta);
          p[j] = pn;
        }
      }
    }
  *dot += double(dacc);
}

// Certificate, step 1: s_i = ball_scale(||p_i||^2, w_i) in double (iso), or the
// weight w_i itself (aniso): the factor or box radius that makes p feasible.
template <typename T, typename S, int ND, bool ISO>
void cert_scale_line(const Geometry& g, const Problem<T, S>& P, int64_t l) {
  const int64_t W = g.w, n = g.n, C = g.channels, base = l * W;
  double* s = P.s + base;
  const T* w = P.w + (P.w_map ? base : 0);
  if (!ISO) {
    if (P.w_map) {
      for (int64_t j = 0; j < W; ++j) s[j] = double(w[j]);
    } else {
      for (int64_t j = 0; j < W; ++j) s[j] = double(w[0]);
    }
    return;
  }
  for (int64_t j = 0; j < W; ++j) s[j] = 0.0;
  for (int d = 0; d < ND; ++d)
    for (int64_t c = 0; c < C; ++c) {
      const S* p = P.p + (d * C + c) * n + base;
      for (int64_t j = 0; j < W; ++j) {
        const double v = double(p[j]);
        s[j] += v * v;
      }
    }
  if (P.w_map) {
    for (int64_t j = 0; j < W; ++j) s[j] = ball_scale(s[j], double(w[j]));
  } else {
    const double w0 = double(w[0]);
    for (int64_t j = 0; j < W; ++j) s[j] = ball_scale(s[j], w0);
  }
}

// The certificate's dual entry p~ (double, feasible): p s_i (iso) or the box.
template <bool ISO>
TV_HOST_DEVICE TV_INLINE double feasible(double p, double s_or_w) {
  return ISO ? p * s_or_w : box(p, s_or_w);
}

// Certificate, step 2: y = x - D^T p~ on line l (double, pitch w + 1, padded),
// p~ = feasible(p, s) (s from step 1). `zero` is a line of w zeros of S: a missing
// p before the first slice is 0, and feasible(0, s) = 0.
template <typename T, typename S, int ND, bool ISO>
void cert_y_line(const Geometry& g, const Problem<T, S>& P, int64_t l, const S* zero) {
  const int64_t W = g.w, n = g.n, C = g.channels, base = l * W;
  int64_t idx[kMaxDims];
  line_index(g, l, idx);
  const double* s = P.s + base;
  const double* sprev[ND];
  for (int d = 0; d + 1 < ND; ++d) sprev[d] = idx[d] > 0 ? s - g.stride[d] : s;
  for (int64_t c = 0; c < C; ++c) {
    const T* x = P.x + c * n + base;
    double* y = P.y + (c * g.lines + l) * (W + 1);
    const S* cur[ND];
    const S* prev[ND];
    for (int d = 0; d < ND; ++d) {
      cur[d] = P.p + (d * C + c) * n + base;
      prev[d] = (d + 1 < ND && idx[d] > 0) ? cur[d] - g.stride[d] : zero;
    }
    {
      double acc = double(x[0]);
      for (int d = 0; d + 1 < ND; ++d)
        acc += feasible<ISO>(double(cur[d][0]), s[0]) -
               feasible<ISO>(double(prev[d][0]), sprev[d][0]);
      acc += feasible<ISO>(double(cur[ND - 1][0]), s[0]) - 0.0;
      y[0] = acc;
    }
    for (int64_t j = 1; j < W; ++j) {
      double acc = double(x[j]);
      for (int d = 0; d + 1 < ND; ++d)
        acc += feasible<ISO>(double(cur[d][j]), s[j]) -
               feasible<ISO>(double(prev[d][j]), sprev[d][j]);
      acc += feasible<ISO>(double(cur[ND - 1][j]), s[j]) -
             feasible<ISO>(double(cur[ND - 1][j - 1]), s[j - 1]);
      y[j] = acc;
    }
    y[W] = y[W - 1];
  }
}

// Certificate, step 3: the gap terms of line l, summed (double). `n2` and `inner`
// are caller-provided lines of w doubles.
template <typename T, typename S, int ND, bool ISO>
double gap_line(const Geometry& g, const Problem<T, S>& P, int64_t l, double* n2,
                double* inner) {
  const int64_t W = g.w, n = g.n, C = g.channels, pitch = W + 1, base = l * W;
  int64_t idx[kMaxDims];
  line_index(g, l, idx);
  int64_t next_off[ND];
  for (int d = 0; d + 1 < ND; ++d)
    next_off[d] = idx[d] + 1 < g.size[d] ? (g.stride[d] / W) * pitch : 0;
  next_off[ND - 1] = 1;
  const double* s = P.s + base;
  double sum = 0.0;
  if (ISO) {
    const int k = ND * int(C);
    for (int64_t j = 0; j < W; ++j) n2[j] = inner[j] = 0.0;
    for (int d = 0; d < ND; ++d)
      for (int64_t c = 0; c < C; ++c) {
        const S* p = P.p + (d * C + c) * n + base;
        const double* y = P.y + (c * g.lines + l) * pitch;
        const double* yn = y + next_off[d];
        for (int64_t j = 0; j < W; ++j) {
          const double dy = yn[j] - y[j];
          n2[j] += dy * dy;
          inner[j] += feasible<true>(double(p[j]), s[j]) * dy;
        }
      }
    const T* w = P.w + (P.w_map ? base : 0);
    if (P.w_map) {
      for (int64_t j = 0; j < W; ++j) sum += gap_term(double(w[j]) * sqrt_of(n2[j]), inner[j], k);
    } else {
      const double w0 = double(w[0]);
      for (int64_t j = 0; j < W; ++j) sum += gap_term(w0 * sqrt_of(n2[j]), inner[j], k);
    }
    return sum;
  }
  // aniso: s holds the weights (step 1).
  for (int d = 0; d < ND; ++d)
    for (int64_t c = 0; c < C; ++c) {
      const S* p = P.p + (d * C + c) * n + base;
      const double* y = P.y + (c * g.lines + l) * pitch;
      const double* yn = y + next_off[d];
      for (int64_t j = 0; j < W; ++j) {
        const double dy = yn[j] - y[j];
        const double size = s[j] * (dy < 0.0 ? -dy : dy);
        sum += gap_term(size, feasible<false>(double(p[j]), s[j]) * dy, 1);
      }
    }
  return sum;
}

// ------------------------------------------------------- per-pixel (CUDA) twins
//
// Pixel i of a problem (0 <= i < n); the same expressions, in the same order, as
// the line sweeps above (the emulated grid reproduces the CPU op bit for bit).

// Where pixel i lies: its line l and place j on it, and per axis d whether it is
// on the first (bit d of first) or last (bit d of last) slice. Computed once per
// pixel (nd integer divisions), so that the loops below index nothing at run time.
struct PixelPos {
  int64_t l, j;
  unsigned first, last;
};

TV_HOST_DEVICE TV_INLINE PixelPos pixel_pos(const Geometry& g, int64_t i) {
  PixelPos pp{0, 0, 0u, 0u};
  // 32-bit division when the problem allows it (on the device a 64-bit one is a
  // subroutine call, whose register save/restore shows up as spills).
  const bool small = g.n <= int64_t(0xffffffff);
  if (small) {
    uint32_t rest = uint32_t(i);
    const uint32_t w = uint32_t(g.w);
    pp.l = int64_t(rest / w);
    pp.j = int64_t(rest - uint32_t(pp.l) * w);
    TVND_UNROLL for (int k = 0; k < kMaxDims; ++k) {
      const int d = kMaxDims - 1 - k;
      if (d < g.nd) {
        const uint32_t sz = uint32_t(g.size[d]);
        const uint32_t up = rest / sz;
        const uint32_t idx = rest - up * sz;
        rest = up;
        if (idx == 0) pp.first |= 1u << d;
        if (idx == sz - 1) pp.last |= 1u << d;
      }
    }
    return pp;
  }
  pp.l = i / g.w;
  pp.j = i - pp.l * g.w;
  int64_t rest = i;
  TVND_UNROLL for (int k = 0; k < kMaxDims; ++k) {
    const int d = kMaxDims - 1 - k;
    if (d < g.nd) {
      const int64_t up = rest / g.size[d];
      const int64_t idx = rest - up * g.size[d];
      rest = up;
      if (idx == 0) pp.first |= 1u << d;
      if (idx == g.size[d] - 1) pp.last |= 1u << d;
    }
  }
  return pp;
}

// Offset in r / y (pitch w + 1) from pixel i to its next pixel along d: 1 on the
// last axis (the pad covers the line's end), 0 on the last slice of the others.
TV_HOST_DEVICE TV_INLINE int64_t next_offset(const Geometry& g, const PixelPos& pp, int d) {
  if (d == g.nd - 1) return 1;
  return ((pp.last >> d) & 1u) ? 0 : g.line_step[d] * (g.w + 1);
}

template <typename T, typename S>
TV_HOST_DEVICE TV_INLINE void residual_at(const Geometry& g, const Problem<T, S>& P, int64_t i) {
  const int64_t n = g.n, W = g.w;
  const int C = g.channels;
  const PixelPos pp = pixel_pos(g, i);
  for (int c = 0; c < C; ++c) {
    S acc = S(P.x[c * n + i]);
    TVND_UNROLL for (int d = 0; d < kMaxDims; ++d) if (d < g.nd) {
      const S* q = P.q + (d * C + c) * n;
      acc += q[i] - (((pp.first >> d) & 1u) ? S(0) : q[i - g.stride[d]]);
    }
    S* r = P.r + (c * g.lines + pp.l) * (W + 1);
    r[pp.j] = acc;
    if (pp.j == W - 1) r[W] = acc;
  }
}

// Returns this pixel's share of the restart test <q - p+, p+ - p> (summed in S).
template <typename T, typename S, bool ISO>
TV_HOST_DEVICE TV_INLINE double update_at(const Geometry& g, const Problem<T, S>& P, int64_t i,
                                          S inv_l, S beta) {
  const int64_t n = g.n, pitch = g.w + 1;
  const int C = g.channels;
  const PixelPos pp = pixel_pos(g, i);
  const S wi = S(P.w[P.w_map ? i : 0]);
  S scale = S(1);
  if (ISO) {
    S n2 = S(0);
    TVND_UNROLL for (int d = 0; d < kMaxDims; ++d) if (d < g.nd) {
      const int64_t off = next_offset(g, pp, d);
      for (int c = 0; c < C; ++c) {
        const S* r = P.r + (c * g.lines + pp.l) * pitch + pp.j;
        const S v = ascent(P.q[(d * C + c) * n + i], r[off], r[0], inv_l);
        n2 += v * v;
      }
    }
    scale = ball_scale(n2, wi);
  }
  S dacc = S(0);
  TVND_UNROLL for (int d = 0; d < kMaxDims; ++d) if (d < g.nd) {
    const int64_t off = next_offset(g, pp, d);
    for (int c = 0; c < C; ++c) {
      const S* r = P.r + (c * g.lines + pp.l) * pitch + pp.j;
      S* q = P.q + (d * C + c) * n + i;
      S* p = P.p + (d * C + c) * n + i;
      const S v = ascent(*q, r[off], r[0], inv_l);
      const S pn = ISO ? v * scale : box(v, wi);
      dacc += (*q - pn) * (pn - *p);
      *q = momentum(pn, *p, beta);
      *p = pn;
    }
  }
  return double(dacc);
}

template <typename T, typename S, bool ISO>
TV_HOST_DEVICE TV_INLINE void cert_scale_at(const Geometry& g, const Problem<T, S>& P, int64_t i) {
  const int64_t n = g.n;
  const int C = g.channels;
  if (!ISO) {
    P.s[i] = double(P.w[P.w_map ? i : 0]);
    return;
  }
  double n2 = 0.0;
  TVND_UNROLL for (int d = 0; d < kMaxDims; ++d) if (d < g.nd) {
    for (int c = 0; c < C; ++c) {
      const double v = double(P.p[(d * C + c) * n + i]);
      n2 += v * v;
    }
  }
  P.s[i] = ball_scale(n2, double(P.w[P.w_map ? i : 0]));
}

template <typename T, typename S, bool ISO>
TV_HOST_DEVICE TV_INLINE void cert_y_at(const Geometry& g, const Problem<T, S>& P, int64_t i) {
  const int64_t n = g.n, W = g.w;
  const int C = g.channels;
  const PixelPos pp = pixel_pos(g, i);
  for (int c = 0; c < C; ++c) {
    double acc = double(P.x[c * n + i]);
    TVND_UNROLL for (int d = 0; d < kMaxDims; ++d) if (d < g.nd) {
      const S* p = P.p + (d * C + c) * n;
      const double cur = feasible<ISO>(double(p[i]), P.s[i]);
      double prev = 0.0;
      if (!((pp.first >> d) & 1u))
        prev = feasible<ISO>(double(p[i - g.stride[d]]), P.s[i - g.stride[d]]);
      acc += cur - prev;
    }
    double* y = P.y + (c * g.lines + pp.l) * (W + 1);
    y[pp.j] = acc;
    if (pp.j == W - 1) y[W] = acc;
  }
}

// Pixel i's gap terms (iso: one; aniso: one per entry, summed in (d, c) order).
template <typename T, typename S, bool ISO>
TV_HOST_DEVICE TV_INLINE double gap_at(const Geometry& g, const Problem<T, S>& P, int64_t i) {
  const int64_t n = g.n, pitch = g.w + 1;
  const int C = g.channels;
  const PixelPos pp = pixel_pos(g, i);
  const double si = P.s[i];
  double n2 = 0.0, inner = 0.0, sum = 0.0;
  TVND_UNROLL for (int d = 0; d < kMaxDims; ++d) if (d < g.nd) {
    const int64_t off = next_offset(g, pp, d);
    for (int c = 0; c < C; ++c) {
      const double* y = P.y + (c * g.lines + pp.l) * pitch + pp.j;
      const double dy = y[off] - y[0];
      const double pv = double(P.p[(d * C + c) * n + i]);
      if (ISO) {
        n2 += dy * dy;
        inner += feasible<true>(pv, si) * dy;
      } else {
        const double size = si * (dy < 0.0 ? -dy : dy);
        sum += gap_term(size, feasible<false>(pv, si) * dy, 1);
      }
    }
  }
  if (ISO) return gap_term(double(P.w[P.w_map ? i : 0]) * sqrt_of(n2), inner, g.nd * int(C));
  return sum;
}

}  // namespace tvnd
}  // namespace core
}  // namespace tvcli
