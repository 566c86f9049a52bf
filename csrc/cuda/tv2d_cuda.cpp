// CUDA backend of the 2-D TV operators: torch glue around the raw-pointer
// launchers of tv2d_kernels.cu, registered for the CUDA dispatch key next to
// the CPU twins of csrc/cpu/tv2d_cpu.cpp (same schemas, same outputs).
//
// Paper mode: the whole K-iteration forward (or its backward) is one launch
// with one block per image when the image's state fits in shared memory (a
// layer's 32 x 32 maps: 33 KB forward, 24 KB backward); otherwise one launch
// per pass over every line of the batch, with the state in global memory.
// Converged mode: FISTA on the dual, every phase one launch over the batch,
// reading back "is an image still running" every few checks only.
//
// State is double (the CPU's accumulator) unless TVCLI_CUDA_2D_ARITH=float and
// the input is float32: then the paper-mode state and 1-D passes run in float
// (consumer GPUs run FP64 at 1/64 rate). Its accuracy is to be measured on a
// GPU before it becomes a default (docs/gpu.md); converged mode always uses
// double (its stopping bound is a small difference of large sums).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "../tv2d_ops.h"
#include "tv2d_kernel_args.h"
#include "tv2d_kernels.h"

namespace tvcli {
namespace {

// The region backward's workspace (28 bytes per pixel per image in flight) is
// capped: fewer images at a time, each thread taking several in turn.
constexpr int64_t kRegionWorkspaceBytes = int64_t(256) << 20;
// Converged mode reads back whether any image still runs every this many checks.
constexpr int64_t kSyncEvery = 4;

void check_images_cuda(const at::Tensor& x, const at::Tensor& lam) {
  TORCH_CHECK(x.is_cuda(), "tvcli: x must be a CUDA tensor");
  check_images(x, lam);
}

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// Largest dynamic shared memory a block may opt in to on t's device.
size_t shared_limit(const at::Tensor& t) {
  int v = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                        t.device().index()));
  return static_cast<size_t>(v);
}

bool float_arith() {
  const char* env = std::getenv("TVCLI_CUDA_2D_ARITH");
  return env != nullptr && std::string(env) == "float";
}

// Blocks of a fused launch: one per image, at most 65535 (grid-stride beyond).
int64_t fused_blocks(int64_t batch) { return std::min<int64_t>(std::max<int64_t>(batch, 1), 65535); }

template <typename T, typename A>
void dykstra_forward(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& bad,
                     int64_t iters, const at::Tensor& y, const at::Tensor& sgn, bool sharp) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  cuda::DykstraFwdArgs<T, A> a =
      cuda::make_dykstra_fwd_args<T, A>(x, lam, bad, iters, y, sgn, sharp);
  const cudaStream_t stream = stream_of(x);
  const auto state_opts = x.options().dtype(c10::CppTypeToScalarType<A>::value);
  const int64_t pitch = cuda::fused_pitch(W);
  const size_t smem = size_t(cuda::dykstra_fwd_state(H, pitch)) * sizeof(A);
  if (smem <= shared_limit(x)) {
    a.pitch = pitch;
    a.state = nullptr;
    const cudaError_t err = cuda::launch_dykstra_forward_fused<T, A>(a, fused_blocks(B), smem, stream);
    C10_CUDA_CHECK(err);
    return;
  }
  a.pitch = W;
  at::Tensor state = at::empty({B * cuda::dykstra_fwd_state(H, W)}, state_opts);
  a.state = state.mutable_data_ptr<A>();
  const cudaError_t err = cuda::launch_dykstra_forward_lines<T, A>(a, stream);
  C10_CUDA_CHECK(err);
}

