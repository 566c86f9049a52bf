// Arguments of the 2-D CUDA kernels (tv2d_kernel_body.h) filled from their
// tensors: one filling for the CUDA glue (tv2d_cuda.cpp) and the CPU grid
// emulator (csrc/testing_tv2d.cpp), so that the emulator runs the kernel bodies
// on the arguments the glue launches them with. Host only (torch). Workspace
// pointers -- paper-mode state, per-line dL/dlam, the converged mode's planes,
// the region backward's union-find slots -- are left to the caller: device
// tensors in the glue, guarded host buffers in the emulator.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/isfinite.h>

#include "tv2d_kernel_body.h"

namespace tvcli {
namespace cuda {

// (B,) uint8: 1 where image b of x (B, H, W) holds NaN/Inf (the CPU op finds
// them while loading; here one reduction).
inline at::Tensor bad_images(const at::Tensor& x) {
  return at::isfinite(x).all(2).all(1).logical_not().to(at::kByte);
}

// Paper-mode forward of x (B, H, W) into y and the signs sgn (B, 2 iters, H, W);
// bad from bad_images(x). The caller sets pitch and state.
template <typename T, typename A>
DykstraFwdArgs<T, A> make_dykstra_fwd_args(const at::Tensor& x, const at::Tensor& lam,
                                           const at::Tensor& bad, int64_t iters,
                                           const at::Tensor& y, const at::Tensor& sgn,
                                           bool sharp) {
  DykstraFwdArgs<T, A> a{};
  a.x = x.const_data_ptr<T>();
  a.y = y.mutable_data_ptr<T>();
  a.sgn = sgn.mutable_data_ptr<int8_t>();
  a.lam = lam.const_data_ptr<T>();
  a.bad = bad.const_data_ptr<uint8_t>();
  a.batch = x.size(0);
  a.h = x.size(1);
  a.w = x.size(2);
  a.iters = iters;
  a.sharp = sharp;
  return a;
}

// Paper-mode backward of g = dL/dy (B, H, W) with the forward's signs
// (B, 2 iters, H, W) into gx (B, H, W) and glam (B,). The caller sets state,
// glam_rows and glam_cols.
template <typename T, typename A>
DykstraBwdArgs<T, A> make_dykstra_bwd_args(const at::Tensor& g, const at::Tensor& sgn,
                                           const at::Tensor& lam, const at::Tensor& gx,
                                           const at::Tensor& glam, bool sharp) {
  DykstraBwdArgs<T, A> a{};
  a.sgn = sgn.const_data_ptr<int8_t>();
  a.g = g.const_data_ptr<T>();
  a.gx = gx.mutable_data_ptr<T>();
  a.lam = lam.const_data_ptr<T>();
  a.glam = glam.mutable_data_ptr<T>();
  a.batch = g.size(0);
  a.h = g.size(1);
  a.w = g.size(2);
  a.iters = sgn.size(1) / 2;
  a.sharp = sharp;
  return a;
}

// Converged mode of xd (B, H, W) and lamd (B,), both float64. The caller sets
// the state planes v, w, z, u, the flags, info and row_gap.
inline FistaArgs make_fista_args(const at::Tensor& xd, const at::Tensor& lamd) {
  FistaArgs a{};
  a.x = xd.const_data_ptr<double>();
  a.lam = lamd.const_data_ptr<double>();
  a.batch = xd.size(0);
  a.h = xd.size(1);
  a.wd = xd.size(2);
  return a;
}

// Region backward of g = dL/dy at y (B, H, W) into gx and glam (B,), with
// `slots` images in flight. The caller sets parent and acc.
template <typename T>
RegionBwdArgs<T> make_region_bwd_args(const at::Tensor& g, const at::Tensor& y,
                                      const at::Tensor& lam, int64_t slots, double region_tol,
                                      const at::Tensor& gx, const at::Tensor& glam) {
  RegionBwdArgs<T> a{};
  a.y = y.const_data_ptr<T>();
  a.g = g.const_data_ptr<T>();
  a.gx = gx.mutable_data_ptr<T>();
  a.lam = lam.const_data_ptr<T>();
  a.glam = glam.mutable_data_ptr<T>();
  a.batch = y.size(0);
  a.h = y.size(1);
  a.w = y.size(2);
  a.slots = slots;
  a.region_tol = region_tol;
  return a;
}

}  // namespace cuda
}  // namespace tvcli
