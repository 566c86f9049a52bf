// Exact backward of the 2-D anisotropic TV prox from its region structure.
//
// The solution Y is constant on connected regions R (4-neighbourhood) and,
// from the optimality conditions Y - X + lam D^T s = 0 summed over R,
//   Y_R = mean(X over R) - lam / |R| * sum over boundary edges (i in R, j not in R)
//                                     of sign(Y_i - Y_j),
// the 2-D analogue of DESIGN.md section 3. For an incoming gradient g:
//   dL/dX_i = mean of g over the region of i,
//   dL/dlam = - sum_R mean(g over R) * sum over boundary edges of R of sign(Y_i - Y_j).
// Regions are found with union-find over neighbours whose values differ by at
// most `thresh` (0 for an exact solution; the iterative solver's accuracy else).
#pragma once

#include "tv_common.h"

namespace tvcli {
namespace core {

TV_HOST_DEVICE TV_INLINE int32_t uf_find(int32_t* parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}

TV_HOST_DEVICE TV_INLINE void uf_union(int32_t* parent, int32_t a, int32_t b) {
  a = uf_find(parent, a);
  b = uf_find(parent, b);
  if (a == b) return;
  if (a < b) parent[b] = a; else parent[a] = b;
}

// One contiguous H x W image. Workspace: parent (n int32), sum / count / bsign
// (n doubles each), n = h * w. Writes gx (may alias g) and returns dL/dlam.
// identity (lam == 0): gx = g, dL/dlam is the one-sided derivative at 0+.
template <typename T>
TV_HOST_DEVICE inline double tv2d_region_backward(const T* y, const T* g, T* gx, int64_t h, int64_t w,
                                   double thresh, bool identity, int32_t* parent,
                                   double* sum, double* count, double* bsign) {
  const int64_t n = h * w;
  for (int64_t i = 0; i < n; ++i) parent[i] = int32_t(i);
  for (int64_t r = 0; r < h; ++r) {
    for (int64_t c = 0; c < w; ++c) {
      const int64_t i = r * w + c;
      const double v = double(y[i]);
      if (c + 1 < w) {
        const double d = double(y[i + 1]) - v;
        if (d <= thresh && -d <= thresh) uf_union(parent, int32_t(i), int32_t(i + 1));
      }
      if (r + 1 < h) {
        const double d = double(y[i + w]) - v;
        if (d <= thresh && -d <= thresh) uf_union(parent, int32_t(i), int32_t(i + w));
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    sum[i] = 0.0;
    count[i] = 0.0;
    bsign[i] = 0.0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int32_t root = uf_find(parent, int32_t(i));
    parent[i] = root;  // flatten: later reads need no find
    sum[root] += double(g[i]);
    count[root] += 1.0;
  }
  // Boundary signs: each edge between two regions adds sign(Y_i - Y_j) to i's region.
  for (int64_t r = 0; r < h; ++r) {
    for (int64_t c = 0; c < w; ++c) {
      const int64_t i = r * w + c;
      const int32_t ri = parent[i];
      if (c + 1 < w && parent[i + 1] != ri) {
        const double s = sign_of(double(y[i]) - double(y[i + 1]));
        bsign[ri] += s;
        bsign[parent[i + 1]] -= s;
      }
      if (r + 1 < h && parent[i + w] != ri) {
        const double s = sign_of(double(y[i]) - double(y[i + w]));
        bsign[ri] += s;
        bsign[parent[i + w]] -= s;
      }
    }
  }
  double glam = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (parent[i] == int32_t(i)) glam -= bsign[i] * sum[i] / count[i];
  }
  if (!identity) {
    for (int64_t i = 0; i < n; ++i) {
      const int32_t root = parent[i];
      gx[i] = T(sum[root] / count[root]);
    }
  } else if (gx != g) {
    for (int64_t i = 0; i < n; ++i) gx[i] = g[i];
  }
  return glam;
}

}  // namespace core
}  // namespace tvcli
