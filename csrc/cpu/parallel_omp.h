// The host driver's parallel backend on plain OpenMP (csrc/cpu/tv_nd_driver.h),
// for builds without torch (tvcli._core). It splits work exactly as ATen's
// OpenMP backend does (ATen/Parallel-inl.h, ATen/ParallelOpenMP.h of torch 2.x):
//
//   * parallel_for / parallel_reduce run in the calling thread when the range is
//     at most one grain, the caller is already in a parallel region, or one
//     thread is set; parallel_for also when the range has one element;
//   * otherwise a `#pragma omp parallel` team of the set thread count, task count
//     min(threads, ceil(n / grain)), chunk ceil(n / tasks), chunk k to thread k;
//   * a reduction keeps one partial per thread (ident for threads without a
//     chunk) and combines them in thread order, starting from ident.
//
// So a reduction's summation order, the only thing in the driver that depends
// on the split, is the same as the torch op's at the same thread count. The
// thread count is OpenMP's (omp_set_num_threads by the caller, as torch does).
#pragma once

#include <omp.h>
#include <stdint.h>

#include <algorithm>
#include <exception>
#include <vector>

namespace tvcli {

struct OmpParallel {
  static int64_t num_threads() { return omp_get_max_threads(); }

  // ATen's internal::invoke_parallel: f(b, e) on each thread's chunk; the first
  // exception thrown in a chunk is rethrown here after the team ends.
  template <typename F>
  static void invoke(int64_t begin, int64_t end, int64_t grain, const F& f) {
    std::exception_ptr eptr;
    bool failed = false;
#pragma omp parallel
    {
      int64_t tasks = omp_get_num_threads();
      if (grain > 0) tasks = std::min(tasks, (end - begin + grain - 1) / grain);
      const int64_t tid = omp_get_thread_num();
      const int64_t chunk = (end - begin + tasks - 1) / tasks;
      const int64_t b = begin + tid * chunk;
      if (b < end) {
        try {
          f(tid, b, std::min(end, b + chunk));
        } catch (...) {
#pragma omp critical(tvcli_omp_error)
          if (!failed) {
            failed = true;
            eptr = std::current_exception();
          }
        }
      }
    }
    if (eptr) std::rethrow_exception(eptr);
  }

  template <typename F>
  static void for_range(int64_t begin, int64_t end, int64_t grain, const F& f) {
    if (begin >= end) return;
    const int64_t n = end - begin;
    if (n <= grain || n <= 1 || omp_in_parallel() || num_threads() <= 1) {
      f(begin, end);
      return;
    }
    invoke(begin, end, grain, [&](int64_t, int64_t b, int64_t e) { f(b, e); });
  }

  template <typename F, typename SF>
  static double reduce(int64_t begin, int64_t end, int64_t grain, double ident, const F& f,
                       const SF& sf) {
    if (begin >= end) return ident;
    const int64_t threads = num_threads();
    if (end - begin <= grain || omp_in_parallel() || threads <= 1) return f(begin, end, ident);
    std::vector<double> partial(static_cast<size_t>(threads), ident);
    invoke(begin, end, grain,
           [&](int64_t tid, int64_t b, int64_t e) { partial[size_t(tid)] = f(b, e, ident); });
    double result = ident;
    for (const double v : partial) result = sf(result, v);
    return result;
  }
};

}  // namespace tvcli
