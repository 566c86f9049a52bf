// CPU backend of the 1-D TV prox: one signal per task, torch's thread pool.
//
// at::parallel_for runs on torch's OpenMP pool, so torch.set_num_threads() and
// OMP_NUM_THREADS govern it, and it does not fight a second private pool for
// the cores (DESIGN.md section 8: busy-waiting pools slow shared machines).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <vector>

#include "../core/signal_batch.h"
#include "../core/tv1d_backward.h"
#include "../core/tv1d_direct.h"
#include "../core/tv1d_pn.h"
#include "../signal_batch_torch.h"
#include "../tv1d_ops.h"

namespace tvcli {
namespace {

// Signals per task: enough samples that scheduling costs little.
int64_t grain_for(int64_t length) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(length, 1));
}

}  // namespace

namespace {

// Runs the chosen solver over every signal. iters/status (pn only, may be
// null) are written through operands 3 and 4 of the batch.
template <typename scalar_t>
void prox_loop(const core::SignalBatch& b, Solver solver, const scalar_t* xp,
               scalar_t* yp, const scalar_t* lp, const core::PNOptions& opt,
               int32_t* iters, int8_t* status) {
  const int64_t n = b.length, sx = b.signal_stride[0], sy = b.signal_stride[1];
  at::parallel_for(0, b.count, grain_for(n), [&](int64_t begin, int64_t end) {
    core::SignalCursor c(b, begin);
    const int64_t* off = c.off;
    if (solver == Solver::kDirect) {
      for (int64_t s = begin; s < end; ++s, c.next()) {
        core::tv1d_direct<scalar_t, double>(xp + off[0], n, sx, yp + off[1], sy,
                                            double(lp[off[2]]));
      }
      return;
    }
    // One workspace per task, reused for all its signals (contiguous, stride 1).
    std::vector<double> ws(static_cast<size_t>(core::tv1d_pn_workspace_size(n)));
    for (int64_t s = begin; s < end; ++s, c.next()) {
      const core::PNResult r = core::tv1d_pn<scalar_t, double>(
          xp + off[0], n, sx, yp + off[1], sy, double(lp[off[2]]), ws.data(), 1, opt);
      if (iters != nullptr) iters[off[3]] = r.iterations;
      if (status != nullptr) status[off[4]] = static_cast<int8_t>(r.status);
    }
  });
}

}  // namespace

at::Tensor prox_tv1d_cpu(const at::Tensor& x, const at::Tensor& lam, int64_t dim,
                         c10::string_view solver_name) {
  dim = check_prox_args(x, lam, dim);
  const Solver solver = parse_solver(solver_name);
  at::Tensor y = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return y;
  const core::SignalBatch b = make_signal_batch(x, dim, {x, y, lam});
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv1d_cpu", [&] {
    prox_loop<scalar_t>(b, solver, x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                        lam.const_data_ptr<scalar_t>(), core::PNOptions(), nullptr, nullptr);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> prox_tv1d_pn_stats_cpu(const at::Tensor& x,
                                                                      const at::Tensor& lam,
                                                                      int64_t dim,
                                                                      int64_t max_iter) {
  dim = check_prox_args(x, lam, dim);
  const core::PNOptions opt = pn_stats_options(max_iter);
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::Tensor iters = at::empty(lam.sizes(), x.options().dtype(at::kInt));
  at::Tensor status = at::empty(lam.sizes(), x.options().dtype(at::kChar));
  if (x.numel() == 0) return {y, iters.zero_(), status.zero_()};
  const core::SignalBatch b = make_signal_batch(x, dim, {x, y, lam, iters, status});
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv1d_pn_stats_cpu", [&] {
    prox_loop<scalar_t>(b, Solver::kPN, x.const_data_ptr<scalar_t>(),
                        y.mutable_data_ptr<scalar_t>(), lam.const_data_ptr<scalar_t>(), opt,
                        iters.mutable_data_ptr<int32_t>(), status.mutable_data_ptr<int8_t>());
  });
  return {y, iters, status};
}

std::tuple<at::Tensor, at::Tensor> prox_tv1d_backward_cpu(const at::Tensor& grad_y,
                                                          const at::Tensor& y,
                                                          const at::Tensor& lam,
                                                          int64_t dim) {
  dim = check_prox_backward_args(grad_y, y, lam, dim);
  at::Tensor grad_x = at::empty(y.sizes(), y.options());
  at::Tensor grad_lam = at::empty(lam.sizes(), lam.options());
  if (y.numel() == 0) return {grad_x, grad_lam.zero_()};
  const core::SignalBatch b =
      make_signal_batch(y, dim, {y, grad_y, grad_x, grad_lam, lam});
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "prox_tv1d_backward_cpu", [&] {
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad_y.const_data_ptr<scalar_t>();
    const scalar_t* lp = lam.const_data_ptr<scalar_t>();
    scalar_t* gxp = grad_x.mutable_data_ptr<scalar_t>();
    scalar_t* glp = grad_lam.mutable_data_ptr<scalar_t>();
    const int64_t n = b.length;
    const int64_t sy = b.signal_stride[0], sg = b.signal_stride[1], sgx = b.signal_stride[2];
    // Row signals (every operand read with stride 1, the usual case) get their
    // own instance of the loop, with the strides known to be 1.
    const bool unit = sy == 1 && sg == 1 && sgx == 1;
    at::parallel_for(0, b.count, grain_for(n), [&](int64_t begin, int64_t end) {
      core::SignalCursor c(b, begin);
      const int64_t* off = c.off;
      if (unit) {
        for (int64_t s = begin; s < end; ++s, c.next())
          glp[off[3]] = scalar_t(core::tv1d_backward<scalar_t, double>(
              yp + off[0], 1, gp + off[1], 1, gxp + off[2], 1, n, double(lp[off[4]])));
        return;
      }
      for (int64_t s = begin; s < end; ++s, c.next())
        glp[off[3]] = scalar_t(core::tv1d_backward<scalar_t, double>(
            yp + off[0], sy, gp + off[1], sg, gxp + off[2], sgx, n, double(lp[off[4]])));
    });
  });
  return {grad_x, grad_lam};
}

}  // namespace tvcli
