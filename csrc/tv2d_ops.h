// Declarations of the 2-D TV operators (csrc/cpu/tv2d_cpu.cpp; their CUDA twins
// in csrc/cuda/tv2d_cuda.cpp) and the argument checks both backends share.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace tvcli {

// Argument checks shared by the CPU and CUDA kernels (defined in ops.cpp), so
// that both backends reject the same inputs with the same messages.
// x: contiguous (B, H, W) float32/float64 images, H W < 2^31; lam: (B,), x's
// dtype and device.
void check_images(const at::Tensor& x, const at::Tensor& lam);
// grad_y: y's shape, dtype and device.
void check_grad_like(const at::Tensor& grad_y, const at::Tensor& y);
// signs: contiguous int8 (B, 2K, H, W) on g's device, g (B, H, W).
void check_signs(const at::Tensor& signs, const at::Tensor& g);

// Converged 2-D anisotropic TV prox of contiguous (B, H, W) images, lam (B,).
// Returns y (B, H, W) in x's dtype and info (B, 3) float64:
// [iterations, rms error bound sqrt(gap / (H W)), converged 0/1].
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
// pass (int8, (B, 2K, H, W)) for the backward. sharp: y is TV sharpening's
// 2 x - prox(x) instead (rounded as PyTorch rounds `2 * x - y`), and the backward
// that of this output (2 g + the prox's backward of -g; dL/dlam of -g).
std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_cpu(const at::Tensor& x,
                                                         const at::Tensor& lam, int64_t iters,
                                                         bool sharp);
std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_backward_cpu(const at::Tensor& grad_y,
                                                                  const at::Tensor& signs,
                                                                  const at::Tensor& lam,
                                                                  bool sharp);

}  // namespace tvcli
