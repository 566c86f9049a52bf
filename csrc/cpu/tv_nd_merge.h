// A second primal point for the n-D TV certificate (CPU driver only): the dual
// iterate's primal point y = x - D^T p~ has many tiny spurious differences where
// the exact prox is flat, and each pays w_i |(Dy)_i| in the gap -- near 98 % of the
// gap at tol 1e-3 is that primal half (docs/tv_variants.md, "Certificate"). Here y
// is averaged over the regions where the dual iterate says the prox is flat (pixels
// whose dual vector lies strictly inside its ball joined to their successors,
// union-find), which gives y'; the gap of y' against the same dual point,
//
//   G' = P(y') - D(p~) = sum_i (w_i ||(Dy')_i|| - <p~_i, (Dy')_i>) + 1/2 ||y' - y||^2
//
// (a sum of non-negative terms, as the certificate's own gap), bounds the error of
// the midpoint (y + y') / 2: with A' = P(y') - P* >= 1/2 ||y' - y*||^2 and
// B = P* - D(p~) >= 1/2 ||y - y*||^2 (tv_common.h, certified_rms),
//   ||(y + y')/2 - y*|| <= (sqrt(2 B) + sqrt(2 A')) / 2 <= sqrt(A' + B) = sqrt(G'),
// so sqrt(G' / entries) certifies the midpoint's RMS error just as sqrt(G / entries)
// certifies y. Any y' is valid (the bound is computed from it); the driver keeps
// whichever bound is lower. (A threshold on |(Dy)_i| instead of the dual's interior
// found the same regions at best, and needed a scale that differed 10x between
// colour and per-channel TV.)
//
// Host only, deterministic; the union-find runs in one thread (raster order), the
// gap's lines over threads in split mode. Scratch: one int32 and C doubles per pixel.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/tv_nd_fgp.h"

