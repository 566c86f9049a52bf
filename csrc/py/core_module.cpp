// tvcli._core: the n-D TV prox (csrc/cpu/tv_nd_driver.h over csrc/core/tv_nd_fgp.h)
// as a plain CPython module, without torch: the command line's default smoothing
// runs through it without importing torch (issue 28; tvcli/tv_nd_core.py is its
// Python front end). Arrays come in through the buffer protocol (numpy arrays,
// memoryviews); threads are OpenMP's, split as ATen's (csrc/cpu/parallel_omp.h),
// so that y and info equal torch.ops.tvcli.prox_tv_nd's bit for bit at the same
// thread count.
//
//   prox_tv_nd(x, w, y, info, nd, norm, tol, max_iter, check_every, f32_state,
//              restart, threads, adaptive_checks=False, merge_flat=False,
//              f32_until=0.0) -> None
//
// x: C-contiguous (B, C, *S) float32 or float64, nd = len(S) in 1..4; w: x's
// dtype, (B, 1, *S) or (B, 1, 1, ...); y: writable, x's shape and dtype; info:
// writable float64 (B, 3): [iterations, RMS error bound, converged]. Argument
// errors raise ValueError / TypeError with the torch op's one-line message.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <omp.h>

#include <cstring>
#include <new>
#include <string>

#include "../cpu/parallel_omp.h"
#include "../cpu/tv_nd_driver.h"

namespace {

// A Py_buffer released on scope exit.
struct Buffer {
  Py_buffer view{};
  bool held = false;
  ~Buffer() {
    if (held) PyBuffer_Release(&view);
  }
};

// 'f' (float32), 'd' (float64) or 0 for anything else: the native-order float
// formats that numpy and memoryview give ("f", "<f", "=f", "@f", ...).
char float_kind(const Py_buffer& v) {
  const char* f = v.format ? v.format : "B";
  const bool little = [] {
    const uint16_t one = 1;
    unsigned char b;
    std::memcpy(&b, &one, 1);
    return b == 1;
  }();
  if (*f == '@' || *f == '=' || (*f == '<' && little) || (*f == '>' && !little)) ++f;
  if (f[0] == 'f' && f[1] == '\0' && v.itemsize == 4) return 'f';
  if (f[0] == 'd' && f[1] == '\0' && v.itemsize == 8) return 'd';
  return 0;
}

bool get_buffer(PyObject* obj, Buffer& b, bool writable, const char* name) {
  const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj, &b.view, flags) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "tvcli: %s must be a C-contiguous%s array (buffer)", name,
                 writable ? ", writable" : "");
    return false;
  }
  b.held = true;
  return true;
}

std::string shape_text(const Py_buffer& v) {
  std::string s = "(";
  for (int d = 0; d < v.ndim; ++d) s += (d ? ", " : "") + std::to_string(v.shape[d]);
  return s + (v.ndim == 1 ? ",)" : ")");
}

bool overlap(const Py_buffer& a, const Py_buffer& b) {
  const char* a0 = static_cast<const char*>(a.buf);
  const char* b0 = static_cast<const char*>(b.buf);
  return a.len > 0 && b.len > 0 && a0 < b0 + b.len && b0 < a0 + a.len;
}

PyObject* value_error(const std::string& msg) {
  PyErr_SetString(PyExc_ValueError, msg.c_str());
  return nullptr;
}

template <typename T>
bool run(int nd, bool iso, const int64_t* sizes, int channels, int64_t B, const Py_buffer& x,
         const Py_buffer& w, bool w_map, const Py_buffer& y, const Py_buffer& info,
         const tvcli::TvNdOptions& o, bool f32_state) {
  const T* xp = static_cast<const T*>(x.buf);
  const T* wp = static_cast<const T*>(w.buf);
  T* yp = static_cast<T*>(y.buf);
  double* ip = static_cast<double*>(info.buf);
  using tvcli::OmpParallel;
  return f32_state ? tvcli::tvnd_driver::solve_nd<OmpParallel, T, float>(
                         nd, iso, sizes, channels, B, xp, wp, w_map, yp, ip, o)
                   : tvcli::tvnd_driver::solve_nd<OmpParallel, T, double>(
                         nd, iso, sizes, channels, B, xp, wp, w_map, yp, ip, o);
}

