// Paper-mode 2-D TV forward with many lines of an image solved at once in AVX-512
// lanes (declarations and contract: tv2d_paper_simd.h).
//
// Why: on a layer's small, noise-like feature maps Condat's sweep makes a jump every
// 1-3 samples, and each jump is a mispredicted branch (~7.5 ns per sample on one
// core, docs/tv2d.md). Here 8 lines run Condat's sweep in the 8 lanes of a vector
// register, every branch a masked select, so a lane's jump costs no misprediction.
// Two ideas keep the lanes busy (an earlier lockstep try with GCC vector extensions
// lost to the scalar sweep: docs/benchmarks_2d.md):
//  * a lane whose line is done takes the pass's next line at once (a queue of
//    line indices, vpexpandq), so lanes do not wait for the slowest line;
//  * a jump restarts the sweep at the sample after the closed segment, x[kminus + 1]
//    or x[kplus + 1]; each lane keeps those two samples from the step that read them
//    (the step with k == kminus reads x[k + 1]), so a step does one gather, not two.
// A closed segment writes its value only at its last sample (one masked scatter into
// a NaN-filled array); a reverse scan over the positions then fills every run, for
// all lines of the pass at once (lines are contiguous: position-major layout).
// The row pass works on the transposed image (its lines are then contiguous), the
// column pass on the image itself; Y and Z are transposed once per iteration.
//
// Exactness: every lane does the scalar sweep's operations on the same operands in
// the same order (IEEE adds, subtracts, multiplies; 1/m by a correctly rounded
// division, equal to the scalar code's table entry), with no fused multiply-add
// (intrinsics are explicit; -ffp-contract=off), so outputs and jump signs equal
// core::tv2d_dykstra_forward's bit for bit (tests/test_paper_simd.py; also
// tests/tools/compare_builds.py against the previous build). Lines the scalar code
// settles before the sweep (lam 0, one sample, non-finite, or lam large enough for
// a constant line: tv1d_prescreen) are handed to that same scalar code.
#include "tv2d_paper_simd.h"

#include <stdlib.h>
#include <string.h>

#include "../core/tv1d_direct.h"
#include "../core/tv2d_dykstra.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(TVCLI_NO_SIMD) && !defined(__CUDACC__)
#define TVCLI_PAPER_AVX512 1
#include <immintrin.h>
#endif

