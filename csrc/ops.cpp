// Operator schemas (TORCH_LIBRARY), the argument checks the CPU and CUDA
// kernels share (tv1d_ops.h, tv2d_ops.h) and the CPU registrations.
//
// Fake (meta) kernels are registered from Python (tvcli/_ops.py) with
// torch.library, as pytorch/extension-cpp does; so are the autograd formulas,
// except prox_tv1d's, which is C++ (csrc/tv1d_autograd.cpp: per-call overhead).
#include <Python.h>

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "tv1d_autograd.h"
#include "tv1d_ops.h"
#include "tv2d_ops.h"
#include "tv_nd_ops.h"

// A small Python module, so that `import tvcli._C` loads this library and runs
// the registrations below; its one function is tvcli.prox_tv1d's fast path
// (csrc/tv1d_autograd.cpp). PyMODINIT_FUNC exports the symbol despite
// -fvisibility=hidden.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1,
                                          nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr && tvcli::add_tv1d_python_methods(module) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

namespace tvcli {

Solver parse_solver(c10::string_view name) {
  if (name == "direct") return Solver::kDirect;
  if (name == "pn") return Solver::kPN;
  TORCH_CHECK(false, "tvcli: unknown solver '", std::string(name),
              "' (expected 'direct' or 'pn')");
}

int64_t check_prox_args(const at::Tensor& x, const at::Tensor& lam, int64_t dim) {
  TORCH_CHECK(x.dim() >= 1, "tvcli: x must have at least one dimension");
  TORCH_CHECK(dim >= -x.dim() && dim < x.dim(), "tvcli: dim ", dim,
              " is out of range for a tensor of rank ", x.dim());
  if (dim < 0) dim += x.dim();
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "tvcli: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(lam.scalar_type() == x.scalar_type(), "tvcli: lam must have x's dtype");
  TORCH_CHECK(lam.device() == x.device(), "tvcli: lam must be on x's device");
  TORCH_CHECK(lam.dim() == x.dim(), "tvcli: lam must have x's rank (broadcast it first)");
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t want = d == dim ? 1 : x.size(d);
    TORCH_CHECK(lam.size(d) == want, "tvcli: lam has size ", lam.size(d),
                " in dimension ", d, ", expected ", want);
  }
  return dim;
}

int64_t check_prox_backward_args(const at::Tensor& grad_y, const at::Tensor& y,
                                 const at::Tensor& lam, int64_t dim) {
  dim = check_prox_args(y, lam, dim);
  TORCH_CHECK(grad_y.sizes() == y.sizes(), "tvcli: grad_y must have y's shape");
  TORCH_CHECK(grad_y.scalar_type() == y.scalar_type(), "tvcli: grad_y must have y's dtype");
  TORCH_CHECK(grad_y.device() == y.device(), "tvcli: grad_y must be on y's device");
  return dim;
}

core::PNOptions pn_stats_options(int64_t max_iter) {
  TORCH_CHECK(max_iter >= 0 && max_iter <= (1 << 20), "tvcli: max_iter out of range");
  core::PNOptions opt;
  opt.max_iter = static_cast<int>(max_iter);
  return opt;
}

void check_images(const at::Tensor& x, const at::Tensor& lam) {
  TORCH_CHECK(x.dim() == 3, "tvcli: expected (B, H, W) images");
  TORCH_CHECK(x.is_contiguous(), "tvcli: images must be contiguous");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "tvcli: x must be float32 or float64");
  TORCH_CHECK(lam.dim() == 1 && lam.size(0) == x.size(0), "tvcli: lam must have shape (B,)");
  TORCH_CHECK(lam.scalar_type() == x.scalar_type(), "tvcli: lam must have x's dtype");
  TORCH_CHECK(lam.device() == x.device(), "tvcli: lam must be on x's device");
  TORCH_CHECK(x.size(1) * x.size(2) < (int64_t(1) << 31), "tvcli: image too large");
}

void check_grad_like(const at::Tensor& grad_y, const at::Tensor& y) {
  TORCH_CHECK(grad_y.sizes() == y.sizes() && grad_y.scalar_type() == y.scalar_type() &&
                  grad_y.device() == y.device(),
              "tvcli: grad_y must match y");
}

void check_signs(const at::Tensor& signs, const at::Tensor& g) {
  TORCH_CHECK(signs.dim() == 4 && signs.size(0) == g.size(0) && signs.size(2) == g.size(1) &&
                  signs.size(3) == g.size(2) && signs.size(1) % 2 == 0 &&
                  signs.is_contiguous() && signs.scalar_type() == at::kChar &&
                  signs.device() == g.device(),
              "tvcli: signs do not match grad_y");
}

