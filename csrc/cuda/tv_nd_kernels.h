// Raw-pointer launchers of the n-D TV prox's CUDA kernels (torch-free;
// tv_nd_kernels.cu). Each enqueues one phase of tv_nd_kernel_body.h's launch
// sequence on `stream` and returns the launch error (cudaGetLastError).
#pragma once

#include <cuda_runtime_api.h>

#include "tv_nd_kernel_body.h"

namespace tvcli {
namespace cuda {
namespace tvnd {

// Threads per block of the per-pixel kernels (their block reduction's size).
constexpr int kNdBlockDim = 256;

// Blocks of a per-pixel launch: x over one problem's pixels, y over problems
// (both grid-stride beyond their caps).
inline dim3 pixel_grid(int64_t n, int64_t batch) {
  int64_t bx = (n + kNdBlockDim - 1) / kNdBlockDim;
  bx = bx < 1 ? 1 : (bx > 4096 ? 4096 : bx);
  int64_t by = batch < 1 ? 1 : (batch > 65535 ? 65535 : batch);
  return dim3(static_cast<unsigned int>(bx), static_cast<unsigned int>(by), 1);
}

template <typename T, typename S>
cudaError_t launch_tv_nd_phase(const NdArgs<T, S>& a, int phase, int64_t it, cudaStream_t stream);

}  // namespace tvnd
}  // namespace cuda
}  // namespace tvcli