namespace tvcli {
namespace cpu {
namespace {

// Scalar pieces, compiled for the baseline target (before the target pragma below):
// the AVX-512 code calls them for rare lines and images.

template <typename T>
__attribute__((noinline)) void image_scalar(const T* x, T* y, int8_t* sgn, int64_t h,
                                            int64_t w, int64_t iters, double lam, double* ws,
                                            bool sharp) {
  core::tv2d_dykstra_forward<T, double>(x, y, sgn, h, w, iters, lam, ws,
                                        core::LineSolver::kCondat, sharp);
}

template <typename T>
__attribute__((noinline)) double image_backward_scalar(const int8_t* sgn, const T* g, T* gx,
                                                       int64_t h, int64_t w, int64_t iters,
                                                       bool identity, double* ws) {
  return core::tv2d_dykstra_backward<T, double>(sgn, g, gx, h, w, iters, identity, ws);
}

#if defined(TVCLI_PAPER_AVX512)
// The scalar 1-D prox of one strided line (what the scalar paper mode runs on a
// gathered copy of the line: the stride does not change any operation).
__attribute__((noinline)) void line_scalar(const double* x, int64_t n, int64_t ld, double* y,
                                           double lam) {
  core::tv1d_direct<double, double>(x, n, ld, y, ld, lam);
}

// The value close_segment gives a segment of kLongSegment or more samples.
__attribute__((noinline)) double long_segment_value(const double* x, int64_t ld, int64_t k0,
                                                    int64_t k1, double u_in, double u_out) {
  return core::segment_value<double, double, core::CountInverse>(x, ld, k0, k1, u_in, u_out);
}

// The plain per-line loop of a pass (core::run_means_lines), for the lines left
// over after the strips of 8.
template <core::LockstepIO IO, typename Tin>
__attribute__((noinline)) double lines_scalar(const Tin* a, double* d, double* m,
                                              const int8_t* s, int64_t n, int64_t L,
                                              int64_t ld, double* c, double* cnt) {
  return core::run_means_lines<IO, Tin, double>(a, d, m, s, n, L, ld, c, cnt);
}
template double lines_scalar<core::LockstepIO::kFirst, float>(const float*, double*, double*,
                                                              const int8_t*, int64_t, int64_t,
                                                              int64_t, double*, double*);
template double lines_scalar<core::LockstepIO::kFirst, double>(const double*, double*, double*,
                                                               const int8_t*, int64_t, int64_t,
                                                               int64_t, double*, double*);
template double lines_scalar<core::LockstepIO::kUpdate, double>(const double*, double*,
                                                                double*, const int8_t*,
                                                                int64_t, int64_t, int64_t,
                                                                double*, double*);
template double lines_scalar<core::LockstepIO::kInPlace, double>(const double*, double*,
                                                                 double*, const int8_t*,
                                                                 int64_t, int64_t, int64_t,
                                                                 double*, double*);

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
#endif

// Lines solved in lanes per pass: groups of 8 interleaved in one loop, so that one
// group's gather latency overlaps the others' arithmetic. Measured on (64, 32, 32),
// K = 4, one thread (loaded machine, ns per sample and pass): 1 group 9.0, 2 groups
// 6.3-7.9, 4 groups 7.3 (more groups: fewer lines per lane, longer tails).
constexpr int kGroups = 2;

}  // namespace

bool paper_simd_enabled() {
#if defined(TVCLI_PAPER_AVX512)
  static const bool has = cpu_has_avx512();
  if (!has) return false;
  const char* env = getenv("TVCLI_PAPER_SIMD");
  return env == nullptr || env[0] != '0';
#else
  return false;
#endif
}

int64_t paper_simd_workspace(int64_t h, int64_t w) {
  const int64_t hw = h * w, n = h > w ? h : w;
  // 7 image-sized arrays and the queue of line indices (int64, same size as double),
  // or the scalar code's workspace for images with NaN/Inf.
  const int64_t simd = 7 * hw + n + 8 * (kGroups + 1);
  const int64_t scalar = core::tv2d_dykstra_workspace(h, w);
  return simd > scalar ? simd : scalar;
}

#if defined(TVCLI_PAPER_AVX512)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl")
// g++ 12's AVX-512 headers start some intrinsics from an "undefined" register and
// then warn that it may be used uninitialized (a false positive of the headers).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace {

#define TV_AI inline __attribute__((always_inline))

// One pass: L lines of n samples; sample p of line l at X[p * ld + l] (position-major).
struct Pass {
  const double* X;
  double* V;  // closed segments' values at their last sample, NaN elsewhere
  int64_t ld, n;
  const int64_t* queue;  // line indices to solve, then >= 8 * kGroups entries of -1
  int64_t qpos, qend;
  __m512d lam, minlam, twolam;
  __m512i vld, vlast;  // ld, (n - 1) * ld
};

// 8 lanes, each running Condat's sweep (tv1d_condat) on one line. Positions are
// kept as addresses (k * ld + line) so that a step needs no multiply; lengths of
// the open segment (k - k0 + 1) and of the segments that would close at kminus /
// kplus as doubles (exact integers) for 1 / m and the long-segment test.
struct Group {
  __m512i K, K0, KM, KP, Klast, line;
  __m512d cnt, cm, cp, umin, umax, vmin, vmax, uin, xam, xap;
  __mmask8 act;
};

// Lanes in `fin` take the next lines of the queue (or go idle when it is empty),
// with tv1d_condat's initial state.
TV_AI void refill(Group& g, Pass& p, __mmask8 fin) {
  const __m512i nl = _mm512_mask_expandloadu_epi64(g.line, fin, p.queue + p.qpos);
  const int64_t took = __builtin_popcount(unsigned(fin));
  p.qpos = p.qpos + took < p.qend ? p.qpos + took : p.qend;
  g.line = nl;
  const __mmask8 got = fin & _mm512_cmpge_epi64_mask(nl, _mm512_setzero_si512());
  g.act = __mmask8((g.act & ~fin) | got);
  g.K = _mm512_mask_mov_epi64(g.K, fin, nl);
  g.K0 = _mm512_mask_mov_epi64(g.K0, fin, nl);
  g.KM = _mm512_mask_mov_epi64(g.KM, fin, nl);
  g.KP = _mm512_mask_mov_epi64(g.KP, fin, nl);
  g.Klast = _mm512_mask_add_epi64(g.Klast, fin, nl, p.vlast);
  const __m512d one = _mm512_set1_pd(1.0);
  g.cnt = _mm512_mask_mov_pd(g.cnt, fin, one);
  g.cm = _mm512_mask_mov_pd(g.cm, fin, one);
  g.cp = _mm512_mask_mov_pd(g.cp, fin, one);
  const __m512d x0 = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), got, nl, p.X, 8);
  g.vmin = _mm512_mask_sub_pd(g.vmin, fin, x0, p.lam);  // A(x[0]) - lam
  g.vmax = _mm512_mask_add_pd(g.vmax, fin, x0, p.lam);
  g.umin = _mm512_mask_mov_pd(g.umin, fin, p.lam);
  g.umax = _mm512_mask_mov_pd(g.umax, fin, p.minlam);
  g.uin = _mm512_mask_mov_pd(g.uin, fin, _mm512_setzero_pd());
}

// Segments of kLongSegment or more samples take their value from their samples
// (close_segment / segment_value): rare (a line's whole 64 samples at once, on
// these images), so done lane by lane.
__attribute__((noinline)) void fix_long(const Pass& p, __mmask8 lng, __m512i K0, __m512i end,
                                        __m512i line, __m512d uin, __m512d uout) {
  alignas(64) int64_t k0a[8], enda[8], linea[8];
  alignas(64) double uina[8], uouta[8];
  _mm512_store_si512(k0a, K0);
  _mm512_store_si512(enda, end);
  _mm512_store_si512(linea, line);
  _mm512_store_pd(uina, uin);
  _mm512_store_pd(uouta, uout);
  for (int l = 0; l < 8; ++l) {
    if (!((lng >> l) & 1)) continue;
    const int64_t k0 = (k0a[l] - linea[l]) / p.ld, k1 = (enda[l] - linea[l]) / p.ld;
    p.V[enda[l]] = long_segment_value(p.X + linea[l], p.ld, k0, k1, uina[l], uouta[l]);
  }
}

