// Test-only op: the 2-D CUDA kernels' bodies (csrc/cuda/tv2d_kernel_body.h) run
// on the CPU over emulated grids, with the launch sequence of the CUDA glue
// (csrc/cuda/tv2d_cuda.cpp), so that the thread-to-line mapping, the block
// phases, the grid-stride loops, the shared-memory layout (odd pitch) and the
// converged-mode loop are exercised without a GPU (tests/test_grid_emulation_2d.py).
//
// Outputs start as NaN (signs as 99), so that anything no thread wrote shows
// up; emulated shared memory and global state start as canaries and are
// framed by guard zones that must survive.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <vector>

#include "cpu/tv2d_paper_simd.h"
#include "cuda/tv2d_kernel_args.h"
#include "testing_grid.h"

namespace tvcli {
namespace {

using testing::Guarded;
using testing::run_grid;

// A block's phase policy: every thread's share in turn (the barrier is implied).
struct EmulatedBlock {
  uint32_t block_dim;
  template <typename F>
  void operator()(F&& f) const {
    for (uint32_t t = 0; t < block_dim; ++t) f(t, block_dim);
  }
};

// The fused path: emulated block blk takes images blk, blk + grid_dim, ... in
// its own guarded "shared memory" of `size` elements; image(b, smem) runs one.
template <typename A, typename F>
void emulate_fused(int64_t grid_dim, int64_t batch, int64_t size, const F& image) {
  for (int64_t blk = 0; blk < grid_dim; ++blk) {
    Guarded<A> smem(size);
    for (int64_t b = blk; b < batch; b += grid_dim) image(b, smem.data());
    smem.check("shared memory");
  }
}

// The lines path: every image's state (`size` elements each) in one guarded
// "global" buffer, one emulated launch per pass of cuda::lines_passes(a);
// thread(kind, it, block, block_dim, thread, grid_dim) runs one thread's share.
template <typename A, typename Args, typename Thread>
void emulate_lines(Args& a, int64_t size, int64_t grid_dim, int64_t block_dim,
                   const Thread& thread) {
  Guarded<A> state(a.batch * size);
  a.state = state.data();
  cuda::lines_passes(a, [&](int kind, int64_t it) {
    run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
      thread(kind, it, bl, bd, th, gd);
    });
  });
  state.check("global state");
}

// path 0: fused (one emulated block per image, grid-stride, state in the block's
// "shared memory" with the glue's odd pitch); path 1: lines (one launch per pass).
template <typename T, typename A>
void emulate_forward(const at::Tensor& x, const at::Tensor& lam, const at::Tensor& bad,
                     int64_t iters, int64_t grid_dim, int64_t block_dim, int64_t path,
                     const at::Tensor& y, const at::Tensor& sgn, bool sharp) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2);
  cuda::DykstraFwdArgs<T, A> a =
      cuda::make_dykstra_fwd_args<T, A>(x, lam, bad, iters, y, sgn, sharp);
  if (path == 0) {
    a.pitch = cuda::fused_pitch(W);
    emulate_fused<A>(grid_dim, B, cuda::dykstra_fwd_state(H, a.pitch), [&](int64_t b, A* smem) {
      cuda::dykstra_forward_block(a, b, smem, EmulatedBlock{static_cast<uint32_t>(block_dim)});
    });
    return;
  }
  a.pitch = W;
  emulate_lines<A>(a, cuda::dykstra_fwd_state(H, W), grid_dim, block_dim,
                   [&](int kind, int64_t it, uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
                     cuda::dykstra_forward_lines_thread(a, kind, it, bl, bd, th, gd);
                   });
}

