// CUDA kernels of the 1-D TV prox and its backward: one signal per thread.
//
// Torch-free on purpose: this file compiles with plain nvcc in seconds (CI
// tier a) and every kernel is a one-line wrapper around a per-thread body in
// tv1d_kernel_body.h, which the CPU tests run over an emulated grid.
#include "tv1d_kernels.h"

namespace tvcli {
namespace cuda {
namespace {

// At least 4 resident blocks per SM caps registers at 128 per thread. With the
// block size alone, ptxas 13.0 targets 80 registers for pn on sm_90 and spills;
// with this bound it uses ~110 and spills nothing on sm_75/80/90.
constexpr int kMinBlocksPerSM = 4;

// Kernel arguments are passed by value (parameter space, read through the
// constant cache); the bodies take them by const reference.
template <typename T>
__global__ void __launch_bounds__(kBlockDim, kMinBlocksPerSM) prox_direct_kernel(const ProxArgs<T> args) {
  prox_direct_thread<T>(args, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

template <typename T>
__global__ void __launch_bounds__(kBlockDim, kMinBlocksPerSM) prox_pn_kernel(const ProxArgs<T> args) {
  prox_pn_thread<T>(args, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

template <typename T>
__global__ void __launch_bounds__(kBlockDim, kMinBlocksPerSM) backward_kernel(const BackwardArgs<T> args) {
  backward_thread<T>(args, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

// gridDim.x is limited to 2^31 - 1; the grid-stride loops cover the rest.
unsigned int grid_of(int64_t blocks) {
  const int64_t cap = 0x7fffffff;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace

template <typename T>
cudaError_t launch_prox_direct(const ProxArgs<T>& args, int64_t blocks, cudaStream_t stream) {
  if (args.batch.count == 0) return cudaSuccess;
  prox_direct_kernel<T><<<grid_of(blocks), kBlockDim, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_prox_pn(const ProxArgs<T>& args, int64_t blocks, cudaStream_t stream) {
  if (args.batch.count == 0) return cudaSuccess;
  prox_pn_kernel<T><<<grid_of(blocks), kBlockDim, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_backward(const BackwardArgs<T>& args, int64_t blocks, cudaStream_t stream) {
  if (args.batch.count == 0) return cudaSuccess;
  backward_kernel<T><<<grid_of(blocks), kBlockDim, 0, stream>>>(args);
  return cudaGetLastError();
}

#define TVCLI_INSTANTIATE(T)                                                              \
  template cudaError_t launch_prox_direct<T>(const ProxArgs<T>&, int64_t, cudaStream_t); \
  template cudaError_t launch_prox_pn<T>(const ProxArgs<T>&, int64_t, cudaStream_t);     \
  template cudaError_t launch_backward<T>(const BackwardArgs<T>&, int64_t, cudaStream_t);
TVCLI_INSTANTIATE(float)
TVCLI_INSTANTIATE(double)
#undef TVCLI_INSTANTIATE

}  // namespace cuda
}  // namespace tvcli