// 1 / m correctly rounded (the scalar code's CountInverse, bit for bit: its table
// holds the correctly rounded 1.0 / i): from two registers of the table for m < 16
// (a permute, off the divider), by division where some lane's m is larger.
TV_AI __m512d inverse(__m512d m) {
  const __m512d lo = _mm512_set_pd(1.0 / 7, 1.0 / 6, 1.0 / 5, 1.0 / 4, 1.0 / 3, 1.0 / 2, 1.0, 0.0);
  const __m512d hi = _mm512_set_pd(1.0 / 15, 1.0 / 14, 1.0 / 13, 1.0 / 12, 1.0 / 11, 1.0 / 10,
                                   1.0 / 9, 1.0 / 8);
  const __m512d r = _mm512_permutex2var_pd(lo, _mm512_cvttpd_epi64(m), hi);
  const __mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(16.0), _CMP_GE_OQ);
  if (__builtin_expect(big == 0, 1)) return r;
  return _mm512_mask_div_pd(r, big, _mm512_set1_pd(1.0), m);
}

// One event of every active lane: at the last sample a boundary action (negative or
// positive jump, or the final segment), else the next sample (a jump or an
// extension) -- one iteration of tv1d_condat's loops. Long: lines of kLongSegment
// or more samples, whose long segments take their value from their samples (the
// bookkeeping for that -- K0, u_in, the lengths at kminus / kplus -- costs ~10 of a
// step's ~70 vector instructions, so shorter lines skip it).
template <bool Long>
TV_AI void step(Group& g, Pass& p) {
  const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
  const __mmask8 atB = _mm512_mask_cmpeq_epi64_mask(g.act, g.K, g.Klast);
  const __mmask8 inner = __mmask8(g.act & ~atB);
  const __m512d xn =
      _mm512_mask_i64gather_pd(zero, inner, _mm512_add_epi64(g.K, p.vld), p.X, 8);
  // x[kminus + 1], x[kplus + 1]: read by the step at k == kminus (kplus).
  g.xam = _mm512_mask_mov_pd(g.xam, _mm512_mask_cmpeq_epi64_mask(inner, g.K, g.KM), xn);
  g.xap = _mm512_mask_mov_pd(g.xap, _mm512_mask_cmpeq_epi64_mask(inner, g.K, g.KP), xn);
  // umin += xnext - vmin; umax += xnext - vmax
  const __m512d umin2 = _mm512_add_pd(g.umin, _mm512_sub_pd(xn, g.vmin));
  const __m512d umax2 = _mm512_add_pd(g.umax, _mm512_sub_pd(xn, g.vmax));
  const __mmask8 ineg = _mm512_mask_cmp_pd_mask(inner, umin2, p.minlam, _CMP_LT_OQ);
  const __mmask8 ipos =
      _mm512_mask_cmp_pd_mask(__mmask8(inner & ~ineg), umax2, p.lam, _CMP_GT_OQ);
  const __mmask8 ext = __mmask8(inner & ~ineg & ~ipos);
  const __mmask8 bneg = _mm512_mask_cmp_pd_mask(atB, g.umin, zero, _CMP_LT_OQ);
  const __mmask8 bpos = _mm512_mask_cmp_pd_mask(__mmask8(atB & ~bneg), g.umax, zero, _CMP_GT_OQ);
  const __mmask8 fin = __mmask8(atB & ~bneg & ~bpos);
  const __mmask8 neg = __mmask8(ineg | bneg), pos = __mmask8(ipos | bpos);
  const __mmask8 jump = __mmask8(neg | pos);

  // Extension: ++k, so the open segment's length m = k - k0 + 1 grows by one.
  g.K = _mm512_mask_add_epi64(g.K, ext, g.K, p.vld);
  const __m512d cnt = _mm512_mask_add_pd(g.cnt, ext, g.cnt, one);
  // 1 / m for extensions (the new m) and final segments (m unchanged): one lookup.
  const __m512d inv = inverse(cnt);

  // The closed segment (jumps and final segments): its value at its last sample.
  // Final: vmin += div_count(umin, k - k0 + 1), closed at k.
  const __m512d vfin = _mm512_add_pd(g.vmin, _mm512_mul_pd(g.umin, inv));
  const __m512d val = _mm512_mask_mov_pd(_mm512_mask_mov_pd(vfin, pos, g.vmax), neg, g.vmin);
  const __m512i end = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(g.K, pos, g.KP), neg, g.KM);
  const __mmask8 close = __mmask8(jump | fin);
  _mm512_mask_i64scatter_pd(p.V, close, end, val, 8);
  if constexpr (Long) {
    const __m512d len = _mm512_mask_mov_pd(_mm512_mask_mov_pd(cnt, pos, g.cp), neg, g.cm);
    const __mmask8 lng = _mm512_mask_cmp_pd_mask(
        close, len, _mm512_set1_pd(double(core::kLongSegment)), _CMP_GE_OQ);
    if (__builtin_expect(lng != 0, 0)) {
      const __m512d uout =
          _mm512_mask_mov_pd(_mm512_mask_mov_pd(zero, pos, p.minlam), neg, p.lam);
      fix_long(p, lng, g.K0, end, g.line, g.uin, uout);
    }
  }

  // Extension, continued: umin >= lam: kminus = k, vmin += div_count(umin - lam, m),
  // umin = lam; umax <= -lam likewise. Jumps restart just after the closed segment
  // with fresh bounds: negative: vmin = x[k0], vmax = vmin + 2 lam; positive: vmax =
  // x[k0], vmin = vmax - 2 lam; umin = lam, umax = -lam. (Lanes that neither extend
  // nor jump are final, and refill() below sets all of their state.)
  const __mmask8 cmn = _mm512_mask_cmp_pd_mask(ext, umin2, p.lam, _CMP_GE_OQ);
  const __mmask8 cmx = _mm512_mask_cmp_pd_mask(ext, umax2, p.minlam, _CMP_LE_OQ);
  const __m512i k0n = _mm512_add_epi64(end, p.vld);
  g.K = _mm512_mask_mov_epi64(g.K, jump, k0n);
  g.KM = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(g.KM, cmn, g.K), jump, k0n);
  g.KP = _mm512_mask_mov_epi64(_mm512_mask_mov_epi64(g.KP, cmx, g.K), jump, k0n);
  g.cnt = _mm512_mask_mov_pd(cnt, jump, one);
  g.umin = _mm512_mask_mov_pd(p.lam, __mmask8(ext & ~cmn), umin2);
  g.umax = _mm512_mask_mov_pd(p.minlam, __mmask8(ext & ~cmx), umax2);
  __m512d vmin = _mm512_mask_add_pd(g.vmin, cmn, g.vmin,
                                    _mm512_mul_pd(_mm512_sub_pd(umin2, p.lam), inv));
  __m512d vmax = _mm512_mask_add_pd(g.vmax, cmx, g.vmax,
                                    _mm512_mul_pd(_mm512_add_pd(umax2, p.lam), inv));
  vmin = _mm512_mask_mov_pd(vmin, neg, g.xam);
  vmax = _mm512_mask_add_pd(vmax, neg, g.xam, p.twolam);
  vmax = _mm512_mask_mov_pd(vmax, pos, g.xap);
  vmin = _mm512_mask_sub_pd(vmin, pos, g.xap, p.twolam);
  g.vmin = vmin;
  g.vmax = vmax;
  if constexpr (Long) {
    g.K0 = _mm512_mask_mov_epi64(g.K0, jump, k0n);
    g.cm = _mm512_mask_mov_pd(_mm512_mask_mov_pd(g.cm, cmn, cnt), jump, one);
    g.cp = _mm512_mask_mov_pd(_mm512_mask_mov_pd(g.cp, cmx, cnt), jump, one);
    g.uin = _mm512_mask_mov_pd(_mm512_mask_mov_pd(g.uin, neg, p.lam), pos, p.minlam);
  }
  if (fin != 0) refill(g, p, fin);
}