template <typename T, typename A>
void emulate_backward(const at::Tensor& g, const at::Tensor& sgn, const at::Tensor& lam,
                      int64_t grid_dim, int64_t block_dim, int64_t path, const at::Tensor& gx,
                      const at::Tensor& glam, bool sharp) {
  const int64_t B = g.size(0), H = g.size(1), W = g.size(2);
  Guarded<A> rows(B * H), cols(B * W);
  cuda::DykstraBwdArgs<T, A> a =
      cuda::make_dykstra_bwd_args<T, A>(g, sgn, lam, gx, glam, sharp);
  a.glam_rows = rows.data();
  a.glam_cols = cols.data();
  if (path == 0) {
    emulate_fused<A>(grid_dim, B, cuda::dykstra_bwd_state(H, W), [&](int64_t b, A* smem) {
      cuda::dykstra_backward_block(a, b, smem, EmulatedBlock{static_cast<uint32_t>(block_dim)});
    });
  } else {
    emulate_lines<A>(a, cuda::dykstra_bwd_state(H, W), grid_dim, block_dim,
                     [&](int kind, int64_t it, uint32_t bl, uint32_t bd, uint32_t th,
                         uint32_t gd) {
                       cuda::dykstra_backward_lines_thread(a, kind, it, bl, bd, th, gd);
                     });
  }
  rows.check("row dL/dlam");
  cols.check("column dL/dlam");
}

std::tuple<at::Tensor, at::Tensor> emulate_fista(const at::Tensor& x, const at::Tensor& lam,
                                                 double tol, int64_t max_iter,
                                                 int64_t grid_dim, int64_t block_dim) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), n = B * H * W;
  const at::Tensor xd = x.to(at::kDouble).contiguous();
  const at::Tensor lamd = lam.to(at::kDouble).contiguous();
  Guarded<double> v(n), w(n), z(n), u(n), y(n), row_gap(B * H), info(B * 3);
  std::vector<uint8_t> active(static_cast<size_t>(B), 77);
  std::fill(v.data(), v.data() + n, 0.0);  // the glue's zeros_like
  std::fill(w.data(), w.data() + n, 0.0);
  cuda::FistaArgs a = cuda::make_fista_args(xd, lamd);
  a.v = v.data();
  a.w = w.data();
  a.z = z.data();
  a.u = u.data();
  a.active = active.data();
  a.info = info.data();
  a.row_gap = row_gap.data();
  auto launch = [&](int kind, int64_t it, bool check, double beta) {
    run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
      cuda::fista_thread(a, kind, it, check, beta, tol, bl, bd, th, gd);
    });
  };
  auto any_active = [&] {
    for (uint8_t f : active) {
      TORCH_CHECK(f == 0 || f == 1, "tvcli: an active flag was never written");
      if (f) return true;
    }
    return false;
  };
  launch(-1, 0, false, 0.0);
  if (any_active()) cuda::fista_loop(max_iter, 1, 4, launch, any_active);
  run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
    cuda::fista_store_thread(a, y.data(), bl, bd, th, gd);
  });
  for (auto* g : {&v, &w, &z, &u, &y, &row_gap, &info}) g->check("converged-mode state");
  at::Tensor out = at::empty({B, H, W}, xd.options());
  std::copy(y.data(), y.data() + n, out.mutable_data_ptr<double>());
  at::Tensor inf = at::empty({B, 3}, xd.options());
  std::copy(info.data(), info.data() + B * 3, inf.mutable_data_ptr<double>());
  return {out.to(x.scalar_type()), inf};
}

template <typename T>
void emulate_region_backward(const at::Tensor& g, const at::Tensor& y, const at::Tensor& lam,
                             double region_tol, int64_t slots, int64_t grid_dim,
                             int64_t block_dim, const at::Tensor& gx, const at::Tensor& glam) {
  const int64_t HW = y.size(1) * y.size(2);
  Guarded<int32_t> parent(slots * HW);
  Guarded<double> acc(slots * 3 * HW);
  cuda::RegionBwdArgs<T> a =
      cuda::make_region_bwd_args<T>(g, y, lam, slots, region_tol, gx, glam);
  a.parent = parent.data();
  a.acc = acc.data();
  run_grid(grid_dim, block_dim, [&](uint32_t bl, uint32_t bd, uint32_t th, uint32_t gd) {
    cuda::region_backward_thread(a, cuda::global_thread(bl, bd, th), int64_t(gd) * bd);
  });
  parent.check("union-find workspace");
  acc.check("region sums");
}

