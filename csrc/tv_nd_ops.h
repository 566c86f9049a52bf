// Declarations of the n-D TV prox (isotropic / colour / anisotropic, weight maps;
// csrc/cpu/tv_nd_cpu.cpp, its CUDA twin csrc/cuda/tv_nd_cuda.cpp) and the
// argument check both backends share (defined in ops.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

#include "core/tv_nd_options.h"

namespace tvcli {

// x: contiguous (B, C, *S) float32/float64, nd = len(S) in 1..4, every size >= 1
// (B may be 0); w: contiguous, x's dtype and device, shape (B, 1, 1, *S) or
// (B, 1, 1, 1, ...) (one weight per problem); norm "iso" or "aniso"; tol >= 0,
// max_iter >= 1, check_every >= 1.
TvNdOptions check_tv_nd_args(const at::Tensor& x, const at::Tensor& w, int64_t nd,
                             c10::string_view norm, double tol, int64_t max_iter,
                             int64_t check_every, bool restart);

// Certified n-D TV prox of every problem x[b] ((C, *S); C channels share one norm
// per pixel with "iso"). Returns y (x's shape and dtype) and info (B, 3) float64:
// [iterations, RMS error bound sqrt(gap / (C n)) of y, converged 0/1]. The
// dual state is float32 when f32_state (the certificate is double either way);
// restart: momentum restarts when <q - p+, p+ - p> > 0 (off: plain FISTA, the
// iterates of tvcli/tv_nd_solvers.py). adaptive_checks: certificates where the
// bound's decay predicts tol (TvNdOptions), else every check_every iterations.
// merge_flat: near tol, also certify the midpoint of y and its average over nearly
// flat regions (csrc/cpu/tv_nd_merge.h). f32_until: a float32 state turns float64
// once the bound is <= f32_until x max(w) (TvNdOptions). All three CPU only (the
// CUDA op ignores them).
// A problem whose x is not finite, or whose w is negative or not finite, gives
// NaN and info [0, NaN, 0].
std::tuple<at::Tensor, at::Tensor> prox_tv_nd_cpu(const at::Tensor& x, const at::Tensor& w,
                                                  int64_t nd, c10::string_view norm,
                                                  double tol, int64_t max_iter,
                                                  int64_t check_every, bool f32_state,
                                                  bool restart, bool adaptive_checks,
                                                  bool merge_flat, double f32_until);

struct TvNdBackwardOptions {
  double flat_factor;  // flat: |(D y)_i| <= flat_factor x bound + 1e-12 (1 + max|y|)
  double cg_rtol;      // CG's relative residual
  int64_t cg_max_iter;
};

// Backward of prox_tv_nd at its solution y (float64, (B, C, *S)) by implicit
// differentiation (tvcli/tv_implicit.py's method, one problem per thread):
// grad_y float64 of y's shape, w (B, 1, *S) or (B, 1, 1...) float64, bound (B,)
// float64 the forward's certified bounds. Returns (grad_x (B, C, *S),
// grad_w (B, 1, *S)), float64; NaN for problems whose y is not finite.
std::tuple<at::Tensor, at::Tensor> prox_tv_nd_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& y, const at::Tensor& w, const at::Tensor& bound,
    int64_t nd, c10::string_view norm, double flat_factor, double cg_rtol, int64_t cg_max_iter);

}  // namespace tvcli
