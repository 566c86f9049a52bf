// Shared definitions for the header-only TV solver core.
//
// Everything under csrc/core/ is plain C++ that compiles both for the host
// (g++) and for CUDA devices (nvcc): no allocation, no exceptions, no torch, no
// standard-library containers. A 1-D signal is a strided view (pointer, length,
// element stride), so rows and columns of an image are read in place.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TV_HOST_DEVICE __host__ __device__
#define TV_INLINE __forceinline__
#else
#define TV_HOST_DEVICE
#define TV_INLINE inline
#endif

// Branch hint for rare paths inside hot loops (kept out of the straight-line
// code the compiler lays out for the common case).
#if defined(__GNUC__) || defined(__clang__) || defined(__CUDACC__)
#define TV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TV_UNLIKELY(x) (x)
#endif

// Out of line on the host (keeps rare paths out of hot loops' code); device
// code inlines as nvcc decides.
#if !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__))
#define TV_NOINLINE_HOST __attribute__((noinline))
#else
#define TV_NOINLINE_HOST inline
#endif

namespace tvcli {
namespace core {

// True for finite values; false for NaN and +-Inf. Written without <cmath> so
// that it behaves the same under nvcc and -ffast-math-free host builds.
template <typename A>
TV_HOST_DEVICE TV_INLINE bool is_finite(A v) {
  return (v - v) == (v - v);  // Inf - Inf and NaN - NaN are NaN, and NaN != NaN
}

template <typename A>
TV_HOST_DEVICE TV_INLINE A quiet_nan() {
  // 0/0 is evaluated at run time on purpose: it is the one spelling of NaN
  // that needs no library call on both host and device.
  volatile A zero = A(0);
  return zero / zero;
}

template <typename A>
TV_HOST_DEVICE TV_INLINE A sign_of(A v) {
  return A((v > A(0)) - (v < A(0)));
}

// Certified RMS error bound of a TV prox y of `entries` values from the duality
// gap G = P(y) - D(p) of a feasible dual p whose primal point is y = x - K^T p
// (every converged solver here: the n-D FGP, the 2-D FISTA / Dykstra).
// Both halves of the gap bound the same error: P(y) - P* >= 1/2 ||y - y*||^2 (P is
// 1-strongly convex) and D* - D(p) >= 1/2 ||y - y*||^2 (D(p) = 1/2 ||x||^2 -
// 1/2 ||y||^2, and <K y*, p* - p> >= 0 because p* maximises <K y*, .> over the dual
// ball), so G >= ||y - y*||^2 and the RMS error is <= sqrt(G / entries) -- sqrt(2)
// tighter than the textbook sqrt(2 G / entries), which drops the dual half.
TV_HOST_DEVICE TV_INLINE double certified_rms(double gap, int64_t entries) {
  return sqrt((gap > 0.0 ? gap : 0.0) / double(entries));
}

}  // namespace core
}  // namespace tvcli
