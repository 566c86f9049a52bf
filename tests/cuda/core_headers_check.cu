// Compile-only check (CI tier a, `.ci/cuda_compile.sh`): the header-only 2-D and
// DP solvers of csrc/core build as device code, as TV_HOST_DEVICE promises. No
// kernel here is launched; the shipped CUDA kernels live in csrc/cuda/.
#include <cstdint>

#include "core/tv1d_dp.h"
#include "core/tv2d_dykstra.h"
#include "core/tv2d_regions.h"

namespace tvcli_check {

template <typename T>
__global__ void dykstra_forward_check(const T* x, T* y, int8_t* sgn, double* ws, int64_t h,
                                      int64_t w, int64_t iters, double lam) {
  using tvcli::core::LineSolver;
  tvcli::core::tv2d_dykstra_forward<T, double>(x, y, sgn, h, w, iters, lam, ws,
                                               threadIdx.x ? LineSolver::kDP
                                                            : LineSolver::kCondat);
}

template <typename T>
__global__ void dykstra_backward_check(const int8_t* sgn, const T* g, T* gx, double* ws,
                                       int64_t h, int64_t w, int64_t iters, double* glam) {
  *glam = tvcli::core::tv2d_dykstra_backward<T, double>(sgn, g, gx, h, w, iters, false, ws);
}

template __global__ void dykstra_forward_check<float>(const float*, float*, int8_t*, double*,
                                                      int64_t, int64_t, int64_t, double);
template __global__ void dykstra_forward_check<double>(const double*, double*, int8_t*, double*,
                                                       int64_t, int64_t, int64_t, double);
template __global__ void dykstra_backward_check<float>(const int8_t*, const float*, float*,
                                                       double*, int64_t, int64_t, int64_t,
                                                       double*);
template __global__ void dykstra_backward_check<double>(const int8_t*, const double*, double*,
                                                        double*, int64_t, int64_t, int64_t,
                                                        double*);

}  // namespace tvcli_check