// Solves the queued lines of a pass into p.V (closed segments' last samples).
template <bool Long>
void sweep_lines(Pass& p) {
  Group g[kGroups];
  for (int q = 0; q < kGroups; ++q) {
    g[q].line = _mm512_set1_epi64(-1);
    g[q].act = 0;
    g[q].K = g[q].K0 = g[q].KM = g[q].KP = g[q].Klast = g[q].line;
    g[q].cnt = g[q].cm = g[q].cp = g[q].umin = g[q].umax = _mm512_setzero_pd();
    g[q].vmin = g[q].vmax = g[q].uin = g[q].xam = g[q].xap = _mm512_setzero_pd();
    refill(g[q], p, 0xFF);
  }
  for (;;) {
    unsigned any = 0;
    for (int q = 0; q < kGroups; ++q) any |= g[q].act;
    if (any == 0) break;
    for (int q = 0; q < kGroups; ++q) {
      // An idle group (queue empty, its lines done) would still cost a full step.
      if (g[q].act != 0) step<Long>(g[q], p);
    }
  }
}

// The 1-D prox of every line of a pass: X -> V (n positions x L lines, row stride ld
// = L). queue: L + 8 * (kGroups + 1) int64 of scratch.
void prox_lines(const double* X, double* V, int64_t n, int64_t L, double lam, int64_t* queue) {
  const int64_t ld = L, total = n * L;
  // lam 0 or one sample: tv1d_prescreen's identity (or NaN for a bad lam). Fewer
  // lines than a vector's lanes: the scalar sweep is faster (measured: 1 x 17 and
  // 19 x 1 images ~10x slower in lanes).
  if (!(lam > 0.0) || n == 1 || L < 8) {
    for (int64_t l = 0; l < L; ++l) line_scalar(X + l, n, ld, V + l, lam);
    return;
  }
  const __m512d nan = _mm512_set1_pd(__builtin_nan(""));
  int64_t k = 0;
  for (; k + 8 <= total; k += 8) _mm512_storeu_pd(V + k, nan);
  for (; k < total; ++k) V[k] = __builtin_nan("");
  // tv1d_prescreen per line (8 lines per vector): non-finite lines, and lines whose
  // prox is their mean (lam >= n (max - min) / 4), go to the scalar code.
  int64_t nq = 0;
  const double quarter_n = 0.25 * double(n);
  int64_t l = 0;
  for (; l + 8 <= L; l += 8) {
    __m512d lo = _mm512_loadu_pd(X + l), hi = lo, poison = _mm512_setzero_pd();
    for (int64_t q = 0; q < n; ++q) {
      const __m512d v = _mm512_loadu_pd(X + q * ld + l);
      poison = _mm512_add_pd(poison, _mm512_sub_pd(v, v));
      lo = _mm512_min_pd(v, lo);  // v < lo ? v : lo
      hi = _mm512_max_pd(v, hi);  // v > hi ? v : hi
    }
    const __mmask8 finite = _mm512_cmp_pd_mask(poison, _mm512_setzero_pd(), _CMP_EQ_OQ);
    const __mmask8 mean =
        _mm512_cmp_pd_mask(_mm512_set1_pd(lam),
                           _mm512_mul_pd(_mm512_set1_pd(quarter_n), _mm512_sub_pd(hi, lo)),
                           _CMP_GE_OQ);
    const __mmask8 sweep = __mmask8(finite & ~mean);
    for (int b = 0; b < 8; ++b) {
      if ((sweep >> b) & 1) {
        queue[nq++] = l + b;
      } else {
        line_scalar(X + l + b, n, ld, V + l + b, lam);
      }
    }
  }
  for (; l < L; ++l) {
    double lo = X[l], hi = lo, poison = 0.0;
    for (int64_t q = 0; q < n; ++q) {
      const double v = X[q * ld + l];
      poison += v - v;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    if (poison == 0.0 && !(lam >= quarter_n * (hi - lo))) {
      queue[nq++] = l;
    } else {
      line_scalar(X + l, n, ld, V + l, lam);
    }
  }
  for (int64_t q = nq; q < nq + 8 * (kGroups + 1); ++q) queue[q] = -1;
  if (nq > 0) {
    Pass p;
    p.X = X;
    p.V = V;
    p.ld = ld;
    p.n = n;
    p.queue = queue;
    p.qpos = 0;
    p.qend = nq;
    p.lam = _mm512_set1_pd(lam);
    p.minlam = _mm512_set1_pd(-lam);
    p.twolam = _mm512_set1_pd(lam + lam);
    p.vld = _mm512_set1_epi64(ld);
    p.vlast = _mm512_set1_epi64((n - 1) * ld);
    if (n >= core::kLongSegment) {
      sweep_lines<true>(p);
    } else {
      sweep_lines<false>(p);
    }
  }
  // Runs: every sample takes the value stored at the end of its segment.
  l = 0;
  for (; l + 8 <= L; l += 8) {
    __m512d next = _mm512_loadu_pd(V + (n - 1) * ld + l);
    for (int64_t q = n - 2; q >= 0; --q) {
      __m512d v = _mm512_loadu_pd(V + q * ld + l);
      v = _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q), next);
      _mm512_storeu_pd(V + q * ld + l, v);
      next = v;
    }
  }
  for (; l < L; ++l) {
    for (int64_t q = n - 2; q >= 0; --q) {
      double& v = V[q * ld + l];
      if (v != v) v = V[(q + 1) * ld + l];
    }
  }
}

