// Test-only op: the n-D TV prox's CUDA kernel bodies (csrc/cuda/tv_nd_kernel_body.h)
// run on the CPU over emulated grids, with the CUDA glue's launch sequence
// (tv_nd_loop) and argument filling (csrc/cuda/tv_nd_args.h), so that the
// thread-to-pixel mapping, the grid-stride loops over pixels and problems, the
// per-block sums, the problem states and the stop are exercised without a GPU
// (tests/test_grid_emulation_nd.py).
//
// Outputs and info start as NaN, so that anything no thread wrote shows up; the
// work buffers that the glue leaves uninitialised (r, y, s, sums, states) start
// as canaries, and every buffer is framed by guard zones that must survive.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "cuda/tv_nd_args.h"
#include "testing_grid.h"
#include "tv_nd_ops.h"

namespace tvcli {
namespace {

using testing::Guarded;

template <typename T, typename S>
void emulate(const at::Tensor& x, const at::Tensor& w, int64_t nd, bool iso,
             const TvNdOptions& o, int64_t grid_x, int64_t grid_y, int64_t block_dim,
             int64_t sync_every, const at::Tensor& y, const at::Tensor& info) {
  using namespace cuda::tvnd;
  NdArgs<T, S> a = make_nd_args<T, S>(x, w, nd, iso, o.tol, o.max_iter, o.restart, y);
  const NdSizes sz = nd_sizes(a.g, a.batch);
  Guarded<S> p(sz.state), q(sz.state), r(sz.lines);
  Guarded<double> yd(sz.lines), s(sz.pixels), sums(3 * a.batch);
  Guarded<uint8_t> state(a.batch);
  Guarded<int> running(1);
  std::fill(p.data(), p.data() + sz.state, S(0));  // the glue's zeros
  std::fill(q.data(), q.data() + sz.state, S(0));
  *running.data() = static_cast<int>(a.batch);
  a.p = p.data();
  a.q = q.data();
  a.r = r.data();
  a.y = yd.data();
  a.s = s.data();
  a.t = sums.data();
  a.dot = a.t + a.batch;
  a.gap = a.dot + a.batch;
  a.info = info.mutable_data_ptr<double>();
  a.state = state.data();
  a.running = running.data();
  const int64_t n = a.g.n;
  auto launch = [&](int phase, int64_t it) {
    if (!per_pixel(phase)) {
      for (int64_t b = 0; b < a.batch; ++b) problem_body(a, phase, b, it);
      return;
    }
    for (int64_t by = 0; by < grid_y; ++by)
      for (int64_t b = by; b < a.batch; b += grid_y)
        for (int64_t bx = 0; bx < grid_x; ++bx) {
          const bool part = takes_part(a, phase, b);  // read at the block's start
          double block_sum = 0.0;
          for (int64_t t = 0; t < block_dim; ++t) {
            double sum = 0.0;
            if (part)
              for (int64_t i = bx * block_dim + t; i < n; i += block_dim * grid_x)
                sum += iso ? pixel_body<T, S, true>(a, phase, b, i, it)
                           : pixel_body<T, S, false>(a, phase, b, i, it);
            block_sum += sum;
          }
          double* target = sum_target(a, phase, b);
          if (target != nullptr && part) *target += block_sum;
        }
  };
  tv_nd_loop(o.max_iter, o.check_every, sync_every, launch, [&]() { return *a.running; });
  p.check("p");
  q.check("q");
  r.check("r");
  yd.check("y");
  s.check("s");
  sums.check("t / dot / gap");
  state.check("state");
  running.check("running");
}

std::tuple<at::Tensor, at::Tensor> emulate_cuda_grid_nd(
    const at::Tensor& x, const at::Tensor& w, int64_t nd, c10::string_view norm, double tol,
    int64_t max_iter, int64_t check_every, bool f32_state, bool restart, int64_t grid_x,
    int64_t grid_y, int64_t block_dim, int64_t sync_every) {
  const TvNdOptions o = check_tv_nd_args(x, w, nd, norm, tol, max_iter, check_every, restart);
  TORCH_CHECK(grid_x >= 1 && grid_y >= 1 && block_dim >= 1 && sync_every >= 1,
              "tvcli: grid sizes and sync_every must be >= 1");
  at::Tensor y = at::full(x.sizes(), std::numeric_limits<double>::quiet_NaN(), x.options());
  at::Tensor info = at::full({x.size(0), 3}, std::numeric_limits<double>::quiet_NaN(),
                             x.options().dtype(at::kDouble));
  if (x.size(0) == 0) return {y, info};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulate_cuda_grid_nd", [&] {
    if (f32_state)
      emulate<scalar_t, float>(x, w, nd, norm == "iso", o, grid_x, grid_y, block_dim, sync_every,
                               y, info);
    else
      emulate<scalar_t, double>(x, w, nd, norm == "iso", o, grid_x, grid_y, block_dim,
                                sync_every, y, info);
  });
  return {y, info};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(tvcli, m) {
  m.def("_emulate_cuda_grid_nd(Tensor x, Tensor w, int nd, str norm, float tol, int max_iter, "
        "int check_every, bool f32_state, bool restart, int grid_x, int grid_y, int block_dim, "
        "int sync_every) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(tvcli, CPU, m) { m.impl("_emulate_cuda_grid_nd", &emulate_cuda_grid_nd); }

}  // namespace tvcli
