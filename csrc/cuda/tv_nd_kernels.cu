// CUDA kernels of the n-D TV prox (isotropic / colour / anisotropic, weight maps):
// FISTA on the dual with a certified stop. Torch-free (CI tier a compiles it with
// plain nvcc); the kernels are thin wrappers around tv_nd_kernel_body.h, which the
// CPU tests run over emulated grids (csrc/testing_tv_nd.cpp).
#include "tv_nd_kernels.h"

namespace tvcli {
namespace cuda {
namespace tvnd {
namespace {

// One thread per pixel of problem blockIdx.y (grid-stride in both), and the
// block's sum of the phase's per-pixel shares into the problem's accumulator
// (one atomicAdd per block; double atomicAdd needs sm_60+).
// One kernel per phase (PHASE a template argument): each holds only its own
// phase's code, so that none carries the register pressure of the others.
// __launch_bounds__(256, 1): with the block size alone, ptxas capped some phases
// (float64 gap and shrink-factor sums) at 64 registers and spilled 4-12 bytes on
// sm_80 / sm_90 (CI tier a refuses spills); one resident block per SM allowed
// lets them use 101-112 registers with no spill (same code, same results).
template <typename T, typename S, bool ISO, int PHASE>
__global__ void __launch_bounds__(kNdBlockDim, 1) pixel_kernel(const NdArgs<T, S> a, int64_t it) {
  constexpr int phase = PHASE;
  __shared__ double partial[kNdBlockDim];
  const int64_t n = a.g.n;
  for (int64_t b = blockIdx.y; b < a.batch; b += gridDim.y) {
    // Uniform per block: a problem's state changes only between launches (the
    // validation phase writes kBad, which it does not read back to branch on).
    const bool part = takes_part(a, phase, b);
    double sum = 0.0;
    if (part) {
      for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
           i += int64_t(blockDim.x) * gridDim.x)
        sum += pixel_body<T, S, ISO>(a, phase, b, i, it);
    }
    double* target = sum_target(a, phase, b);
    if (target == nullptr) continue;
    __syncthreads();  // partial[] free from the previous problem's reduction
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (unsigned int k = blockDim.x / 2; k > 0; k >>= 1) {
      if (threadIdx.x < k) partial[threadIdx.x] += partial[threadIdx.x + k];
      __syncthreads();
    }
    if (threadIdx.x == 0 && part) atomicAdd(target, partial[0]);
  }
}

template <typename T, typename S>
__global__ void problem_kernel(const NdArgs<T, S> a, int phase, int64_t it) {
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < a.batch;
       b += int64_t(blockDim.x) * gridDim.x)
    problem_body(a, phase, b, it);
}

}  // namespace

template <typename T, typename S>
cudaError_t launch_tv_nd_phase(const NdArgs<T, S>& a, int phase, int64_t it,
                               cudaStream_t stream) {
  if (per_pixel(phase)) {
    const dim3 grid = pixel_grid(a.g.n, a.batch);
#define TVCLI_ND_PHASE(P)                                                          \
  case P:                                                                          \
    if (a.iso)                                                                     \
      pixel_kernel<T, S, true, P><<<grid, kNdBlockDim, 0, stream>>>(a, it);        \
    else                                                                           \
      pixel_kernel<T, S, false, P><<<grid, kNdBlockDim, 0, stream>>>(a, it);       \
    break;
    switch (phase) {
      TVCLI_ND_PHASE(kValidate)
      TVCLI_ND_PHASE(kNanStore)
      TVCLI_ND_PHASE(kResidual)
      TVCLI_ND_PHASE(kUpdate)
      TVCLI_ND_PHASE(kScale)
      TVCLI_ND_PHASE(kCertY)
      TVCLI_ND_PHASE(kGap)
      TVCLI_ND_PHASE(kStore)
      default:
        return cudaErrorInvalidValue;
    }
#undef TVCLI_ND_PHASE
  } else {
    int64_t blocks = (a.batch + 127) / 128;
    blocks = blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks);
    problem_kernel<T, S><<<static_cast<unsigned int>(blocks), 128, 0, stream>>>(a, phase, it);
  }
  return cudaGetLastError();
}

template cudaError_t launch_tv_nd_phase<float, float>(const NdArgs<float, float>&, int, int64_t,
                                                      cudaStream_t);
template cudaError_t launch_tv_nd_phase<float, double>(const NdArgs<float, double>&, int,
                                                       int64_t, cudaStream_t);
template cudaError_t launch_tv_nd_phase<double, float>(const NdArgs<double, float>&, int,
                                                       int64_t, cudaStream_t);
template cudaError_t launch_tv_nd_phase<double, double>(const NdArgs<double, double>&, int,
                                                        int64_t, cudaStream_t);

}  // namespace tvnd
}  // namespace cuda
}  // namespace tvcli
