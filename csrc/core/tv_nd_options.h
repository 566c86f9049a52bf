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
};

}  // namespace tvcli
