// CUDA backend: torch glue around the raw-pointer launchers of tv1d_kernels.cu,
// registered for the CUDA dispatch key. Built only in a CUDA build (setup.py).
//
// Each op runs on the tensors' device (CUDAGuard) and torch's current stream,
// takes the pn workspace from torch's caching allocator (at::empty, so no
// cudaMalloc per call), and checks every launch. Inputs are float32/float64:
// tvcli.prox_tv1d computes half/bfloat16 in float32 before calling the op.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../signal_batch_torch.h"
#include "../tv1d_ops.h"
#include "tv1d_kernels.h"

namespace tvcli {
namespace {

// Launch limits (kMaxThreads, kPNWorkspaceBytes) live in tv1d_kernel_body.h, where
// the CPU tests read them too.
using cuda::kMaxThreads;
using cuda::kPNWorkspaceBytes;

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "tvcli: ", name, " must be a CUDA tensor");
}

// Runs pn (stats optional) or direct; iters/status undefined unless stats.
void prox_cuda_impl(const at::Tensor& x, const at::Tensor& lam, int64_t dim, Solver solver,
                    const core::PNOptions& opt, at::Tensor& y, at::Tensor* iters,
                    at::Tensor* status) {
  if (x.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const core::SignalBatch b =
      iters != nullptr ? make_signal_batch(x, dim, {x, y, lam, *iters, *status})
                       : make_signal_batch(x, dim, {x, y, lam});
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv1d_cuda", [&] {
    cuda::ProxArgs<scalar_t> args{};
    args.batch = b;
    args.x = x.const_data_ptr<scalar_t>();
    args.y = y.mutable_data_ptr<scalar_t>();
    args.lam = lam.const_data_ptr<scalar_t>();
    args.opt = opt;
    args.iters = iters != nullptr ? iters->mutable_data_ptr<int32_t>() : nullptr;
    args.status = status != nullptr ? status->mutable_data_ptr<int8_t>() : nullptr;
    if (solver == Solver::kDirect) {
      const int64_t blocks = cuda::launch_blocks(b.count, cuda::kBlockDim, kMaxThreads);
      C10_CUDA_CHECK(cuda::launch_prox_direct<scalar_t>(args, blocks, stream));
      return;
    }
    // Workspace for the threads that solve, not for every launched thread: one
    // signal of 10^6 samples takes one 24 MB slot, not a block's worth (3 GB).
    const cuda::PNLaunchPlan plan = cuda::pn_launch_plan(b.count, b.length, cuda::kBlockDim,
                                                         kMaxThreads, kPNWorkspaceBytes);
    at::Tensor ws = at::empty({plan.threads * plan.per_thread}, x.options().dtype(at::kDouble));
    args.ws = ws.mutable_data_ptr<double>();
    args.ws_threads = plan.threads;
    const int64_t blocks = plan.blocks;
    C10_CUDA_CHECK(cuda::launch_prox_pn<scalar_t>(args, blocks, stream));
  });
}

at::Tensor prox_tv1d_cuda(const at::Tensor& x, const at::Tensor& lam, int64_t dim,
                          c10::string_view solver_name) {
  check_cuda(x, "x");
  dim = check_prox_args(x, lam, dim);
  const Solver solver = parse_solver(solver_name);
  at::Tensor y = at::empty(x.sizes(), x.options());
  prox_cuda_impl(x, lam, dim, solver, core::PNOptions(), y, nullptr, nullptr);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> prox_tv1d_pn_stats_cuda(const at::Tensor& x,
                                                                       const at::Tensor& lam,
                                                                       int64_t dim,
                                                                       int64_t max_iter) {
  check_cuda(x, "x");
  dim = check_prox_args(x, lam, dim);
  const core::PNOptions opt = pn_stats_options(max_iter);
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor iters = at::zeros(lam.sizes(), x.options().dtype(at::kInt));
  at::Tensor status = at::zeros(lam.sizes(), x.options().dtype(at::kChar));
  prox_cuda_impl(x, lam, dim, Solver::kPN, opt, y, &iters, &status);
  return {y, iters, status};
}

std::tuple<at::Tensor, at::Tensor> prox_tv1d_backward_cuda(const at::Tensor& grad_y,
                                                           const at::Tensor& y,
                                                           const at::Tensor& lam,
                                                           int64_t dim) {
  check_cuda(y, "y");
  dim = check_prox_backward_args(grad_y, y, lam, dim);
  at::Tensor grad_x = at::empty(y.sizes(), y.options());
  at::Tensor grad_lam = at::empty(lam.sizes(), lam.options());
  if (y.numel() == 0) return {grad_x, grad_lam.zero_()};
  const c10::cuda::CUDAGuard guard(y.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(y.device().index()).stream();
  const core::SignalBatch b = make_signal_batch(y, dim, {y, grad_y, grad_x, grad_lam, lam});
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "prox_tv1d_backward_cuda", [&] {
    cuda::BackwardArgs<scalar_t> args{};
    args.batch = b;
    args.y = y.const_data_ptr<scalar_t>();
    args.g = grad_y.const_data_ptr<scalar_t>();
    args.gx = grad_x.mutable_data_ptr<scalar_t>();
    args.glam = grad_lam.mutable_data_ptr<scalar_t>();
    args.lam = lam.const_data_ptr<scalar_t>();
    const int64_t blocks = cuda::launch_blocks(b.count, cuda::kBlockDim, kMaxThreads);
    C10_CUDA_CHECK(cuda::launch_backward<scalar_t>(args, blocks, stream));
  });
  return {grad_x, grad_lam};
}

}  // namespace

TORCH_LIBRARY_IMPL(tvcli, CUDA, m) {
  m.impl("prox_tv1d", &prox_tv1d_cuda);
  m.impl("prox_tv1d_backward", &prox_tv1d_backward_cuda);
  m.impl("prox_tv1d_pn_stats", &prox_tv1d_pn_stats_cuda);
}

}  // namespace tvcli
