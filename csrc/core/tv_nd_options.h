// Options of one n-D TV prox call (csrc/core/tv_nd_fgp.h), shared by the torch
// ops (csrc/tv_nd_ops.h) and the torch-free module (csrc/py/core_module.cpp).
#pragma once

#include <stdint.h>

namespace tvcli {

struct TvNdOptions {
  double tol;
  int64_t max_iter;
  int64_t check_every;
  bool restart;  // gradient-scheme momentum restart (O'Donoghue & Candes 2015)
  // CPU driver only: after the first checks, schedule the next certificate where
  // the bound's decay predicts tol (csrc/cpu/tv_nd_driver.h, next_check_predicted);
  // false: core::tvnd::next_check's fixed spacing (the CUDA kernels' schedule).
  bool adaptive_checks = false;
  // CPU driver only: near tol, also certify the midpoint of y and its average over
  // nearly flat regions when that bound is lower (csrc/cpu/tv_nd_merge.h).
  bool merge_flat = false;
  // CPU driver only: a float32 dual state turns float64 at the first check whose
  // plain bound is <= f32_until x max(w) (0: never; the float32 state's floor lies
  // near 2-5e-4 x max(w), docs/tv_variants.md).
  double f32_until = 0.0;
};

}  // namespace tvcli
