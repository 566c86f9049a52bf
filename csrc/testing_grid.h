// Pieces of the CPU grid emulators (csrc/testing.cpp for the 1-D kernels,
// csrc/testing_tv2d.cpp for the 2-D ones): a CUDA grid run thread by thread,
// and host buffers framed by canaries that must survive the kernel bodies.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

namespace tvcli {
namespace testing {

constexpr int64_t kGuard = 64;  // canary elements on each side of a buffer
constexpr double kCanary = -98765.4321;

// Runs body(block, block_dim, thread, grid_dim) for block = 0 .. grid_dim - 1,
// thread = 0 .. block_dim - 1 in turn.
template <typename Body>
void run_grid(int64_t grid_dim, int64_t block_dim, Body body) {
  for (int64_t b = 0; b < grid_dim; ++b)
    for (int64_t t = 0; t < block_dim; ++t)
      body(static_cast<uint32_t>(b), static_cast<uint32_t>(block_dim), static_cast<uint32_t>(t),
           static_cast<uint32_t>(grid_dim));
}

// A guarded buffer of n elements of A, initialised to the canary.
template <typename A>
struct Guarded {
  std::vector<A> v;
  explicit Guarded(int64_t n) : v(static_cast<size_t>(n + 2 * kGuard), A(kCanary)) {}
  A* data() { return v.data() + kGuard; }
  void check(const char* what) const {
    for (int64_t i = 0; i < kGuard; ++i) {
      TORCH_CHECK(v[i] == A(kCanary) && v[v.size() - 1 - i] == A(kCanary), "tvcli: ", what,
                  " written out of bounds");
    }
  }
};

}  // namespace testing
}  // namespace tvcli
