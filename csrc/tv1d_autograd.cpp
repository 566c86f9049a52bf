// Autograd of tvcli::prox_tv1d in C++, and the Python entry that reaches it with
// the least work per call (issue 28: per-call overhead).
//
// Why C++: with the autograd formula registered from Python (torch.library.
// register_autograd), every call of the op, even without gradients, ran a Python
// autograd.Function (~4 Python frames, a ctx object, save_for_backward), and every
// backward ran Python again. Here the op's Autograd kernel is a
// torch::autograd::Function (pytorch/extension-cpp's C++ pattern): the forward
// saves y and lam, the backward calls tvcli::prox_tv1d_backward through the
// dispatcher, so both work for every device that has kernels and under
// torch.compile (AOTAutograd traces the C++ function with fake tensors).
//
// prox_tv1d_fast (a METH_FASTCALL function of tvcli._C) is tvcli.prox_tv1d's
// fast path: it takes (x, lam, dim, solver) as the Python API does, broadcasts
// lam, checks what the kernels need and calls the op through the C++ dispatcher,
// without torch.ops' Python frames and argument matching. It handles only the
// common case (a plain float32/float64 tensor on a device with kernels, lam a
// non-negative number or a tensor that broadcasts, no __torch_function__ mode)
// and returns None for everything else; the Python caller then takes its general
// path, which raises the one clear error for bad input.
#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/SmallVector.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/library.h>

#include <cmath>

#include "tv1d_autograd.h"

namespace tvcli {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ProxSig = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, c10::string_view);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, int64_t);

// Looked up once: findSchemaOrThrow walks a hash map under a lock.
const c10::TypedOperatorHandle<ProxSig>& prox_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("tvcli::prox_tv1d", "").typed<ProxSig>();
  return op;
}

const c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tvcli::prox_tv1d_backward", "")
                             .typed<BackwardSig>();
  return op;
}

struct ProxTV1dFunction : public torch::autograd::Function<ProxTV1dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& lam,
                            int64_t dim, c10::string_view solver) {
    // Below the Autograd key: reaches the CPU / CUDA kernel, not this function again.
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor y = prox_op().call(x, lam, dim, solver);
    // The backward needs only y (its runs are x's segments) and lam: nothing of x.
    ctx->save_for_backward({y, lam});
    ctx->saved_data["dim"] = dim;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    auto [grad_x, grad_lam] = backward_op().call(grad_outputs[0], saved[0], saved[1], dim);
    return {grad_x, grad_lam, at::Tensor(), at::Tensor()};
  }
};

