// Maps a flat signal index to element offsets in several tensors at once.
//
// A batch of 1-D signals is every index of a tensor except along the signal
// dimension. Each tensor taking part (input, output, lam, gradients) has its own
// strides over the same batch sizes; one unravel yields all their offsets, so no
// tensor is ever copied into a transposed layout. Torch-free and host/device.
#pragma once

#include "tv_common.h"

namespace tvcli {
namespace core {

constexpr int kMaxBatchDims = 16;  // more than any tensor after coalescing needs
constexpr int kMaxOperands = 5;

struct SignalBatch {
  int ndim = 0;         // batch dimensions after coalescing
  int noperands = 0;    // tensors described
  int64_t count = 1;    // number of signals
  int64_t length = 0;   // samples per signal
  int64_t sizes[kMaxBatchDims] = {};
  int64_t strides[kMaxOperands][kMaxBatchDims] = {};
  int64_t signal_stride[kMaxOperands] = {};  // element stride along the signal

  // Element offsets of signal s (0 <= s < count) in each operand.
  TV_HOST_DEVICE TV_INLINE void offsets(int64_t s, int64_t* out) const {
    for (int t = 0; t < noperands; ++t) out[t] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t size = sizes[d];
      const int64_t i = s % size;
      s /= size;
      for (int t = 0; t < noperands; ++t) out[t] += i * strides[t][d];
    }
  }

  // The same for the first N operands, N known at compile time: the unrolled
  // loop keeps out[] in registers on the GPU (a runtime-bounded loop over a
  // local array would put it in local memory).
  template <int N>
  TV_HOST_DEVICE TV_INLINE void offsets_fixed(int64_t s, int64_t (&out)[N]) const {
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int t = 0; t < N; ++t) out[t] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t size = sizes[d];
      const int64_t i = s % size;
      s /= size;
#if defined(__CUDACC__)
#pragma unroll
#endif
      for (int t = 0; t < N; ++t) out[t] += i * strides[t][d];
    }
  }
};

// Walks the signals begin, begin + 1, ... of a batch, keeping every operand's
// offset up to date with additions: unravelling each signal index anew costs a
// 64-bit division per batch dimension, which on short signals added ~40% to the
// backward (Table 1: 32 samples, ~30 ns of work per signal; docs/benchmarks.md).
// Host loops use it; device threads stride by the grid and unravel (offsets_fixed).
struct SignalCursor {
  const SignalBatch& b;
  int64_t idx[kMaxBatchDims];
  int64_t off[kMaxOperands];

  TV_HOST_DEVICE SignalCursor(const SignalBatch& batch, int64_t s) : b(batch) {
    for (int t = 0; t < kMaxOperands; ++t) off[t] = 0;
    for (int d = b.ndim - 1; d >= 0; --d) {
      const int64_t i = s % b.sizes[d];
      s /= b.sizes[d];
      idx[d] = i;
      for (int t = 0; t < b.noperands; ++t) off[t] += i * b.strides[t][d];
    }
  }

  // Moves to the next signal (the last batch dimension varies fastest).
  TV_HOST_DEVICE TV_INLINE void next() {
    for (int d = b.ndim - 1; d >= 0; --d) {
      for (int t = 0; t < b.noperands; ++t) off[t] += b.strides[t][d];
      if (++idx[d] < b.sizes[d]) return;
      for (int t = 0; t < b.noperands; ++t) off[t] -= b.strides[t][d] * b.sizes[d];
      idx[d] = 0;
    }
  }
};

}  // namespace core
}  // namespace tvcli