PyObject* prox_tv_nd(PyObject*, PyObject* args, PyObject* kwargs) {
  static const char* kwlist[] = {"x",   "w",        "y",           "info",      "nd",
                                 "norm", "tol",     "max_iter",    "check_every",
                                 "f32_state", "restart", "threads", "adaptive_checks",
                                 "merge_flat", "f32_until", nullptr};
  PyObject *xo, *wo, *yo, *io;
  int nd, f32_state, restart, threads, adaptive_checks = 0, merge_flat = 0;
  double f32_until = 0.0;
  const char* norm;
  double tol;
  long long max_iter, check_every;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOisdLLppi|ppd", const_cast<char**>(kwlist),
                                   &xo, &wo, &yo, &io, &nd, &norm, &tol, &max_iter,
                                   &check_every, &f32_state, &restart, &threads,
                                   &adaptive_checks, &merge_flat, &f32_until))
    return nullptr;
  // The checks and messages of check_tv_nd_args (csrc/ops.cpp), then the buffers'.
  if (nd < 1 || nd > tvcli::core::tvnd::kMaxDims)
    return value_error("tvcli: prox_tv_nd supports 1 to 4 spatial dimensions, got " +
                       std::to_string(nd));
  Buffer x, w, y, info;
  if (!get_buffer(xo, x, false, "x") || !get_buffer(wo, w, false, "w") ||
      !get_buffer(yo, y, true, "y") || !get_buffer(io, info, true, "info"))
    return nullptr;
  if (x.view.ndim != nd + 2)
    return value_error("tvcli: x must have shape (B, C, *S) with " + std::to_string(nd) +
                       " spatial dimensions, got rank " + std::to_string(x.view.ndim));
  const char kind = float_kind(x.view);
  if (!kind)
    return value_error(std::string("tvcli: x must be float32 or float64, got format '") +
                       (x.view.format ? x.view.format : "B") + "'");
  if (float_kind(w.view) != kind) return value_error("tvcli: w must have x's dtype");
  if (std::string(norm) != "iso" && std::string(norm) != "aniso")
    return value_error(std::string("tvcli: norm must be 'iso' or 'aniso', got '") + norm + "'");
  const int64_t B = x.view.shape[0];
  for (int d = 1; d < x.view.ndim; ++d)
    if (x.view.shape[d] < 1)
      return value_error("tvcli: x has an empty dimension " + std::to_string(d));
  int64_t per_problem = 1;
  for (int d = 1; d < x.view.ndim; ++d) per_problem *= x.view.shape[d];
  if (per_problem >= (int64_t(1) << 40)) return value_error("tvcli: problem too large");
  if (w.view.ndim != x.view.ndim || w.view.shape[0] != B || w.view.shape[1] != 1)
    return value_error("tvcli: w must have shape (B, 1, *S) or (B, 1, 1...)");
  bool full = true, single = true;
  int64_t sizes[tvcli::core::tvnd::kMaxDims];
  for (int d = 2; d < x.view.ndim; ++d) {
    full = full && w.view.shape[d] == x.view.shape[d];
    single = single && w.view.shape[d] == 1;
    sizes[d - 2] = x.view.shape[d];
  }
  if (!(full || single)) return value_error("tvcli: w's spatial sizes must be x's or all 1");
  if (!(tol >= 0.0)) return value_error("tvcli: tol must be >= 0");
  if (max_iter < 1 || max_iter > (1LL << 40)) return value_error("tvcli: max_iter must be >= 1");
  if (check_every < 1) return value_error("tvcli: check_every must be >= 1");
  if (threads < 1) return value_error("tvcli: threads must be >= 1");
  if (!(f32_until >= 0.0)) return value_error("tvcli: f32_until must be >= 0");
  if (float_kind(y.view) != kind || y.view.ndim != x.view.ndim ||
      std::memcmp(y.view.shape, x.view.shape, sizeof(Py_ssize_t) * size_t(x.view.ndim)) != 0)
    return value_error("tvcli: y must have x's shape " + shape_text(x.view) + " and dtype");
  if (float_kind(info.view) != 'd' || info.view.ndim != 2 || info.view.shape[0] != B ||
      info.view.shape[1] != 3)
    return value_error("tvcli: info must be float64 of shape (" + std::to_string(B) + ", 3)");
  if (overlap(y.view, x.view) || overlap(y.view, w.view) || overlap(info.view, x.view) ||
      overlap(info.view, w.view) || overlap(info.view, y.view))
    return value_error("tvcli: y and info must not overlap x, w or each other");
  if (B == 0) Py_RETURN_NONE;
  const tvcli::TvNdOptions o{tol, int64_t(max_iter), int64_t(check_every), restart != 0,
                             adaptive_checks != 0, merge_flat != 0, f32_until};
  const bool w_map = w.view.len / w.view.itemsize != B;
  const int channels = int(x.view.shape[1]);
  const char* error = nullptr;
  Py_BEGIN_ALLOW_THREADS
  try {
    omp_set_num_threads(threads);
    if (kind == 'f')
      run<float>(nd, norm[0] == 'i', sizes, channels, B, x.view, w.view, w_map, y.view,
                 info.view, o, f32_state != 0);
    else
      run<double>(nd, norm[0] == 'i', sizes, channels, B, x.view, w.view, w_map, y.view,
                  info.view, o, f32_state != 0);
  } catch (const std::bad_alloc&) {
    error = "memory";
  } catch (...) {
    error = "other";
  }
  Py_END_ALLOW_THREADS
  if (error) {
    if (std::strcmp(error, "memory") == 0) return PyErr_NoMemory();
    PyErr_SetString(PyExc_RuntimeError, "tvcli: prox_tv_nd failed");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"prox_tv_nd", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(prox_tv_nd)),
     METH_VARARGS | METH_KEYWORDS,
     "prox_tv_nd(x, w, y, info, nd, norm, tol, max_iter, check_every, f32_state, restart, "
     "threads, adaptive_checks=False, merge_flat=False, f32_until=0.0): torch.ops.tvcli.prox_tv_nd into y and info, "
     "without torch."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core",
                      "tvcli's n-D TV prox without torch (csrc/py/core_module.cpp).", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__core() {
  PyObject* m = PyModule_Create(&module);
  if (!m) return nullptr;
#ifdef TVCLI_CUDA_ENGINE
  const int cuda_engine = 1;
#else
  const int cuda_engine = 0;
#endif
  // Whether tvcli._C of this build has CUDA kernels (the CLI's --device auto can
  // then pick the GPU, which only torch can tell).
  if (PyModule_AddObject(m, "cuda_engine", PyBool_FromLong(cuda_engine)) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