// jump_sign(a, b) for 8 pairs, as 8 bytes.
TV_AI int64_t signs8(__m512d a, __m512d b) {
  const __mmask8 gt = _mm512_cmp_pd_mask(b, a, _CMP_GT_OQ);
  const __mmask8 lt = _mm512_cmp_pd_mask(b, a, _CMP_LT_OQ);
  const __m128i s = _mm512_cvtepi64_epi8(
      _mm512_mask_mov_epi64(_mm512_maskz_mov_epi64(gt, _mm512_set1_epi64(1)), lt,
                            _mm512_set1_epi64(-1)));
  return _mm_cvtsi128_si64(s);
}

// sgn[i * w + j] = jump_sign(a[i * w + j], a[i * w + j + 1]) for j < w - 1, 0 at j = w - 1
// (row signs); with next = a + w and rows h - 1: column signs.
void signs_plane(const double* a, const double* next, int64_t rows, int64_t w, int64_t len,
                 int8_t* s) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t o = i * w;
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
      const int64_t v = signs8(_mm512_loadu_pd(a + o + j), _mm512_loadu_pd(next + o + j));
      memcpy(s + o + j, &v, 8);
    }
    for (; j < len; ++j) s[o + j] = core::jump_sign(a[o + j], next[o + j]);
    for (; j < w; ++j) s[o + j] = 0;
  }
}

// Columns of the 8 x 8 block whose rows are r[0..7] (row stride irrelevant): on
// return r[j] holds column j. Unpacks, then two rounds of two-register permutes.
TV_AI void transpose8x8(__m512d r[8]) {
  __m512d a[4], b[4], c[4], d[4];
  for (int k = 0; k < 4; ++k) {
    a[k] = _mm512_unpacklo_pd(r[2 * k], r[2 * k + 1]);  // rows 2k, 2k+1: cols 0 2 4 6
    b[k] = _mm512_unpackhi_pd(r[2 * k], r[2 * k + 1]);  // cols 1 3 5 7
  }
  const __m512i lo2 = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
  const __m512i hi2 = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  for (int k = 0; k < 2; ++k) {
    c[2 * k] = _mm512_permutex2var_pd(a[2 * k], lo2, a[2 * k + 1]);      // cols 0, 4
    c[2 * k + 1] = _mm512_permutex2var_pd(a[2 * k], hi2, a[2 * k + 1]);  // cols 2, 6
    d[2 * k] = _mm512_permutex2var_pd(b[2 * k], lo2, b[2 * k + 1]);      // cols 1, 5
    d[2 * k + 1] = _mm512_permutex2var_pd(b[2 * k], hi2, b[2 * k + 1]);  // cols 3, 7
  }
  const __m512i lo4 = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
  const __m512i hi4 = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);
  r[0] = _mm512_permutex2var_pd(c[0], lo4, c[2]);
  r[4] = _mm512_permutex2var_pd(c[0], hi4, c[2]);
  r[2] = _mm512_permutex2var_pd(c[1], lo4, c[3]);
  r[6] = _mm512_permutex2var_pd(c[1], hi4, c[3]);
  r[1] = _mm512_permutex2var_pd(d[0], lo4, d[2]);
  r[5] = _mm512_permutex2var_pd(d[0], hi4, d[2]);
  r[3] = _mm512_permutex2var_pd(d[1], lo4, d[3]);
  r[7] = _mm512_permutex2var_pd(d[1], hi4, d[3]);
}