at::Tensor prox_tv1d_autograd(const at::Tensor& x, const at::Tensor& lam, int64_t dim,
                              c10::string_view solver) {
  // Nothing to differentiate (no_grad, inference, inputs without requires_grad):
  // straight to the kernel. Function::apply would still build a node, copy the
  // inputs' metadata and fill a context that nothing reads.
  if (!at::GradMode::is_enabled() || !(x.requires_grad() || lam.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return prox_op().call(x, lam, dim, solver);
  }
  return ProxTV1dFunction::apply(x, lam, dim, solver);
}

// --- the Python fast path ----------------------------------------------------

// Whether `v` (a lam tensor's values on the CPU) are all >= 0 (NaN fails), read
// in place; false also for layouts and dtypes this does not read (the caller then
// leaves the call to the Python path, which checks any lam).
bool cpu_lam_values_ok(const at::Tensor& v) {
  if (!v.is_contiguous()) return false;
  const int64_t n = v.numel();
  switch (v.scalar_type()) {
    case at::kFloat: {
      const float* p = v.const_data_ptr<float>();
      for (int64_t i = 0; i < n; ++i)
        if (!(p[i] >= 0.0f)) return false;
      return true;
    }
    case at::kDouble: {
      const double* p = v.const_data_ptr<double>();
      for (int64_t i = 0; i < n; ++i)
        if (!(p[i] >= 0.0)) return false;
      return true;
    }
    default:
      return false;
  }
}

// lam as x's rank with size 1 along dim, broadcast (a view), in x's dtype; an
// undefined tensor when lam does not fit (the Python path then says why).
at::Tensor broadcast_lam_tensor(const at::Tensor& lam, const at::Tensor& x, int64_t dim) {
  const int64_t nd = x.dim(), ld = lam.dim();
  if (!lam.has_storage()) return {};  // a torch.func wrapper: the Python path
  if (ld > nd || lam.device() != x.device() || lam.is_complex()) return {};
  if (!at::isFloatingType(lam.scalar_type())) return {};
  c10::SmallVector<int64_t, 8> shape(nd, 1), target(x.sizes().begin(), x.sizes().end());
  target[dim] = 1;
  for (int64_t d = 0; d < ld; ++d) {
    const int64_t s = lam.size(d), k = nd - ld + d;
    if ((k == dim && s != 1) || (s != 1 && s != x.size(k))) return {};
    shape[k] = s;
  }
  if (lam.device().is_cpu() && !cpu_lam_values_ok(lam.detach())) return {};
  // Through ATen, so autograd records the dtype cast and the expand (their
  // backward sums grad_lam back to lam's shape).
  at::Tensor l = lam.scalar_type() == x.scalar_type() ? lam : lam.to(x.scalar_type());
  return l.reshape(shape).expand(target);
}

// Kernels exist for this device (the registrations are fixed once _C is loaded).
bool has_kernels_for(const at::Tensor& x) {
  if (x.device().is_cpu()) return true;
  if (!x.device().is_cuda()) return false;
  static const bool has_cuda =
      c10::Dispatcher::singleton().findSchemaOrThrow("tvcli::prox_tv1d", "")
          .hasKernelForDispatchKey(c10::DispatchKey::CUDA);
  return has_cuda;
}

PyObject* not_handled() { Py_RETURN_NONE; }

// Releases the GIL for its lifetime.
struct WithoutGil {
  PyThreadState* state = PyEval_SaveThread();
  WithoutGil() = default;
  WithoutGil(const WithoutGil&) = delete;
  WithoutGil& operator=(const WithoutGil&) = delete;
  ~WithoutGil() { PyEval_RestoreThread(state); }
};

// Below this many samples a call takes a few microseconds, about what releasing
// and re-taking the GIL costs; the GIL is kept.
constexpr int64_t kReleaseGilNumel = 1 << 14;

PyObject* prox_tv1d_fast(PyObject* /*self*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "prox_tv1d_fast(x, lam, dim, solver)");
    return nullptr;
  }
  PyObject *px = args[0], *plam = args[1], *pdim = args[2], *psolver = args[3];
  // Exact tensors only: subclasses and torch-function modes may override the call.
  if (!THPVariable_CheckExact(px) || at::impl::torch_function_mode_enabled())
    return not_handled();
  const at::Tensor& x = THPVariable_Unpack(px);
  // No storage: a torch.func wrapper (grad, vjp, vmap); the Python path handles it.
  if (!x.has_storage()) return not_handled();
  const auto dtype = x.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) || x.dim() == 0 || !has_kernels_for(x))
    return not_handled();
  if (!PyLong_CheckExact(pdim) || !PyUnicode_Check(psolver)) return not_handled();
  int overflow = 0;
  int64_t dim = PyLong_AsLongLongAndOverflow(pdim, &overflow);
  if (overflow != 0 || (dim == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return not_handled();
  }
  const int64_t nd = x.dim();
  if (dim < -nd || dim >= nd) return not_handled();
  if (dim < 0) dim += nd;
  c10::string_view solver;
  if (PyUnicode_CompareWithASCIIString(psolver, "direct") == 0) {
    solver = "direct";
  } else if (PyUnicode_CompareWithASCIIString(psolver, "pn") == 0) {
    solver = "pn";
  } else {
    return not_handled();
  }
  at::Tensor lam_b;
  if (PyFloat_CheckExact(plam) || PyLong_CheckExact(plam)) {  // bool is not exact int
    const double v = PyFloat_CheckExact(plam) ? PyFloat_AS_DOUBLE(plam)
                                              : PyLong_AsDouble(plam);
    if (v == -1.0 && PyErr_Occurred()) {  // an int beyond double's range
      PyErr_Clear();
      return not_handled();
    }
    if (!(v >= 0.0)) return not_handled();  // negative or NaN: the Python path raises
    c10::SmallVector<int64_t, 8> target(x.sizes().begin(), x.sizes().end());
    target[dim] = 1;
    lam_b = at::scalar_tensor(v, x.options()).expand(target);
  } else if (THPVariable_CheckExact(plam)) {
    lam_b = broadcast_lam_tensor(THPVariable_Unpack(plam), x, dim);
    if (!lam_b.defined()) return not_handled();
  } else {
    return not_handled();
  }
  at::Tensor y;
  if (x.numel() < kReleaseGilNumel) {
    y = prox_op().call(x, lam_b, dim, solver);
  } else {
    // Long solves must not hold the GIL (DataLoader threads, other models); the
    // guard takes it back before an exception reaches the handlers below.
    WithoutGil no_gil;
    y = prox_op().call(x, lam_b, dim, solver);
  }
  return THPVariable_Wrap(std::move(y));
  END_HANDLE_TH_ERRORS
}

PyMethodDef kMethods[] = {
    {"prox_tv1d_fast", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(&prox_tv1d_fast)),
     METH_FASTCALL,
     "prox_tv1d_fast(x, lam, dim, solver) -> Tensor or None: tvcli.prox_tv1d's fast path "
     "(None: not handled here, take the general path)."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

int add_tv1d_python_methods(PyObject* module) { return PyModule_AddFunctions(module, kMethods); }

TORCH_LIBRARY_IMPL(tvcli, Autograd, m) { m.impl("prox_tv1d", &prox_tv1d_autograd); }

}  // namespace tvcli