TvNdOptions check_tv_nd_args(const at::Tensor& x, const at::Tensor& w, int64_t nd,
                             c10::string_view norm, double tol, int64_t max_iter,
                             int64_t check_every, bool restart) {
  TORCH_CHECK(nd >= 1 && nd <= 4, "tvcli: prox_tv_nd supports 1 to 4 spatial dimensions, got ",
              nd);
  TORCH_CHECK(x.dim() == nd + 2, "tvcli: x must have shape (B, C, *S) with ", nd,
              " spatial dimensions, got rank ", x.dim());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "tvcli: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "tvcli: x and w must be contiguous");
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "tvcli: w must have x's dtype");
  TORCH_CHECK(w.device() == x.device(), "tvcli: w must be on x's device");
  TORCH_CHECK(norm == "iso" || norm == "aniso", "tvcli: norm must be 'iso' or 'aniso', got '",
              std::string(norm), "'");
  for (int64_t d = 1; d < x.dim(); ++d)
    TORCH_CHECK(x.size(d) >= 1, "tvcli: x has an empty dimension ", d);
  TORCH_CHECK(x.numel() / std::max<int64_t>(x.size(0), 1) < (int64_t(1) << 40),
              "tvcli: problem too large");
  TORCH_CHECK(w.dim() == x.dim() && w.size(0) == x.size(0) && w.size(1) == 1,
              "tvcli: w must have shape (B, 1, *S) or (B, 1, 1...)");
  bool full = true, single = true;
  for (int64_t d = 2; d < x.dim(); ++d) {
    full = full && w.size(d) == x.size(d);
    single = single && w.size(d) == 1;
  }
  TORCH_CHECK(full || single, "tvcli: w's spatial sizes must be x's or all 1");
  TORCH_CHECK(tol >= 0.0, "tvcli: tol must be >= 0");
  TORCH_CHECK(max_iter >= 1 && max_iter <= (int64_t(1) << 40), "tvcli: max_iter must be >= 1");
  TORCH_CHECK(check_every >= 1, "tvcli: check_every must be >= 1");
  return TvNdOptions{tol, max_iter, check_every, restart};
}

TORCH_LIBRARY(tvcli, m) {
  m.def("prox_tv1d(Tensor x, Tensor lam, int dim, str solver) -> Tensor");
  m.def("prox_tv1d_backward(Tensor grad_y, Tensor y, Tensor lam, int dim) -> (Tensor, Tensor)");
  m.def("prox_tv2d_solve(Tensor x, Tensor lam, float tol, int max_iter, int check_every, "
        "float region_tol) -> (Tensor, Tensor)");
  m.def("prox_tv2d_region_backward(Tensor grad_y, Tensor y, Tensor lam, float region_tol) "
        "-> (Tensor, Tensor)");
  // sharp=True: TV sharpening, y = 2 x - prox(x), and its backward (defaulted, so
  // calls without it keep the prox).
  m.def("prox_tv2d_dykstra(Tensor x, Tensor lam, int iters, bool sharp=False) "
        "-> (Tensor, Tensor)");
  m.def("prox_tv2d_dykstra_backward(Tensor grad_y, Tensor signs, Tensor lam, "
        "bool sharp=False) -> (Tensor, Tensor)");
  // Benchmark/diagnostic: solver="pn" plus per-signal iterations and status.
  m.def("prox_tv1d_pn_stats(Tensor x, Tensor lam, int dim, int max_iter=100) -> "
        "(Tensor, Tensor, Tensor)");
  // n-D TV prox (iso / colour / aniso, weight maps): (y, info [iterations, bound,
  // converged]) of x (B, C, *S), w (B, 1, *S) or (B, 1, 1...).
  m.def("prox_tv_nd(Tensor x, Tensor w, int nd, str norm, float tol, int max_iter, "
        "int check_every=5, bool f32_state=False, bool restart=True, "
        "bool adaptive_checks=False, bool merge_flat=False, float f32_until=0.0) -> (Tensor, Tensor)");
  // Its implicit backward: (grad_x, grad_w (B, 1, *S)) at the solution y (float64).
  m.def("prox_tv_nd_backward(Tensor grad_y, Tensor y, Tensor w, Tensor bound, int nd, str norm, "
        "float flat_factor, float cg_rtol, int cg_max_iter) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(tvcli, CPU, m) {
  m.impl("prox_tv1d", &prox_tv1d_cpu);
  m.impl("prox_tv1d_backward", &prox_tv1d_backward_cpu);
  m.impl("prox_tv2d_solve", &prox_tv2d_solve_cpu);
  m.impl("prox_tv2d_region_backward", &prox_tv2d_region_backward_cpu);
  m.impl("prox_tv2d_dykstra", &prox_tv2d_dykstra_cpu);
  m.impl("prox_tv2d_dykstra_backward", &prox_tv2d_dykstra_backward_cpu);
  m.impl("prox_tv1d_pn_stats", &prox_tv1d_pn_stats_cpu);
  m.impl("prox_tv_nd", &prox_tv_nd_cpu);
  m.impl("prox_tv_nd_backward", &prox_tv_nd_backward_cpu);
}

}  // namespace tvcli
