// Declarations shared by the op registration and the per-device kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

#include "core/tv1d_pn.h"

namespace tvcli {

// Solver choice, parsed once from the op's string argument.
enum class Solver { kDirect, kPN };
Solver parse_solver(c10::string_view name);

// Checks shared by every backend; returns dim wrapped to [0, x.dim()).
int64_t check_prox_args(const at::Tensor& x, const at::Tensor& lam, int64_t dim);
// The backward's: check_prox_args on (y, lam, dim), and grad_y with y's shape,
// dtype and device; returns dim wrapped.
int64_t check_prox_backward_args(const at::Tensor& grad_y, const at::Tensor& y,
                                 const at::Tensor& lam, int64_t dim);
// prox_tv1d_pn_stats's iteration cap (0 .. 2^20) as pn options.
core::PNOptions pn_stats_options(int64_t max_iter);

at::Tensor prox_tv1d_cpu(const at::Tensor& x, const at::Tensor& lam, int64_t dim,
                         c10::string_view solver);
// solver="pn" on every signal with an iteration cap, also returning per-signal
// Newton iterations (int32) and how each signal finished (int8, core::PNStatus),
// both in lam's shape.
std::tuple<at::Tensor, at::Tensor, at::Tensor> prox_tv1d_pn_stats_cpu(const at::Tensor& x,
                                                                      const at::Tensor& lam,
                                                                      int64_t dim,
                                                                      int64_t max_iter);
std::tuple<at::Tensor, at::Tensor> prox_tv1d_backward_cpu(const at::Tensor& grad_y,
                                                          const at::Tensor& y,
                                                          const at::Tensor& lam,
                                                          int64_t dim);

}  // namespace tvcli
