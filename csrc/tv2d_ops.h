// Declarations of the 2-D TV operators (csrc/cpu/tv2d_cpu.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace tvcli {

// Converged 2-D anisotropic TV prox of contiguous (B, H, W) images, lam (B,).
// Returns y (B, H, W) in x's dtype and info (B, 3) float64:
// [iterations, rms error bound sqrt(2 gap / (H W)), converged 0/1].
std::tuple<at::Tensor, at::Tensor> prox_tv2d_solve_cpu(const at::Tensor& x,
                                                       const at::Tensor& lam, double tol,
                                                       int64_t max_iter, int64_t check_every,
                                                       double region_tol);
// Backward of the converged prox from the region structure of y.
std::tuple<at::Tensor, at::Tensor> prox_tv2d_region_backward_cpu(const at::Tensor& grad_y,
                                                                 const at::Tensor& y,
                                                                 const at::Tensor& lam,
                                                                 double region_tol);

// Paper mode: K proximal-Dykstra iterations; returns y and the jump signs of every
// pass (int8, (B, 2K, H, W)) for the backward.
std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_cpu(const at::Tensor& x,
                                                         const at::Tensor& lam, int64_t iters);
std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_backward_cpu(const at::Tensor& grad_y,
                                                                  const at::Tensor& signs,
                                                                  const at::Tensor& lam);

}  // namespace tvcli