namespace tvcli {
namespace tvnd_driver {

// Scratch of the merged candidate, kept across the checks of one problem.
struct MergeWork {
  // (n) union-find forest; then each pixel's root, and at a root -(its set's size)
  std::vector<int32_t> parent;
  std::vector<double> y;        // (C, lines, w + 1) y', the certificate's layout
  std::vector<double> line_gap;  // (lines) the gap of each line of y'
};

// Root of i with path halving.
inline int32_t merge_find(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

// Joins the sets of a and b (the smaller root index becomes the root: the result
// does not depend on the order of the unions' arguments).
inline void merge_union(int32_t* parent, int32_t a, int32_t b) {
  a = merge_find(parent, a);
  b = merge_find(parent, b);
  if (a < b)
    parent[b] = a;
  else if (b < a)
    parent[a] = b;
}

// Whether the merged candidate is available for a problem of n pixels (int32 ids).
inline bool merge_fits(int64_t n) { return n > 0 && n < (int64_t(1) << 31); }

// Relative margin inside the dual ball that counts as interior.
constexpr double kMergeInterior = 1e-4;

// When a check tries the merged candidate (it costs about two iterations): first
// once the plain bound is within `window` x tol (8 for aniso, where the gain came
// early and large, 1.3-7x at 7x tol on Kodak photos; 3 for iso, where it was
// 0.9-1.3x at 4-6x tol and 1.2-2.1x at 2-3x), and again each time it halves while
// the merge gains less than kUseful; once it gains g >= kUseful (plain / merged
// bound), when g, grown by kGrowth (the gain grows as the solve converges), predicts
// a merged bound within kSlack x tol. target() is the plain bound the next check
// should be scheduled for.
struct MergePolicy {
  static constexpr double kGrowth = 1.3, kSlack = 1.2, kUseful = 1.15;
  double window = 8.0;     // of the first try, x tol
  double gain = 0.0;       // plain / merged at the last useful try (0: none yet)
  double next_try = -1.0;  // plain bound at or below which to try (< 0: window x tol)
  static MergePolicy for_norm(bool iso) {
    MergePolicy m;
    m.window = iso ? 3.0 : 8.0;
    return m;
  }
  bool attempt(double plain, double tol) const {
    const double at = next_try < 0.0 ? window * tol : next_try;
    return plain > tol && plain <= at;
  }
  void record(double plain, double merged, double tol) {
    const double g = merged < plain ? plain / merged : 1.0;
    if (g >= kUseful) {
      gain = g;
      next_try = kSlack * kGrowth * g * tol;
    } else {
      gain = 0.0;
      next_try = 0.5 * plain;
    }
  }
  double target(double tol) const { return gain > 0.0 ? tol * kGrowth * gain : tol; }
};

// G' of the region average y' of P.y (see above), the feasible dual point being the
// certificate's p~ (P.s from cert_scale_line); P.y must hold y (cert_y_line). Leaves
// y' in mw (merged_line). iso: a pixel with ||p_i|| < (1 - kMergeInterior) w_i joins
// all its successors; aniso: each direction d where every channel's |p_{d,i}| is
// that far inside joins that successor.
// With `split`, the gap's lines run over Par's threads (chunks of `grain` lines);
// their sum is taken in line order either way, so the bits do not depend on it.
template <class Par, typename T, typename S, int ND, bool ISO>
double merged_gap(const core::tvnd::Geometry& g, const core::tvnd::Problem<T, S>& P,
                  MergeWork& mw, bool split, int64_t grain) {
  const int64_t W = g.w, n = g.n, C = g.channels, pitch = W + 1;
  mw.parent.resize(size_t(n));
  int32_t* parent = mw.parent.data();
  for (int64_t i = 0; i < n; ++i) parent[i] = int32_t(i);
  // The dual point is strictly inside its ball (iso) or box entry (aniso) where
  // the exact prox is (likely) flat: there ||p*_i|| <= w_i, and elsewhere = w_i.
  const double inside = 1.0 - kMergeInterior;
  int64_t idx[core::tvnd::kMaxDims];
  for (int64_t l = 0; l < g.lines; ++l) {
    core::tvnd::line_index(g, l, idx);
    bool has_next[ND];
    for (int d = 0; d + 1 < ND; ++d) has_next[d] = idx[d] + 1 < g.size[d];
    for (int64_t j = 0; j < W; ++j) {
      has_next[ND - 1] = j + 1 < W;
      const int64_t i = l * W + j;
      const double wi = double(P.w[P.w_map ? i : 0]) * inside;
      double n2 = 0.0;
      bool flat_d[ND];
      for (int d = 0; d < ND; ++d) {
        double m = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          const double v = double(P.p[(d * C + c) * n + i]);
          n2 += v * v;
          m = std::fabs(v) > m ? std::fabs(v) : m;
        }
        flat_d[d] = m < wi;
      }
      const bool flat = n2 < wi * wi;
      for (int d = 0; d < ND; ++d)
        if (has_next[d] && (ISO ? flat : flat_d[d]))
          merge_union(parent, int32_t(i), int32_t(i + g.stride[d]));
    }
  }
  // Roots, sizes and sums in raster order, into y' at the root's place (a root is
  // its set's smallest index, so it comes first and starts its sums); then the means;
  // then, in reverse raster order, every pixel takes its root's mean (the root lies
  // before it, so its place still holds the mean). 1/2 ||y' - y||^2 on the way.
  // Parents point to smaller indices (unions and path halving keep that), so when
  // pixel i is reached every pixel before it already holds its root, or is a root
  // holding -(size so far): i's root is its parent, or its parent's parent. (The
  // sizes live in the roots' parent entries: no second int32 per pixel, 64 MiB on
  // a 256^3 volume.)
  const int64_t plane = g.lines * pitch;  // one channel of y / y'
  mw.y.resize(size_t(C * plane));
  double* ym = mw.y.data();
  auto at = [&](int64_t i) { return (i / W) * pitch + i % W; };  // pixel -> place
  for (int64_t l = 0; l < g.lines; ++l)
    for (int64_t j = 0; j < W; ++j) {
      const int64_t i = l * W + j, k = l * pitch + j;
      const int32_t up = parent[i];
      if (up == i) {
        parent[i] = -1;
        for (int64_t c = 0; c < C; ++c) ym[c * plane + k] = P.y[c * plane + k];
      } else {
        const int32_t r = parent[up] < 0 ? up : parent[up];
        parent[i] = r;
        --parent[r];
        const int64_t kr = at(r);
        for (int64_t c = 0; c < C; ++c) ym[c * plane + kr] += P.y[c * plane + k];
      }
    }
  for (int64_t i = 0; i < n; ++i)
    if (parent[i] < -1) {
      const int64_t k = at(i);
      for (int64_t c = 0; c < C; ++c) ym[c * plane + k] /= double(-parent[i]);
    }
  // ||y' - y||^2 summed per line in a local (a sum kept across the whole loop was
  // spilled to the stack: a store-to-load chain per sample, a third of the merge).
  double half_sq = 0.0;
  for (int64_t l = g.lines - 1; l >= 0; --l) {
    double line_sq = 0.0;
    for (int64_t j = W - 1; j >= 0; --j) {
      const int64_t i = l * W + j, k = l * pitch + j, r = parent[i];
      const int64_t kr = r < 0 ? k : at(r);
      for (int64_t c = 0; c < C; ++c) {
        const double v = ym[c * plane + kr];
        ym[c * plane + k] = v;
        const double dv = v - P.y[c * plane + k];
        line_sq += dv * dv;
      }
    }
    half_sq += line_sq;
    for (int64_t c = 0; c < C; ++c) ym[c * plane + l * pitch + W] = ym[c * plane + l * pitch + W - 1];
  }
  core::tvnd::Problem<T, S> Pm = P;
  Pm.y = mw.y.data();
  auto gaps = [&](int64_t b0, int64_t b1) {
    std::vector<double> a(static_cast<size_t>(W)), b(static_cast<size_t>(W));
    for (int64_t l = b0; l < b1; ++l)
      mw.line_gap[size_t(l)] = core::tvnd::gap_line<T, S, ND, ISO>(g, Pm, l, a.data(), b.data());
  };
  mw.line_gap.resize(size_t(g.lines));
  if (split) {
    Par::for_range(0, g.lines, grain, gaps);
  } else {
    gaps(0, g.lines);
  }
  double sum = 0.0;
  for (int64_t l = 0; l < g.lines; ++l) sum += mw.line_gap[size_t(l)];
  return sum + 0.5 * half_sq;
}

// Line l of channel c of y' after merged_gap (w values and the pad).
inline const double* merged_line(const MergeWork& mw, int64_t lines, int64_t w, int64_t c,
                                 int64_t l) {
  return mw.y.data() + (c * lines + l) * (w + 1);
}

}  // namespace tvnd_driver
}  // namespace tvcli
