// Arguments of the n-D TV prox's CUDA kernels (tv_nd_kernel_body.h) filled from
// tensors: one filling for the CUDA glue (tv_nd_cuda.cpp) and the CPU grid
// emulator (csrc/testing_tv_nd.cpp), so that the emulator runs the kernel bodies
// on the arguments the glue launches them with. Host only (torch). The work
// buffers (p, q, r, y, s, t, dot, gap, state, running) are left to the caller:
// device tensors in the glue, guarded host buffers in the emulator.
#pragma once

#include <ATen/core/Tensor.h>

#include "tv_nd_kernel_body.h"

namespace tvcli {
namespace cuda {
namespace tvnd {

// Sizes of the work buffers of x (B, C, *S), in elements.
struct NdSizes {
  int64_t state;  // p and q, each: B nd C n
  int64_t lines;  // r and y, each: B C lines (w + 1)
  int64_t pixels;  // s: B n
};

inline NdSizes nd_sizes(const Geometry& g, int64_t batch) {
  return NdSizes{batch * g.nd * g.channels * g.n, batch * g.channels * g.lines * (g.w + 1),
                 batch * g.n};
}

inline Geometry geometry_of(const at::Tensor& x, int64_t nd) {
  int64_t sizes[core::tvnd::kMaxDims] = {1, 1, 1, 1};
  for (int64_t d = 0; d < nd; ++d) sizes[d] = x.size(2 + d);
  return core::tvnd::make_geometry(static_cast<int>(nd), sizes, static_cast<int>(x.size(1)));
}

template <typename T, typename S>
NdArgs<T, S> make_nd_args(const at::Tensor& x, const at::Tensor& w, int64_t nd, bool iso,
                          double tol, int64_t max_iter, bool restart, const at::Tensor& out) {
  NdArgs<T, S> a{};
  a.g = geometry_of(x, nd);
  a.batch = x.size(0);
  a.x = x.const_data_ptr<T>();
  a.w = w.const_data_ptr<T>();
  a.w_map = w.numel() != x.size(0);
  a.iso = iso;
  a.restart = restart;
  a.out = out.mutable_data_ptr<T>();
  a.tol = tol;
  a.max_iter = max_iter;
  a.inv_l = S(1.0 / core::tvnd::lipschitz(static_cast<int>(nd)));
  return a;
}

}  // namespace tvnd
}  // namespace cuda
}  // namespace tvcli
