// Raw-pointer launchers of the CUDA kernels (torch-free; see tv1d_kernels.cu).
//
// Each launcher enqueues one kernel on `stream` over `blocks` x kBlockDim
// threads and returns cudaGetLastError() so that the caller can report a
// failed launch with its own error machinery.
#pragma once

#include <cuda_runtime_api.h>

#include "tv1d_kernel_body.h"

namespace tvcli {
namespace cuda {

template <typename T>
cudaError_t launch_prox_direct(const ProxArgs<T>& args, int64_t blocks, cudaStream_t stream);
template <typename T>
cudaError_t launch_prox_pn(const ProxArgs<T>& args, int64_t blocks, cudaStream_t stream);
template <typename T>
cudaError_t launch_backward(const BackwardArgs<T>& args, int64_t blocks, cudaStream_t stream);

}  // namespace cuda
}  // namespace tvcli
