// Builds a core::SignalBatch from tensors (host side, shared by CPU and CUDA).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/SmallVector.h>

#include <initializer_list>

#include "core/signal_batch.h"

namespace tvcli {

// `shape_ref` gives the batch sizes; every operand must have the same number of
// dimensions and, outside `dim`, either the same size or size 1 broadcast with
// stride 0 (lam). Size-1 dimensions are dropped and dimensions that are
// contiguous in every operand merged, so most calls end with ndim <= 1.
inline core::SignalBatch make_signal_batch(const at::Tensor& shape_ref, int64_t dim,
                                           std::initializer_list<at::Tensor> operands) {
  core::SignalBatch b;
  const int64_t nd = shape_ref.dim();
  TORCH_CHECK(static_cast<int>(operands.size()) <= core::kMaxOperands,
              "tvcli: too many operands");
  b.noperands = static_cast<int>(operands.size());
  b.length = nd == 0 ? 1 : shape_ref.size(dim);
  // Small vectors: no heap allocation for tensors of up to 8 dimensions (this
  // runs on every call, and a one-signal call takes a few microseconds).
  using Dims = c10::SmallVector<int64_t, 8>;
  Dims sizes;
  Dims strides[core::kMaxOperands];
  int t = 0;
  for (const auto& op : operands) {
    TORCH_CHECK(op.dim() == nd, "tvcli: operand rank mismatch");
    b.signal_stride[t] = nd == 0 ? 1 : op.stride(dim);
    ++t;
  }
  for (int64_t d = 0; d < nd; ++d) {
    if (d == dim || shape_ref.size(d) == 1) continue;
    sizes.push_back(shape_ref.size(d));
    t = 0;
    for (const auto& op : operands) {
      strides[t].push_back(op.size(d) == 1 ? 0 : op.stride(d));
      ++t;
    }
  }
  // Merge dimension d into d-1 when, for every operand, stepping d-1 once is
  // the same as stepping d through its whole size.
  Dims msizes;
  Dims mstrides[core::kMaxOperands];
  for (size_t d = 0; d < sizes.size(); ++d) {
    bool merge = !msizes.empty();
    for (size_t o = 0; merge && o < operands.size(); ++o)
      merge = mstrides[o].back() == strides[o][d] * sizes[d];
    if (merge) {
      msizes.back() *= sizes[d];
      for (size_t o = 0; o < operands.size(); ++o) mstrides[o].back() = strides[o][d];
    } else {
      msizes.push_back(sizes[d]);
      for (size_t o = 0; o < operands.size(); ++o) mstrides[o].push_back(strides[o][d]);
    }
  }
  TORCH_CHECK(static_cast<int>(msizes.size()) <= core::kMaxBatchDims,
              "tvcli: too many non-contiguous batch dimensions (",
              msizes.size(), " > ", core::kMaxBatchDims, "); call .contiguous() first");
  b.ndim = static_cast<int>(msizes.size());
  b.count = 1;
  for (size_t d = 0; d < msizes.size(); ++d) {
    b.sizes[d] = msizes[d];
    b.count *= msizes[d];
    for (size_t o = 0; o < operands.size(); ++o) b.strides[o][d] = mstrides[o][d];
  }
  if (shape_ref.numel() == 0) b.count = 0;
  return b;
}

}  // namespace tvcli
