// Per-thread bodies of the CUDA kernels, torch-free and host/device.
//
// Each __global__ kernel in tv1d_kernels.cu is one line: it passes its
// blockIdx.x / blockDim.x / threadIdx.x / gridDim.x to the body below. The CPU
// build compiles the same bodies (csrc/testing.cpp) and runs them over an
// emulated grid, so the signal-to-thread mapping, the grid-stride loop, the
// strides and the workspace layout are tested without a GPU.
//
// Mapping: one signal per thread. Thread t = block * block_dim + thread takes
// signals t, t + T, t + 2T, ... (T = grid_dim * block_dim), so any grid covers
// any batch. Signal s is unravelled by core::SignalBatch, whose last batch
// dimension varies fastest: for column signals of a contiguous tensor (dim
// other than the last) neighbouring threads read neighbouring addresses
// (coalesced). Row signals (dim = -1) are N elements apart per thread; staging
// them through shared memory is a possible later optimisation.
//
// Arithmetic is in double for both storages, as on the CPU, with one division
// rule (core::div_count) and no fused multiply-adds (--fmad=false here,
// -ffp-contract=off on the host), so that the CUDA results equal the CPU ones
// bit for bit; tests/test_grid_emulation.py checks the device's division
// branch on the host. half / bfloat16 never reach here: tvcli.prox_tv1d converts
// them to float32 in Python.
#pragma once

#include "../core/signal_batch.h"
#include "../core/tv1d_backward.h"
#include "../core/tv1d_direct.h"
#include "../core/tv1d_pn.h"

