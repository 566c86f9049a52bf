// Exact O(N) backward of the 1-D TV prox (DESIGN.md section 3).
//
// y is piecewise constant; on each maximal run B_k of equal values
//   y_k = mean(x over B_k) + lam * (s_k - s_{k-1}) / n_k,
// with s_k = sign(y_{k+1} - y_k) (0 at the signal ends). Hence, for an
// incoming gradient g = dL/dy:
//   dL/dx_i = mean of g over the run containing i,
//   dL/dlam = sum_k (s_k - s_{k-1}) * mean(g over B_k).
// Runs are found by exact equality, which the direct solver guarantees.
#pragma once

#include "tv_common.h"

namespace tvcli {
namespace core {

// Writes dL/dx into gx and returns dL/dlam for one signal.
// lam == 0 is the identity (gx = g); dL/dlam is then the one-sided derivative
// at lam = 0+, taken over runs of equal x. A signal whose y holds a NaN or Inf
// (the forward's marker for bad input) gets NaN gradients.
template <typename T, typename A>
TV_HOST_DEVICE inline A tv1d_backward(const T* y, int64_t sy, const T* g, int64_t sg,
                                      T* gx, int64_t sgx, int64_t n, A lam) {
  if (n <= 0) return A(0);
  // y's finiteness is checked on the run values only, inside the loop below (no
  // separate pass over y): every element equals its run's value exactly, and a
  // NaN (never equal to anything) is a run of its own.
  bool finite = true;
  const bool identity = lam == A(0);
  A glam = A(0);
  A prev_sign = A(0);
  int64_t start = 0;
  while (start < n) {
    const T v = y[start * sy];
    finite = finite && is_finite(A(v));
    A sum = A(g[start * sg]);
    int64_t end = start + 1;
    while (end < n && y[end * sy] == v) {
      sum += A(g[end * sg]);
      ++end;
    }
    const A mean = sum / A(end - start);
    if (identity) {
      for (int64_t i = start; i < end; ++i) gx[i * sgx] = g[i * sg];
    } else {
      const T m = T(mean);
      for (int64_t i = start; i < end; ++i) gx[i * sgx] = m;
    }
    const A next_sign = end < n ? sign_of(A(y[end * sy]) - A(v)) : A(0);
    glam += (next_sign - prev_sign) * mean;
    prev_sign = next_sign;
    start = end;
  }
  if (TV_UNLIKELY(!finite)) {
    const T nan = T(quiet_nan<A>());
    for (int64_t i = 0; i < n; ++i) gx[i * sgx] = nan;
    return quiet_nan<A>();
  }
  return glam;
}

}  // namespace core
}  // namespace tvcli
