// CUDA kernels of the 2-D TV operator: paper mode (K proximal-Dykstra
// iterations) forward and backward, converged mode (FISTA on the dual) and its
// region backward. Torch-free (CI tier a compiles it with plain nvcc); every
// kernel is a thin wrapper around the host/device bodies of tv2d_kernel_body.h,
// which the CPU tests run over emulated grids (csrc/testing.cpp).
#include "tv2d_kernels.h"

namespace tvcli {
namespace cuda {
namespace {

// The fused kernels' phase policy: this thread's share of a phase, then a
// block barrier (the emulator's policy runs every thread's share in turn).
struct BlockPar {
  template <typename F>
  __device__ void operator()(F&& f) const {
    f(threadIdx.x, blockDim.x);
    __syncthreads();
  }
};

unsigned int grid_for(int64_t items, int64_t block_dim) {
  int64_t blocks = (items + block_dim - 1) / block_dim;
  const int64_t cap = 65535;  // grid-stride loops cover the rest; plenty of blocks
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

unsigned int grid_of(int64_t blocks) {
  const int64_t cap = 0x7fffffff;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// ------------------------------------------------------------ paper mode, fused

// The image's state in dynamic shared memory (the glue checked that it fits).
template <typename T, typename A>
__global__ void dykstra_forward_fused_kernel(const DykstraFwdArgs<T, A> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* base = reinterpret_cast<A*>(smem_raw);
  for (int64_t b = blockIdx.x; b < a.batch; b += gridDim.x) {
    dykstra_forward_block(a, b, base, BlockPar{});
  }
}

template <typename T, typename A>
__global__ void dykstra_backward_fused_kernel(const DykstraBwdArgs<T, A> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* base = reinterpret_cast<A*>(smem_raw);
  for (int64_t b = blockIdx.x; b < a.batch; b += gridDim.x) {
    dykstra_backward_block(a, b, base, BlockPar{});
  }
}

// ------------------------------------------------------------ paper mode, lines

template <typename T, typename A>
__global__ void dykstra_forward_lines_kernel(const DykstraFwdArgs<T, A> a, int kind,
                                             int64_t it) {
  dykstra_forward_lines_thread(a, kind, it, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

template <typename T, typename A>
__global__ void dykstra_backward_lines_kernel(const DykstraBwdArgs<T, A> a, int kind,
                                              int64_t it) {
  dykstra_backward_lines_thread(a, kind, it, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

// ------------------------------------------------------------ converged mode

__global__ void fista_kernel(const FistaArgs a, int kind, int64_t it, bool check, double beta,
                             double tol) {
  fista_thread(a, kind, it, check, beta, tol, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

__global__ void fista_store_kernel(const FistaArgs a, double* y) {
  fista_store_thread(a, y, blockIdx.x, blockDim.x, threadIdx.x, gridDim.x);
}

template <typename T>
__global__ void region_backward_kernel(const RegionBwdArgs<T> a) {
  region_backward_thread(a, global_thread(blockIdx.x, blockDim.x, threadIdx.x),
                         static_cast<int64_t>(gridDim.x) * blockDim.x);
}

}  // namespace

// A fused kernel over a.batch images: `blocks` blocks of fused_block_dim
// threads, smem_bytes of dynamic shared memory each.
template <typename Args>
cudaError_t launch_fused(void (*kernel)(Args), const Args& a, int64_t blocks, size_t smem_bytes,
                         cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  const int bd = fused_block_dim(a.h, a.w);
  // Above 48 KB a kernel must opt in to the larger shared memory of sm_70+.
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem_bytes));
  if (e != cudaSuccess) return e;
  kernel<<<grid_of(blocks), bd, smem_bytes, stream>>>(a);
  return cudaGetLastError();
}

// A lines-path operator: one launch of kernel over a.batch * lines_items(a, kind)
// items for every pass (kind, it) of lines_passes(a).
template <typename Args>
cudaError_t launch_lines(void (*kernel)(Args, int, int64_t), const Args& a,
                         cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  const int bd = kLineBlockDim;
  lines_passes(a, [&](int kind, int64_t it) {
    kernel<<<grid_for(a.batch * lines_items(a, kind), bd), bd, 0, stream>>>(a, kind, it);
  });
  return cudaGetLastError();
}

template <typename T, typename A>
cudaError_t launch_dykstra_forward_fused(const DykstraFwdArgs<T, A>& a, int64_t blocks,
                                         size_t smem_bytes, cudaStream_t stream) {
  return launch_fused(dykstra_forward_fused_kernel<T, A>, a, blocks, smem_bytes, stream);
}

template <typename T, typename A>
cudaError_t launch_dykstra_forward_lines(const DykstraFwdArgs<T, A>& a, cudaStream_t stream) {
  return launch_lines(dykstra_forward_lines_kernel<T, A>, a, stream);
}

template <typename T, typename A>
cudaError_t launch_dykstra_backward_fused(const DykstraBwdArgs<T, A>& a, int64_t blocks,
                                          size_t smem_bytes, cudaStream_t stream) {
  return launch_fused(dykstra_backward_fused_kernel<T, A>, a, blocks, smem_bytes, stream);
}

template <typename T, typename A>
cudaError_t launch_dykstra_backward_lines(const DykstraBwdArgs<T, A>& a, cudaStream_t stream) {
  return launch_lines(dykstra_backward_lines_kernel<T, A>, a, stream);
}

cudaError_t launch_fista_init(const FistaArgs& a, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  fista_kernel<<<grid_for(a.batch, kLineBlockDim), kLineBlockDim, 0, stream>>>(a, -1, 0, false,
                                                                               0.0, 0.0);
  return cudaGetLastError();
}

cudaError_t launch_fista_phase(const FistaArgs& a, int phase, int64_t it, bool check,
                               double beta, double tol, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  const int64_t per = phase == 0 || phase == 2 ? a.h : (phase == 1 ? a.wd : 1);
  fista_kernel<<<grid_for(a.batch * per, kLineBlockDim), kLineBlockDim, 0, stream>>>(
      a, phase, it, check, beta, tol);
  return cudaGetLastError();
}

cudaError_t launch_fista_store(const FistaArgs& a, double* y, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  fista_store_kernel<<<grid_for(a.batch * a.h * a.wd, kLineBlockDim), kLineBlockDim, 0,
                       stream>>>(a, y);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_region_backward(const RegionBwdArgs<T>& a, cudaStream_t stream) {
  if (a.batch == 0) return cudaSuccess;
  region_backward_kernel<T><<<grid_for(a.slots, kLineBlockDim), kLineBlockDim, 0, stream>>>(a);
  return cudaGetLastError();
}

#define TVCLI_INSTANTIATE_2D(T, A)                                                         \
  template cudaError_t launch_dykstra_forward_fused<T, A>(const DykstraFwdArgs<T, A>&,      \
                                                          int64_t, size_t, cudaStream_t);   \
  template cudaError_t launch_dykstra_forward_lines<T, A>(const DykstraFwdArgs<T, A>&,      \
                                                          cudaStream_t);                    \
  template cudaError_t launch_dykstra_backward_fused<T, A>(const DykstraBwdArgs<T, A>&,     \
                                                           int64_t, size_t, cudaStream_t);  \
  template cudaError_t launch_dykstra_backward_lines<T, A>(const DykstraBwdArgs<T, A>&,     \
                                                           cudaStream_t);
TVCLI_INSTANTIATE_2D(float, double)
TVCLI_INSTANTIATE_2D(double, double)
TVCLI_INSTANTIATE_2D(float, float)  // the float-arithmetic option (docs/gpu.md)
#undef TVCLI_INSTANTIATE_2D
template cudaError_t launch_region_backward<float>(const RegionBwdArgs<float>&, cudaStream_t);
template cudaError_t launch_region_backward<double>(const RegionBwdArgs<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace tvcli