// kernel: "dykstra" (a = x; returns y, signs), "dykstra_backward" (a = grad_y,
// b = signs; returns grad_x, grad_lam), "fista" (a = x; returns y, info),
// "region_backward" (a = grad_y, b = y; returns grad_x, grad_lam; `path` is the
// number of workspace slots). path: 0 fused, 1 lines. float_arith: the float
// accumulator option for float32 input (paper mode). sharp: the paper-mode
// kernels' sharpening option (the ops' sharp=True).
std::tuple<at::Tensor, at::Tensor> emulate_cuda_grid_2d(
    c10::string_view kernel, const at::Tensor& a_in, const at::Tensor& b_in,
    const at::Tensor& lam, int64_t iters, int64_t grid_dim, int64_t block_dim, int64_t path,
    bool float_arith, double tol, int64_t max_iter, bool sharp) {
  TORCH_CHECK(a_in.device().is_cpu(), "tvcli: the grid emulation runs on the CPU");
  TORCH_CHECK(a_in.dim() == 3 && lam.dim() == 1 && lam.size(0) == a_in.size(0),
              "tvcli: expected (B, H, W) and lam (B,)");
  TORCH_CHECK(grid_dim >= 1 && block_dim >= 1 && grid_dim * block_dim <= (int64_t(1) << 20),
              "tvcli: emulated grid too large");
  const at::Tensor a = a_in.contiguous();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t B = a.size(0), H = a.size(1), W = a.size(2);
  if (kernel == "fista") return emulate_fista(a, lam, tol, max_iter, grid_dim, block_dim);
  at::Tensor out = at::full(a.sizes(), nan, a.options());
  if (kernel == "dykstra") {
    at::Tensor sgn = at::full({B, 2 * iters, H, W}, 99, a.options().dtype(at::kChar));
    const at::Tensor bad = cuda::bad_images(a);
    if (a.scalar_type() == at::kFloat && float_arith) {
      emulate_forward<float, float>(a, lam, bad, iters, grid_dim, block_dim, path, out, sgn,
                                    sharp);
    } else {
      AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "emulate_dykstra", [&] {
        emulate_forward<scalar_t, double>(a, lam, bad, iters, grid_dim, block_dim, path, out,
                                          sgn, sharp);
      });
    }
    return {out, sgn};
  }
  at::Tensor out_lam = at::full({B}, nan, a.options());
  if (kernel == "dykstra_backward") {
    const at::Tensor sgn = b_in.contiguous();
    if (a.scalar_type() == at::kFloat && float_arith) {
      emulate_backward<float, float>(a, sgn, lam, grid_dim, block_dim, path, out, out_lam,
                                     sharp);
    } else {
      AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "emulate_dykstra_backward", [&] {
        emulate_backward<scalar_t, double>(a, sgn, lam, grid_dim, block_dim, path, out,
                                           out_lam, sharp);
      });
    }
    return {out, out_lam};
  }
  TORCH_CHECK(kernel == "region_backward", "tvcli: unknown kernel '", std::string(kernel), "'");
  TORCH_CHECK(path >= 1, "tvcli: region_backward needs path = number of slots >= 1");
  const at::Tensor y = b_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "emulate_region_backward", [&] {
    emulate_region_backward<scalar_t>(a, y, lam, tol, path, grid_dim, block_dim, out, out_lam);
  });
  return {out, out_lam};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(tvcli, m) {
  m.def("_emulate_cuda_grid_2d(str kernel, Tensor a, Tensor b, Tensor lam, int iters, "
        "int grid_dim, int block_dim, int path, bool float_arith=False, float tol=1e-4, "
        "int max_iter=2000, bool sharp=False) -> (Tensor, Tensor)");
  // Whether paper mode's per-image forward takes the AVX-512 lanes now
  // (tests/test_paper_simd.py: the bit comparisons are not of one path with itself).
  m.def("_paper_simd_enabled() -> bool", [] { return cpu::paper_simd_enabled(); });
}

TORCH_LIBRARY_IMPL(tvcli, CPU, m) { m.impl("_emulate_cuda_grid_2d", &emulate_cuda_grid_2d); }

}  // namespace tvcli