template <typename T, typename A>
void dykstra_backward(const at::Tensor& g, const at::Tensor& sgn, const at::Tensor& lam,
                      const at::Tensor& gx, const at::Tensor& glam, bool sharp) {
  const int64_t B = g.size(0), H = g.size(1), W = g.size(2);
  const auto state_opts = g.options().dtype(c10::CppTypeToScalarType<A>::value);
  at::Tensor rows = at::empty({B * H}, state_opts), cols = at::empty({B * W}, state_opts);
  cuda::DykstraBwdArgs<T, A> a = cuda::make_dykstra_bwd_args<T, A>(g, sgn, lam, gx, glam, sharp);
  a.glam_rows = rows.mutable_data_ptr<A>();
  a.glam_cols = cols.mutable_data_ptr<A>();
  const cudaStream_t stream = stream_of(g);
  const size_t smem = size_t(cuda::dykstra_bwd_state(H, W)) * sizeof(A);
  if (smem <= shared_limit(g)) {
    a.state = nullptr;
    const cudaError_t err =
        cuda::launch_dykstra_backward_fused<T, A>(a, fused_blocks(B), smem, stream);
    C10_CUDA_CHECK(err);
    return;
  }
  at::Tensor state = at::empty({B * cuda::dykstra_bwd_state(H, W)}, state_opts);
  a.state = state.mutable_data_ptr<A>();
  const cudaError_t err = cuda::launch_dykstra_backward_lines<T, A>(a, stream);
  C10_CUDA_CHECK(err);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_cuda(const at::Tensor& x,
                                                          const at::Tensor& lam,
                                                          int64_t iters, bool sharp) {
  check_images_cuda(x, lam);
  TORCH_CHECK(iters >= 1, "tvcli: iters must be >= 1");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  at::Tensor y = at::empty_like(x);
  at::Tensor sgn = at::empty({B, 2 * iters, H, W}, x.options().dtype(at::kChar));
  if (x.numel() == 0) return {y, sgn};
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor bad = cuda::bad_images(x);
  if (x.scalar_type() == at::kFloat && float_arith()) {
    dykstra_forward<float, float>(x, lam, bad, iters, y, sgn, sharp);
  } else {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv2d_dykstra_cuda", [&] {
      dykstra_forward<scalar_t, double>(x, lam, bad, iters, y, sgn, sharp);
    });
  }
  return {y, sgn};
}

std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_backward_cuda(const at::Tensor& grad_y,
                                                                   const at::Tensor& sgn,
                                                                   const at::Tensor& lam,
                                                                   bool sharp) {
  const at::Tensor g = grad_y.contiguous();
  check_images_cuda(g, lam);
  check_signs(sgn, g);
  at::Tensor gx = at::empty_like(g);
  at::Tensor glam = at::empty({g.size(0)}, lam.options());
  if (g.numel() == 0) return {gx, glam.zero_()};
  const c10::cuda::CUDAGuard guard(g.device());
  if (g.scalar_type() == at::kFloat && float_arith()) {
    dykstra_backward<float, float>(g, sgn, lam, gx, glam, sharp);
  } else {
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "prox_tv2d_dykstra_backward_cuda", [&] {
      dykstra_backward<scalar_t, double>(g, sgn, lam, gx, glam, sharp);
    });
  }
  return {gx, glam};
}