// dst[j * h + i] = src[i * w + j] (+ add[j * h + i] when add is given): 8 x 8 blocks
// in registers, the edges element by element.
void transpose(const double* src, int64_t h, int64_t w, double* dst, const double* add) {
  const int64_t h8 = h - h % 8, w8 = w - w % 8;
  for (int64_t i0 = 0; i0 < h8; i0 += 8) {
    for (int64_t j0 = 0; j0 < w8; j0 += 8) {
      __m512d r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm512_loadu_pd(src + (i0 + k) * w + j0);
      transpose8x8(r);
      for (int k = 0; k < 8; ++k) {
        double* o = dst + (j0 + k) * h + i0;
        _mm512_storeu_pd(o, add == nullptr ? r[k] : _mm512_add_pd(r[k], _mm512_loadu_pd(add + (j0 + k) * h + i0)));
      }
    }
  }
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = i < h8 ? w8 : 0; j < w; ++j) {
      dst[j * h + i] = add == nullptr ? src[i * w + j] : src[i * w + j] + add[j * h + i];
    }
  }
}

template <typename T>
void forward_image(const T* x, T* y, int8_t* sgn, int64_t h, int64_t w, int64_t iters,
                   double lam, double* ws, bool sharp) {
  const int64_t hw = h * w;
  double* Pt = ws;       // P, transposed (row pass space)
  double* Q = Pt + hw;   // Q
  double* At = Q + hw;   // row pass input Y + P, transposed
  double* B = At + hw;   // column pass input Z + Q
  double* Zt = B + hw;   // row pass output, transposed
  double* Z = Zt + hw;   // row pass output
  double* Y = Z + hw;    // column pass output
  int64_t* queue = reinterpret_cast<int64_t*>(Y + hw);
  bool finite = true;
  for (int64_t k = 0; k < hw; ++k) finite = finite && core::is_finite(double(x[k]));
  if (!finite) {
    image_scalar<T>(x, y, sgn, h, w, iters, lam, ws, sharp);
    return;
  }
  for (int64_t k = 0; k < hw; ++k) {
    Pt[k] = 0.0;
    Q[k] = 0.0;
    Y[k] = double(x[k]);
  }
  transpose(Y, h, w, At, Pt);  // Y + P with P = 0 (as the scalar code: -0 + 0 = +0)
  for (int64_t it = 0; it < iters; ++it) {
    int8_t* sr = sgn + (2 * it) * hw;
    int8_t* sc = sr + hw;
    // Rows: Z = prox_rows(Y + P); P = (Y + P) - Z.
    prox_lines(At, Zt, w, h, lam, queue);
    for (int64_t k = 0; k < hw; ++k) Pt[k] = At[k] - Zt[k];
    transpose(Zt, w, h, Z, nullptr);
    signs_plane(Z, Z + 1, h, w, w - 1, sr);
    // Columns: Y = prox_cols(Z + Q); Q = (Z + Q) - Y.
    for (int64_t k = 0; k < hw; ++k) B[k] = Z[k] + Q[k];
    prox_lines(B, Y, h, w, lam, queue);
    for (int64_t k = 0; k < hw; ++k) Q[k] = B[k] - Y[k];
    signs_plane(Y, Y + w, h - 1, w, w, sc);
    for (int64_t j = 0; j < w; ++j) sc[(h - 1) * w + j] = 0;
    if (it + 1 < iters) transpose(Y, h, w, At, Pt);
  }
  // Sharpening as the scalar code (core::sharpen_store: a multiply by 2, then one
  // subtraction; the compiler may vectorise it but not contract it).
  if (sharp) {
    for (int64_t k = 0; k < hw; ++k) y[k] = core::sharpen_store(x[k], T(Y[k]));
  } else {
    for (int64_t k = 0; k < hw; ++k) y[k] = T(Y[k]);
  }
}


// ------------------------------------------------------------------ backward
//
// core::tv2d_dykstra_backward with its strips of 8 lines in one register instead of
// four 2-wide ones: the same operations per line in the same order (run sums with
// "keep ? c + x : -0 + x", c / count by division, the reverse select, s * (out -
// next) by a sign flip), and each strip's dL/dlam reduced in the 2-wide code's
// order ((lanes 0+2) + (4+6)) + ((1+3) + (5+7)), so gradients and dL/dlam are equal
// bit for bit. Transposes of the row pass in 8 x 8 register blocks.

template <core::LockstepIO IO, typename Tin>
TV_AI __m512d bwd_input(const Tin* a, const double* d, const double* m, int64_t k) {
  if constexpr (IO == core::LockstepIO::kFirst) {
    if constexpr (sizeof(Tin) == 4) {
      return _mm512_cvtps_pd(_mm256_loadu_ps(reinterpret_cast<const float*>(a) + k));
    } else {
      return _mm512_loadu_pd(reinterpret_cast<const double*>(a) + k);
    }
  } else if constexpr (IO == core::LockstepIO::kUpdate) {
    return _mm512_sub_pd(_mm512_loadu_pd(reinterpret_cast<const double*>(a) + k),
                         _mm512_loadu_pd(d + k));
  } else {
    return _mm512_loadu_pd(m + k);
  }
}

