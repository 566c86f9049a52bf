// CPU backend of the n-D TV prox (isotropic / colour / anisotropic, weight maps):
// the torch op's binding of the host driver csrc/cpu/tv_nd_driver.h (FISTA on the
// dual with a certified stop, csrc/core/tv_nd_fgp.h), run on ATen's thread pool.
// The torch-free module tvcli._core (csrc/py/core_module.cpp) binds the same
// driver to OpenMP directly and gives the same bits for the same thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include "../tv_nd_ops.h"
#include "tv_nd_driver.h"

namespace tvcli {
namespace {

// The driver's parallel backend: ATen's intra-op pool.
struct AtenParallel {
  static int64_t num_threads() { return at::get_num_threads(); }
  template <typename F>
  static void for_range(int64_t begin, int64_t end, int64_t grain, const F& f) {
    at::parallel_for(begin, end, grain, f);
  }
  template <typename F, typename SF>
  static double reduce(int64_t begin, int64_t end, int64_t grain, double ident, const F& f,
                       const SF& sf) {
    return at::parallel_reduce(begin, end, grain, ident, f, sf);
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> prox_tv_nd_cpu(const at::Tensor& x, const at::Tensor& w,
                                                  int64_t nd, c10::string_view norm,
                                                  double tol, int64_t max_iter,
                                                  int64_t check_every, bool f32_state,
                                                  bool restart, bool adaptive_checks,
                                                  bool merge_flat, double f32_until) {
  TvNdOptions o = check_tv_nd_args(x, w, nd, norm, tol, max_iter, check_every, restart);
  o.adaptive_checks = adaptive_checks;
  o.merge_flat = merge_flat;
  TORCH_CHECK(f32_until >= 0.0, "tvcli: f32_until must be >= 0");
  o.f32_until = f32_until;
  const bool iso = norm == "iso";
  at::Tensor y = at::empty_like(x);
  at::Tensor info = at::empty({x.size(0), 3}, x.options().dtype(at::kDouble));
  const int64_t B = x.size(0);
  if (B == 0) return {y, info};
  int64_t sizes[core::tvnd::kMaxDims];
  for (int64_t d = 0; d < nd; ++d) sizes[d] = x.size(2 + d);
  const bool w_map = w.numel() != B;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv_nd_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    double* ip = info.mutable_data_ptr<double>();
    const bool ok =
        f32_state
            ? tvnd_driver::solve_nd<AtenParallel, scalar_t, float>(
                  int(nd), iso, sizes, int(x.size(1)), B, xp, wp, w_map, yp, ip, o)
            : tvnd_driver::solve_nd<AtenParallel, scalar_t, double>(
                  int(nd), iso, sizes, int(x.size(1)), B, xp, wp, w_map, yp, ip, o);
    TORCH_CHECK(ok, "tvcli: prox_tv_nd supports 1 to 4 spatial dimensions, got ", nd);
  });
  return {y, info};
}

}  // namespace tvcli
