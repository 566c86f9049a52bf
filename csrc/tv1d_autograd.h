// The Python functions of tvcli._C (csrc/tv1d_autograd.cpp), added to the module
// by PyInit__C (csrc/ops.cpp).
#pragma once

#include <Python.h>

namespace tvcli {

// Adds prox_tv1d_fast to `module`; 0 on success, -1 with a Python error set.
int add_tv1d_python_methods(PyObject* module);

}  // namespace tvcli
