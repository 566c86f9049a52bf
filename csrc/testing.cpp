// Test-only op: runs the CUDA kernels' per-thread bodies on the CPU over an
// emulated grid (csrc/cuda/tv1d_kernel_body.h), so that the GPU's signal-to-
// thread mapping, grid-stride loop, strides and pn workspace layout are
// exercised by the CPU test suite (tests/test_grid_emulation.py).
//
// The bodies are the very functions the __global__ kernels call; here they run
// thread by thread for block = 0..grid_dim-1, thread = 0..block_dim-1. Outputs
// start as NaN so that an element no thread wrote is visible, and the pn
// workspace is surrounded by canaries that must survive.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "cuda/tv1d_kernel_body.h"
#include "signal_batch_torch.h"
#include "testing_grid.h"
#include "tv1d_ops.h"

namespace tvcli {
namespace {

using testing::Guarded;
using testing::run_grid;

// kernel: "direct" or "pn", or "direct_device_div" / "pn_device_div" (the same
// with the device's branch of core::div_count) (a = x, b unused; returns y and, for pn, the
// iteration counts as a's dtype), or "backward" (a = grad_y, b = y; returns
// grad_x and grad_lam).
std::tuple<at::Tensor, at::Tensor> emulate_cuda_grid(c10::string_view kernel,
                                                     const at::Tensor& a, const at::Tensor& b,
                                                     const at::Tensor& lam, int64_t dim,
                                                     int64_t grid_dim, int64_t block_dim,
                                                     int64_t ws_threads) {
  TORCH_CHECK(a.device().is_cpu(), "tvcli: the grid emulation runs on the CPU");
  TORCH_CHECK(grid_dim >= 1 && block_dim >= 1 && grid_dim * block_dim <= (int64_t(1) << 22),
              "tvcli: emulated grid too large");
  dim = check_prox_args(a, lam, dim);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  at::Tensor out = at::full(a.sizes(), nan, a.options());
  at::Tensor out_lam = at::full(lam.sizes(), nan, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "emulate_cuda_grid", [&] {
    if (kernel == "backward") {
      TORCH_CHECK(b.sizes() == a.sizes() && b.scalar_type() == a.scalar_type(),
                  "tvcli: y must have grad_y's shape and dtype");
      cuda::BackwardArgs<scalar_t> args{};
      args.batch = make_signal_batch(b, dim, {b, a, out, out_lam, lam});
      args.y = b.const_data_ptr<scalar_t>();
      args.g = a.const_data_ptr<scalar_t>();
      args.gx = out.mutable_data_ptr<scalar_t>();
      args.glam = out_lam.mutable_data_ptr<scalar_t>();
      args.lam = lam.const_data_ptr<scalar_t>();
      run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
        cuda::backward_thread<scalar_t>(args, bl, bd, th, gd);
      });
      return;
    }
    // "*_device_div": the same bodies with the device's branch of the division
    // rule (core::CountInverseComputed) instead of the host's table.
    const bool device_div = kernel == "direct_device_div" || kernel == "pn_device_div";
    TORCH_CHECK(kernel == "direct" || kernel == "pn" || device_div, "tvcli: unknown kernel '",
                std::string(kernel), "'");
    at::Tensor iters = at::full(lam.sizes(), -1, a.options().dtype(at::kInt));
    at::Tensor status = at::full(lam.sizes(), -1, a.options().dtype(at::kChar));
    cuda::ProxArgs<scalar_t> args{};
    args.batch = make_signal_batch(a, dim, {a, out, lam, iters, status});
    args.x = a.const_data_ptr<scalar_t>();
    args.y = out.mutable_data_ptr<scalar_t>();
    args.lam = lam.const_data_ptr<scalar_t>();
    if (kernel == "direct" || kernel == "direct_device_div") {
      run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
        if (device_div) {
          cuda::prox_direct_thread<scalar_t, core::CountInverseComputed>(args, bl, bd, th, gd);
        } else {
          cuda::prox_direct_thread<scalar_t>(args, bl, bd, th, gd);
        }
      });
      return;
    }
    // The CUDA glue's layout: one slot per solving thread (ws_threads of the
    // grid_dim * block_dim launched; -1: all), interleaved.
    const int64_t per_thread = std::max<int64_t>(core::tv1d_pn_workspace_size(a.size(dim)), 1);
    const int64_t threads = ws_threads < 0 ? grid_dim * block_dim : ws_threads;
    TORCH_CHECK(threads >= 1, "tvcli: ws_threads must be >= 1 (or -1)");
    Guarded<double> ws(threads * per_thread);
    args.ws = ws.data();
    args.ws_threads = threads;
    args.iters = iters.mutable_data_ptr<int32_t>();
    args.status = status.mutable_data_ptr<int8_t>();
    run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
      if (device_div) {
        cuda::prox_pn_thread<scalar_t, core::CountInverseComputed>(args, bl, bd, th, gd);
      } else {
        cuda::prox_pn_thread<scalar_t>(args, bl, bd, th, gd);
      }
    });
    ws.check("pn workspace");
    out_lam.copy_(iters);
  });
  return {out, out_lam};
}

// The CUDA glue's pn launch for `count` signals of `length` samples:
// [blocks, solving threads, doubles per slot, workspace bytes].
std::vector<int64_t> cuda_pn_launch_plan(int64_t count, int64_t length) {
  const cuda::PNLaunchPlan p =
      cuda::pn_launch_plan(count, length, cuda::kBlockDim, cuda::kMaxThreads,
                           cuda::kPNWorkspaceBytes);
  return {p.blocks, p.threads, p.per_thread, p.threads * p.per_thread * int64_t(sizeof(double))};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(tvcli, m) {
  m.def("_emulate_cuda_grid(str kernel, Tensor a, Tensor b, Tensor lam, int dim, "
        "int grid_dim, int block_dim, int ws_threads=-1) -> (Tensor, Tensor)");
  m.def("_cuda_pn_launch_plan(int count, int length) -> int[]", &cuda_pn_launch_plan);
}

TORCH_LIBRARY_IMPL(tvcli, CPU, m) { m.impl("_emulate_cuda_grid", &emulate_cuda_grid); }

}  // namespace tvcli