namespace tvcli {
namespace cuda {

// Operand order in `batch`: 0 x, 1 y, 2 lam, and for pn statistics 3 iters,
// 4 status (both may be null).
template <typename T>
struct ProxArgs {
  core::SignalBatch batch;
  const T* x;
  T* y;
  const T* lam;
  double* ws;  // pn only: one slot per solving thread, element stride = ws_threads
  int64_t ws_threads;  // pn only: threads that solve (<= launched); the others idle
  core::PNOptions opt;
  int32_t* iters;
  int8_t* status;
};

// Operand order in `batch`: 0 y, 1 grad_y, 2 grad_x, 3 grad_lam, 4 lam (as
// prox_tv1d_backward_cpu).
template <typename T>
struct BackwardArgs {
  core::SignalBatch batch;
  const T* y;
  const T* g;
  T* gx;
  T* glam;
  const T* lam;
};

// Index arithmetic shared by every kernel.
struct ThreadIndex {
  int64_t first;   // this thread's first signal (its global thread id)
  int64_t stride;  // signals between its successive signals (threads launched)
};

TV_HOST_DEVICE TV_INLINE ThreadIndex thread_index(uint32_t block, uint32_t block_dim,
                                                  uint32_t thread, uint32_t grid_dim) {
  return {static_cast<int64_t>(block) * block_dim + thread,
          static_cast<int64_t>(grid_dim) * block_dim};
}

// Inv: the division rule (core::CountInverse, what host and device run; the
// CPU grid emulation also runs core::CountInverseComputed, the device's branch).
template <typename T, typename Inv = core::CountInverse>
TV_HOST_DEVICE inline void prox_direct_thread(const ProxArgs<T>& a, uint32_t block,
                                              uint32_t block_dim, uint32_t thread,
                                              uint32_t grid_dim) {
  const ThreadIndex ti = thread_index(block, block_dim, thread, grid_dim);
  const int64_t n = a.batch.length;
  const int64_t sx = a.batch.signal_stride[0], sy = a.batch.signal_stride[1];
  for (int64_t s = ti.first; s < a.batch.count; s += ti.stride) {
    int64_t off[3];
    a.batch.template offsets_fixed<3>(s, off);
    core::tv1d_direct<T, double, Inv>(a.x + off[0], n, sx, a.y + off[1], sy,
                                      double(a.lam[off[2]]));
  }
}

// Only the first ws_threads threads solve (the workspace holds that many slots,
// see pn_launch_plan); thread t's slot starts at ws + t and is strided by
// ws_threads, so that the threads of a warp touch consecutive doubles. Its
// signals are t, t + ws_threads, ... (a grid-stride loop over the solving threads).
template <typename T, typename Inv = core::CountInverse>
TV_HOST_DEVICE inline void prox_pn_thread(const ProxArgs<T>& a, uint32_t block,
                                          uint32_t block_dim, uint32_t thread,
                                          uint32_t grid_dim) {
  const ThreadIndex ti = thread_index(block, block_dim, thread, grid_dim);
  const int64_t solving = a.ws_threads < ti.stride ? a.ws_threads : ti.stride;
  if (ti.first >= solving) return;
  const int64_t n = a.batch.length;
  const int64_t sx = a.batch.signal_stride[0], sy = a.batch.signal_stride[1];
  for (int64_t s = ti.first; s < a.batch.count; s += solving) {
    int64_t off[5];
    a.batch.template offsets_fixed<5>(s, off);
    const core::PNResult r = core::tv1d_pn<T, double, Inv>(a.x + off[0], n, sx, a.y + off[1],
                                                           sy, double(a.lam[off[2]]),
                                                           a.ws + ti.first, solving, a.opt);
    if (a.iters != nullptr) a.iters[off[3]] = r.iterations;
    if (a.status != nullptr) a.status[off[4]] = static_cast<int8_t>(r.status);
  }
}

template <typename T>
TV_HOST_DEVICE inline void backward_thread(const BackwardArgs<T>& a, uint32_t block,
                                           uint32_t block_dim, uint32_t thread,
                                           uint32_t grid_dim) {
  const ThreadIndex ti = thread_index(block, block_dim, thread, grid_dim);
  const int64_t n = a.batch.length;
  const int64_t sy = a.batch.signal_stride[0], sg = a.batch.signal_stride[1];
  const int64_t sgx = a.batch.signal_stride[2];
  for (int64_t s = ti.first; s < a.batch.count; s += ti.stride) {
    int64_t off[5];
    a.batch.template offsets_fixed<5>(s, off);
    a.glam[off[3]] = T(core::tv1d_backward<T, double>(a.y + off[0], sy, a.g + off[1], sg,
                                                      a.gx + off[2], sgx, n,
                                                      double(a.lam[off[4]])));
  }
}

// Threads per block: small blocks keep more of them resident while each
// thread holds a solver's whole state in registers.
constexpr int kBlockDim = 128;

// A launch covers every signal with one thread each, up to this many threads;
// beyond it the kernels' grid-stride loops take over (no practical limit).
constexpr int64_t kMaxThreads = int64_t(1) << 24;
// The pn workspace (3 (N - 1) doubles per solving thread) is capped so that
// long signals in big batches do not claim the whole device: fewer threads,
// each solving more signals.
constexpr int64_t kPNWorkspaceBytes = int64_t(256) << 20;

// Threads to launch for a batch: enough for every signal, at most max_threads,
// rounded up to whole blocks.
TV_HOST_DEVICE TV_INLINE int64_t launch_blocks(int64_t count, int64_t block_dim,
                                               int64_t max_threads) {
  int64_t threads = count < max_threads ? count : max_threads;
  if (threads < 1) threads = 1;
  return (threads + block_dim - 1) / block_dim;
}

// The pn launch: `threads` solving threads (one workspace slot of per_thread
// doubles each), in `blocks` blocks of block_dim (the last block's surplus idles).
// threads = min(signals, max_threads, cap_bytes / slot bytes), at least 1, so the
// workspace (threads * per_thread doubles) stays under cap_bytes unless a single
// signal alone needs more (then exactly one slot).
struct PNLaunchPlan {
  int64_t blocks;
  int64_t threads;
  int64_t per_thread;  // doubles per slot
};

TV_HOST_DEVICE TV_INLINE PNLaunchPlan pn_launch_plan(int64_t count, int64_t length,
                                                     int64_t block_dim, int64_t max_threads,
                                                     int64_t cap_bytes) {
  int64_t per_thread = core::tv1d_pn_workspace_size(length);
  if (per_thread < 1) per_thread = 1;
  int64_t threads = cap_bytes / (per_thread * int64_t(sizeof(double)));
  if (threads > max_threads) threads = max_threads;
  if (threads > count) threads = count;
  if (threads < 1) threads = 1;
  return {(threads + block_dim - 1) / block_dim, threads, per_thread};
}

}  // namespace cuda
}  // namespace tvcli
