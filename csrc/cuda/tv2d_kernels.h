// Raw-pointer launchers of the 2-D CUDA kernels (torch-free; tv2d_kernels.cu).
//
// Each launcher enqueues its kernel(s) on `stream` and returns the first
// launch error (cudaGetLastError), for the caller's error machinery.
#pragma once

#include <cuda_runtime_api.h>

#include "tv2d_kernel_body.h"

namespace tvcli {
namespace cuda {

// Threads per block of the lines path and the per-image kernels.
constexpr int kLineBlockDim = 128;

// Threads per block of a fused kernel for h x w images: one per line of the
// longer side, rounded up to a warp, 32 ... 256 (the kernels' launch bound).
inline int fused_block_dim(int64_t h, int64_t w) {
  int64_t n = h > w ? h : w;
  n = (n + 31) / 32 * 32;
  return static_cast<int>(n < 32 ? 32 : (n > 256 ? 256 : n));
}

// Paper mode, fused: one block per image (grid-stride over images), the image's
// state (smem_bytes: dykstra_fwd_state / dykstra_bwd_state elements of A) in
// dynamic shared memory; the caller checked the device's opt-in limit.
template <typename T, typename A>
cudaError_t launch_dykstra_forward_fused(const DykstraFwdArgs<T, A>& a, int64_t blocks,
                                         size_t smem_bytes, cudaStream_t stream);
// Paper mode, lines path: 2 iters + 2 launches; a.state holds every image's state.
template <typename T, typename A>
cudaError_t launch_dykstra_forward_lines(const DykstraFwdArgs<T, A>& a, cudaStream_t stream);

template <typename T, typename A>
cudaError_t launch_dykstra_backward_fused(const DykstraBwdArgs<T, A>& a, int64_t blocks,
                                          size_t smem_bytes, cudaStream_t stream);
template <typename T, typename A>
cudaError_t launch_dykstra_backward_lines(const DykstraBwdArgs<T, A>& a, cudaStream_t stream);

// Converged mode: the phases of fista_loop (0 rows, 1 columns, 2 gap, 3 check),
// fista_init_image over the batch, fista_store_elem into y.
cudaError_t launch_fista_init(const FistaArgs& a, cudaStream_t stream);
cudaError_t launch_fista_phase(const FistaArgs& a, int phase, int64_t it, bool check,
                               double beta, double tol, cudaStream_t stream);
cudaError_t launch_fista_store(const FistaArgs& a, double* y, cudaStream_t stream);

template <typename T>
cudaError_t launch_region_backward(const RegionBwdArgs<T>& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace tvcli