template <core::LockstepIO IO>
TV_AI void bwd_output(double* d, double* m, int64_t k, __m512d out) {
  if constexpr (IO == core::LockstepIO::kFirst) _mm512_storeu_pd(d + k, out);
  if constexpr (IO == core::LockstepIO::kUpdate)
    _mm512_storeu_pd(d + k, _mm512_add_pd(_mm512_loadu_pd(d + k), out));
  if constexpr (IO == core::LockstepIO::kInPlace) _mm512_storeu_pd(m + k, out);
}

TV_AI __m128i load_signs8(const int8_t* p) {
  int64_t t;
  memcpy(&t, p, 8);
  return _mm_cvtsi64_si128(t);
}

// 8 lines of a pass (core::simd::run_means_strip8's contract and values).
template <core::LockstepIO IO, typename Tin>
double bwd_strip8(const Tin* a, double* d, double* m, const int8_t* s, int64_t n, int64_t ld) {
  const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd();
  const __m512d negzero = _mm512_set1_pd(-0.0);
  __m512d c = bwd_input<IO, Tin>(a, d, m, 0), cnt = one;
  _mm512_storeu_pd(m, c);
  for (int64_t p = 1; p < n; ++p) {
    const int64_t o = p * ld;
    const __mmask8 keep =
        __mmask8(_mm_cmpeq_epi8_mask(load_signs8(s + o - ld), _mm_setzero_si128()));
    const __m512d x = bwd_input<IO, Tin>(a, d, m, o);
    c = _mm512_add_pd(_mm512_mask_mov_pd(negzero, keep, c), x);  // keep ? c + x : -0 + x
    cnt = _mm512_add_pd(_mm512_maskz_mov_pd(keep, cnt), one);
    _mm512_storeu_pd(m + o, _mm512_div_pd(c, cnt));
  }
  const int64_t last = (n - 1) * ld;
  __m512d next = _mm512_loadu_pd(m + last);
  __m512d acc = n == 1 ? _mm512_mul_pd(zero, next) : zero;
  bwd_output<IO>(d, m, last, next);
  for (int64_t p = n - 2; p >= 0; --p) {
    const int64_t o = p * ld;
    const __m128i sg = load_signs8(s + o);
    const __mmask8 end = __mmask8(~_mm_cmpeq_epi8_mask(sg, _mm_setzero_si128()));
    const __mmask8 neg = __mmask8(_mm_cmplt_epi8_mask(sg, _mm_setzero_si128()));
    const __m512d out = _mm512_mask_mov_pd(next, end, _mm512_loadu_pd(m + o));
    const __m512d diff = _mm512_sub_pd(out, next);
    acc = _mm512_add_pd(acc, _mm512_mask_xor_pd(diff, neg, diff, negzero));  // s * (out - next)
    next = out;
    bwd_output<IO>(d, m, o, out);
  }
  alignas(64) double t[8];
  _mm512_store_pd(t, acc);
  return ((t[0] + t[2]) + (t[4] + t[6])) + ((t[1] + t[3]) + (t[5] + t[7]));
}

// core::run_means: strips of 8 lines, then the rest line by line.
template <core::LockstepIO IO, typename Tin>
double bwd_pass(const Tin* a, double* d, double* m, const int8_t* s, int64_t n, int64_t L,
                int64_t ld, double* c, double* cnt) {
  double glam = 0.0;
  int64_t l0 = 0;
  for (; l0 + 8 <= L; l0 += 8) {
    glam += bwd_strip8<IO, Tin>(a == nullptr ? a : a + l0, d == nullptr ? d : d + l0, m + l0,
                                s + l0, n, ld);
  }
  if (l0 < L) {
    glam += lines_scalar<IO, Tin>(a == nullptr ? a : a + l0, d == nullptr ? d : d + l0,
                                  m + l0, s + l0, n, L - l0, ld, c, cnt);
  }
  return glam;
}

// dst[j * h + i] = a[i * w + j] - b[i * w + j] (a alone when b is null).
void transpose_sub(const double* a, const double* b, int64_t h, int64_t w, double* dst) {
  const int64_t h8 = h - h % 8, w8 = w - w % 8;
  for (int64_t i0 = 0; i0 < h8; i0 += 8) {
    for (int64_t j0 = 0; j0 < w8; j0 += 8) {
      __m512d r[8];
      for (int k = 0; k < 8; ++k) {
        const int64_t o = (i0 + k) * w + j0;
        r[k] = b == nullptr ? _mm512_loadu_pd(a + o)
                            : _mm512_sub_pd(_mm512_loadu_pd(a + o), _mm512_loadu_pd(b + o));
      }
      transpose8x8(r);
      for (int k = 0; k < 8; ++k) _mm512_storeu_pd(dst + (j0 + k) * h + i0, r[k]);
    }
  }
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = i < h8 ? w8 : 0; j < w; ++j) {
      const int64_t k = i * w + j;
      dst[j * h + i] = b == nullptr ? a[k] : a[k] - b[k];
    }
  }
}