std::tuple<at::Tensor, at::Tensor> prox_tv2d_solve_cuda(const at::Tensor& x_in,
                                                        const at::Tensor& lam_in, double tol,
                                                        int64_t max_iter, int64_t check_every,
                                                        double /*region_tol: backward only*/) {
  check_images_cuda(x_in, lam_in);
  TORCH_CHECK(max_iter >= 1 && check_every >= 1, "tvcli: max_iter, check_every must be >= 1");
  const int64_t B = x_in.size(0), H = x_in.size(1);
  at::Tensor info = at::zeros({B, 3}, x_in.options().dtype(at::kDouble));
  if (x_in.numel() == 0) return {x_in.clone(), info};
  const c10::cuda::CUDAGuard guard(x_in.device());
  const cudaStream_t stream = stream_of(x_in);
  const at::Tensor xd = x_in.to(at::kDouble).contiguous();
  const at::Tensor lamd = lam_in.to(at::kDouble).contiguous();
  at::Tensor v = at::zeros_like(xd), w = at::zeros_like(xd);
  at::Tensor z = at::empty_like(xd), u = at::empty_like(xd), y = at::empty_like(xd);
  at::Tensor active = at::empty({B}, x_in.options().dtype(at::kByte));
  at::Tensor row_gap = at::empty({B * H}, xd.options());
  cuda::FistaArgs a = cuda::make_fista_args(xd, lamd);
  a.v = v.mutable_data_ptr<double>();
  a.w = w.mutable_data_ptr<double>();
  a.z = z.mutable_data_ptr<double>();
  a.u = u.mutable_data_ptr<double>();
  a.active = active.mutable_data_ptr<uint8_t>();
  a.info = info.mutable_data_ptr<double>();
  a.row_gap = row_gap.mutable_data_ptr<double>();
  C10_CUDA_CHECK(cuda::launch_fista_init(a, stream));
  // "Is any image still running": one read-back (a host sync).
  const auto any_active = [&] { return active.max().item<uint8_t>() != 0; };
  if (any_active()) {
    cuda::fista_loop(
        max_iter, check_every, kSyncEvery,
        [&](int phase, int64_t it, bool check, double beta) {
          C10_CUDA_CHECK(cuda::launch_fista_phase(a, phase, it, check, beta, tol, stream));
        },
        any_active);
  }
  C10_CUDA_CHECK(cuda::launch_fista_store(a, y.mutable_data_ptr<double>(), stream));
  return {y.to(x_in.scalar_type()), info};
}

std::tuple<at::Tensor, at::Tensor> prox_tv2d_region_backward_cuda(const at::Tensor& grad_y,
                                                                  const at::Tensor& y,
                                                                  const at::Tensor& lam,
                                                                  double region_tol) {
  check_images_cuda(y, lam);
  check_grad_like(grad_y, y);
  const at::Tensor g = grad_y.contiguous();
  const int64_t B = y.size(0), HW = y.size(1) * y.size(2);
  at::Tensor gx = at::empty_like(y);
  at::Tensor glam = at::empty({B}, lam.options());
  if (B == 0) return {gx, glam};
  if (HW == 0) return {gx, glam.zero_()};
  const c10::cuda::CUDAGuard guard(y.device());
  // One image per thread (a sequential union-find per image): slots in flight
  // under the workspace cap.
  const int64_t per_image = HW * int64_t(sizeof(int32_t) + 3 * sizeof(double));
  const int64_t slots = std::max<int64_t>(1, std::min<int64_t>(B, kRegionWorkspaceBytes / per_image));
  at::Tensor parent = at::empty({slots * HW}, y.options().dtype(at::kInt));
  at::Tensor acc = at::empty({slots * 3 * HW}, y.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "prox_tv2d_region_backward_cuda", [&] {
    cuda::RegionBwdArgs<scalar_t> a =
        cuda::make_region_bwd_args<scalar_t>(g, y, lam, slots, region_tol, gx, glam);
    a.parent = parent.mutable_data_ptr<int32_t>();
    a.acc = acc.mutable_data_ptr<double>();
    C10_CUDA_CHECK(cuda::launch_region_backward<scalar_t>(a, stream_of(y)));
  });
  return {gx, glam};
}

TORCH_LIBRARY_IMPL(tvcli, CUDA, m) {
  m.impl("prox_tv2d_solve", &prox_tv2d_solve_cuda);
  m.impl("prox_tv2d_region_backward", &prox_tv2d_region_backward_cuda);
  m.impl("prox_tv2d_dykstra", &prox_tv2d_dykstra_cuda);
  m.impl("prox_tv2d_dykstra_backward", &prox_tv2d_dykstra_backward_cuda);
}

}  // namespace tvcli