// st[j * h + i] = sr[i * w + j] (int8).
void transpose_signs(const int8_t* sr, int64_t h, int64_t w, int8_t* st) {
  constexpr int64_t kB = 16;
  for (int64_t i0 = 0; i0 < h; i0 += kB) {
    const int64_t i1 = i0 + kB < h ? i0 + kB : h;
    for (int64_t j0 = 0; j0 < w; j0 += kB) {
      const int64_t j1 = j0 + kB < w ? j0 + kB : w;
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) st[j * h + i] = sr[i * w + j];
    }
  }
}

// gP[i * w + j] (+)= m[j * h + i]: m is w x h; First: =.
template <bool First>
void scatter_rows(double* gP, const double* m, int64_t h, int64_t w) {
  const int64_t h8 = h - h % 8, w8 = w - w % 8;
  for (int64_t j0 = 0; j0 < w8; j0 += 8) {
    for (int64_t i0 = 0; i0 < h8; i0 += 8) {
      __m512d r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm512_loadu_pd(m + (j0 + k) * h + i0);
      transpose8x8(r);  // r[k]: row i0 + k, columns j0..j0+7
      for (int k = 0; k < 8; ++k) {
        double* o = gP + (i0 + k) * w + j0;
        _mm512_storeu_pd(o, First ? r[k] : _mm512_add_pd(_mm512_loadu_pd(o), r[k]));
      }
    }
  }
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = i < h8 ? w8 : 0; j < w; ++j) {
      const int64_t k = i * w + j;
      gP[k] = First ? m[j * h + i] : gP[k] + m[j * h + i];
    }
  }
}

template <typename T>
double backward_image(const int8_t* sgn, const T* g, T* gx, int64_t h, int64_t w,
                      int64_t iters, bool identity, double* ws) {
  const int64_t hw = h * w, n = h > w ? h : w;
  if (hw == 0 || sgn[0] == core::kBadImage || iters <= 0 || h < 8 || w < 8) {
    return image_backward_scalar<T>(sgn, g, gx, h, w, iters, identity, ws);
  }
  double* gP = ws;
  double* gQ = gP + hw;
  double* m = gQ + hw;
  double* c = m + hw;
  double* cnt = c + n;
  int8_t* st = reinterpret_cast<int8_t*>(cnt + n);
  double glam = 0.0;
  using IO = core::LockstepIO;
  for (int64_t it = iters - 1; it >= 0; --it) {
    const int8_t* sr = sgn + (2 * it) * hw;
    const int8_t* sc = sr + hw;
    const bool first = it == iters - 1;
    // Columns: gQ (+)= J (g or gP - gQ).
    const double gc = first ? bwd_pass<IO::kFirst, T>(g, gQ, m, sc, h, w, w, c, cnt)
                            : bwd_pass<IO::kUpdate, double>(gP, gQ, m, sc, h, w, w, c, cnt);
    glam += gc;
    if (identity) {
      for (int64_t k = 0; k < hw; ++k) gQ[k] = first ? double(g[k]) : gP[k];
    }
    // Rows, on transposed copies: gP (+)= J (gQ - gP).
    transpose_sub(gQ, first ? nullptr : gP, h, w, m);
    transpose_signs(sr, h, w, st);
    const double gr = bwd_pass<IO::kInPlace, double>(nullptr, nullptr, m, st, w, h, h, c, cnt);
    glam += gr;
    if (identity) {
      for (int64_t k = 0; k < hw; ++k) gP[k] = gQ[k];
    } else if (first) {
      scatter_rows<true>(gP, m, h, w);
    } else {
      scatter_rows<false>(gP, m, h, w);
    }
  }
  for (int64_t k = 0; k < hw; ++k) gx[k] = T(gP[k]);
  return glam;
}

#undef TV_AI

}  // namespace

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

template <typename T>
void tv2d_dykstra_forward_simd(const T* x, T* y, int8_t* sgn, int64_t h, int64_t w,
                               int64_t iters, double lam, double* ws, bool sharp) {
  forward_image<T>(x, y, sgn, h, w, iters, lam, ws, sharp);
}

template <typename T>
double tv2d_dykstra_backward_simd(const int8_t* sgn, const T* g, T* gx, int64_t h, int64_t w,
                                  int64_t iters, bool identity, double* ws) {
  return backward_image<T>(sgn, g, gx, h, w, iters, identity, ws);
}

#else  // no AVX-512 build: never called (paper_simd_enabled() is false)

template <typename T>
double tv2d_dykstra_backward_simd(const int8_t* sgn, const T* g, T* gx, int64_t h, int64_t w,
                                  int64_t iters, bool identity, double* ws) {
  return image_backward_scalar<T>(sgn, g, gx, h, w, iters, identity, ws);
}

template <typename T>
void tv2d_dykstra_forward_simd(const T* x, T* y, int8_t* sgn, int64_t h, int64_t w,
                               int64_t iters, double lam, double* ws, bool sharp) {
  image_scalar<T>(x, y, sgn, h, w, iters, lam, ws, sharp);
}

#endif

template double tv2d_dykstra_backward_simd<float>(const int8_t*, const float*, float*,
                                                  int64_t, int64_t, int64_t, bool, double*);
template double tv2d_dykstra_backward_simd<double>(const int8_t*, const double*, double*,
                                                   int64_t, int64_t, int64_t, bool, double*);
template void tv2d_dykstra_forward_simd<float>(const float*, float*, int8_t*, int64_t, int64_t,
                                               int64_t, double, double*, bool);
template void tv2d_dykstra_forward_simd<double>(const double*, double*, int8_t*, int64_t,
                                                int64_t, int64_t, double, double*, bool);

}  // namespace cpu
}  // namespace tvcli
