// CPU backend of the 2-D anisotropic TV prox (converged mode) and its backward.
//
// Converged mode runs FISTA on the dual of prox_{f+g}(x), f = lam * TV over rows,
// g = lam * TV over columns (Chambolle & Pock 2015, "A remark on accelerated block
// coordinate descent for computing the proximity operators of a sum of convex
// functions"). With the column dual v, the row dual is eliminated exactly by a row
// prox, so h(v) = min_u 1/2 ||x - u - v||^2 + f*(u) has a 1-Lipschitz gradient
// -prox_f(x - v), and one iteration is
//   z = w + prox_rows(x - w)        (row pass)
//   v+ = z - prox_cols(z)           (column pass)
//   w = v+ + beta_k (v+ - v)        (Nesterov extrapolation)
// Without extrapolation (beta = 0) this is exactly proximal Dykstra (paper Alg. 1).
// The primal iterate y = prox_cols(z) = x - u - v+ pairs with the feasible duals
// u = x - z, v+, so   gap = P(y) - D(u, v+) = lam TV(y) + <y, y - x> >= 0,
// and gap >= ||y - y*||^2 (1-strong convexity of P bounds half of it, the dual's
// suboptimality the other half: core::certified_rms). We stop an image when
// sqrt(gap / (H W)) (a bound on its RMS error) is <= tol.
//
// All arithmetic is float64 whatever x's dtype: the dual variables accumulate
// over hundreds of iterations and the gap is a small difference of large sums.
// The state (v, w, z) is stored in float64, except for float32 images at a tol
// of at least 3e-4 of the data's scale (kFloatStateMinTol; the CLI's default
// 1e-3 on [0, 1] images), where it is stored in float32 (issue 27: a 12000x9000
// channel's state is then 1.3 GB, not 2.6 GB); the gap is still summed in
// float64 from the stored values (z - v is exact in float64).
// Rows and columns are gathered into a per-thread contiguous line, solved with the
// DP solver (csrc/core/tv1d_dp.h), and the elementwise updates are fused into the
// scatter, so an iteration is two sweeps over the image and no temporaries.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/tv1d_dp.h"
#include "../core/tv2d_dykstra.h"
#include "../core/tv2d_regions.h"
#include "../tv2d_ops.h"
#include "tv2d_paper_simd.h"

namespace tvcli {
namespace {

int64_t grain_for_lines(int64_t length) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(length, 1));
}

// Per-task scratch: the gathered line, its prox and the DP workspace.
struct Line {
  std::vector<double> in, out, ws;
  explicit Line(int64_t n) : in(n), out(n), ws(core::tv1d_dp_workspace(n)) {}
};

constexpr int64_t kColBlock = 16;

// TVCLI_2D_LINE=dp|condat overrides the inner 1-D solver (for measurements).
core::LineSolver line_solver(core::LineSolver dflt) {
  static const char* env = std::getenv("TVCLI_2D_LINE");
  if (env == nullptr) return dflt;
  return std::string(env) == "dp" ? core::LineSolver::kDP : core::LineSolver::kCondat;
}

// Scratch for kColBlock columns of length n (column-major) and one DP workspace.
struct Tile {
  std::vector<double> in, out, ws;
  explicit Tile(int64_t n)
      : in(kColBlock * n), out(kColBlock * n), ws(core::tv1d_dp_workspace(n)) {}
};

}  // namespace

namespace {

// The converged solve on raw buffers. T: the input's (and output's) type; S: the
// type the state v, w, z is stored in. Every computation is in double (lines are
// gathered into double buffers, the 1-D prox runs in double, the gap sums in
// double); S only sets how the three image-sized state arrays are stored.
// x is read in place (no converted copy) and y = z - v is written into z, which
// is returned: with S = T = float the solver's memory is three float images.
template <typename T, typename S>
void solve_images(const T* xp, const double* lp, int64_t B, int64_t H, int64_t W, double tol,
                  int64_t max_iter, int64_t check_every, S* vp, S* wp, S* zp, double* ip) {
  const int64_t HW = H * W;
  // Images with lam == 0 (or a single pixel) are the identity: y = x, exactly.
  std::vector<char> active(B);
  int64_t n_active = 0;
  for (int64_t b = 0; b < B; ++b) {
    active[b] = lp[b] > 0.0 && HW > 1;
    n_active += active[b];
    if (!active[b]) ip[b * 3 + 2] = 1.0;
  }
  std::vector<double> row_gap(B * H);
  const core::LineSolver ls = line_solver(core::LineSolver::kDP);
  double t = 1.0;
  for (int64_t it = 1; it <= max_iter && n_active > 0; ++it) {
    // Row pass: z = w + prox_rows(x - w).
    at::parallel_for(0, B * H, grain_for_lines(W), [&](int64_t begin, int64_t end) {
      Line ln(W);
      for (int64_t s = begin; s < end; ++s) {
        const int64_t b = s / H;
        if (!active[b]) continue;
        const int64_t o = s * W;
        for (int64_t j = 0; j < W; ++j)
          ln.in[j] = double(xp[o + j]) - double(wp[o + j]);
        core::tv1d_line<double>(ln.in.data(), W, lp[b], ln.out.data(), ln.ws.data(), ls);
        for (int64_t j = 0; j < W; ++j) zp[o + j] = S(double(wp[o + j]) + ln.out[j]);
      }
    });
    const double tn = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
    const double beta = (t - 1.0) / tn;
    t = tn;
    // Column pass: v+ = z - prox_cols(z); w = v+ + beta (v+ - v); v = v+.
    // Columns are handled kColBlock at a time: the block is gathered row by row
    // (contiguous reads) into a column-major tile, so a column's H samples do not
    // each cost a cache line and a TLB entry (stride W) -- measured 2x faster.
    const int64_t nblk = (W + kColBlock - 1) / kColBlock;
    at::parallel_for(0, B * nblk, std::max<int64_t>(1, grain_for_lines(H) / kColBlock),
                     [&](int64_t begin, int64_t end) {
      Tile tile(H);
      for (int64_t s = begin; s < end; ++s) {
        const int64_t b = s / nblk;
        if (!active[b]) continue;
        const int64_t j0 = (s % nblk) * kColBlock;
        const int64_t nc = std::min<int64_t>(kColBlock, W - j0);
        const int64_t o = b * HW + j0;
        for (int64_t i = 0; i < H; ++i)
          for (int64_t c = 0; c < nc; ++c) tile.in[c * H + i] = double(zp[o + i * W + c]);
        for (int64_t c = 0; c < nc; ++c)
          core::tv1d_line<double>(tile.in.data() + c * H, H, lp[b],
                                  tile.out.data() + c * H, tile.ws.data(), ls);
        for (int64_t i = 0; i < H; ++i) {
          for (int64_t c = 0; c < nc; ++c) {
            const int64_t k = o + i * W + c;
            const double vn = double(zp[k]) - tile.out[c * H + i];
            wp[k] = S(vn + beta * (vn - double(vp[k])));
            vp[k] = S(vn);
          }
        }
      }
    });
    for (int64_t b = 0; b < B; ++b)
      if (active[b]) ip[b * 3] = double(it);
    if (it % check_every != 0 && it != max_iter) continue;
    // Duality gap per image, y = z - v: lam TV(y) + <y, y - x>, summed per row first.
    // (z - v of two stored values is exact in double, for S = float too.)
    at::parallel_for(0, B * H, grain_for_lines(W), [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        const int64_t b = s / H, r = s % H;
        if (!active[b]) continue;
        const int64_t o = s * W;
        double tv = 0.0, inner = 0.0;
        for (int64_t j = 0; j < W; ++j) {
          const double y = double(zp[o + j]) - double(vp[o + j]);
          inner += y * (y - double(xp[o + j]));
          if (j + 1 < W) tv += std::abs(double(zp[o + j + 1]) - double(vp[o + j + 1]) - y);
          if (r + 1 < H) tv += std::abs(double(zp[o + j + W]) - double(vp[o + j + W]) - y);
        }
        row_gap[s] = lp[b] * tv + inner;
      }
    });
    for (int64_t b = 0; b < B; ++b) {
      if (!active[b]) continue;
      double gap = 0.0;
      for (int64_t r = 0; r < H; ++r) gap += row_gap[b * H + r];
      const double bound = core::certified_rms(gap, HW);
      ip[b * 3 + 1] = bound;
      if (bound <= tol) {
        active[b] = 0;
        --n_active;
        ip[b * 3 + 2] = 1.0;
      }
    }
  }
}

// y = z - v (rounded to T) for solved images, y = x for identity ones; yp may be zp.
template <typename T, typename S>
void write_result(const T* xp, const double* lp, int64_t B, int64_t HW, const S* zp,
                  const S* vp, T* yp) {
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * HW;
      const bool identity = !(lp[b] > 0.0) || HW <= 1;
      for (int64_t k = 0; k < HW; ++k)
        yp[o + k] = identity ? xp[o + k] : T(double(zp[o + k]) - double(vp[o + k]));
    }
  });
}

// float32 images are solved with float32 state when tol is at least this times
// the state's scale, max(max |x|, 2 max lam) (|v|, |x - z| <= 2 lam): a 12000x9000
// channel then needs 1.3 GB of state instead of 2.6 GB (issue 27). Measured on
// [0, 1] photos: float32 state converged in the same iterations as float64 at
// tol 1e-4 and 1e-3, but at 1e-5 its rounding kept the certified bound above tol
// in some images until max_iter. 3e-4 keeps a margin, and leaves the library's
// default tol (1e-4) on float64 state: bit for bit the results it gave before.
constexpr double kFloatStateMinTol = 3e-4;

// Whether float32 state is accurate enough for this solve (see kFloatStateMinTol).
bool float_state_ok(const at::Tensor& x, const double* lp, int64_t B, double tol) {
  if (x.scalar_type() != at::kFloat) return false;
  const float* xp = x.const_data_ptr<float>();  // max |x| without a temporary copy
  double scale = at::parallel_reduce(
      0, x.numel(), 1 << 16, 0.0,
      [&](int64_t begin, int64_t end, double acc) {
        for (int64_t k = begin; k < end; ++k) acc = std::max(acc, double(std::abs(xp[k])));
        return acc;
      },
      [](double a, double b) { return std::max(a, b); });
  for (int64_t b = 0; b < B; ++b)
    if (std::isfinite(lp[b])) scale = std::max(scale, 2.0 * lp[b]);
  return tol >= kFloatStateMinTol * scale;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> prox_tv2d_solve_cpu(const at::Tensor& x_in,
                                                       const at::Tensor& lam_in, double tol,
                                                       int64_t max_iter, int64_t check_every,
                                                       double /*region_tol: backward only*/) {
  check_images(x_in, lam_in);
  TORCH_CHECK(max_iter >= 1 && check_every >= 1, "tvcli: max_iter, check_every must be >= 1");
  const int64_t B = x_in.size(0), H = x_in.size(1), W = x_in.size(2), HW = H * W;
  at::Tensor info = at::zeros({B, 3}, x_in.options().dtype(at::kDouble));
  if (x_in.numel() == 0) return {x_in.clone(), info};
  const at::Tensor x = x_in.contiguous();  // read in place, never copied to float64
  const at::Tensor lamd = lam_in.to(at::kDouble).contiguous();
  const double* lp = lamd.const_data_ptr<double>();
  double* ip = info.mutable_data_ptr<double>();
  if (float_state_ok(x, lp, B, tol)) {
    const float* xp = x.const_data_ptr<float>();
    at::Tensor v = at::zeros_like(x), w = at::zeros_like(x), z = at::empty_like(x);
    float* zp = z.mutable_data_ptr<float>();
    solve_images<float, float>(xp, lp, B, H, W, tol, max_iter, check_every,
                               v.mutable_data_ptr<float>(), w.mutable_data_ptr<float>(), zp,
                               ip);
    w = at::Tensor();  // freed before y is formed
    write_result<float, float>(xp, lp, B, HW, zp, v.const_data_ptr<float>(), zp);
    return {z, info};  // y = z - v, written over z
  }
  const at::TensorOptions dopt = x.options().dtype(at::kDouble);
  at::Tensor v = at::zeros(x.sizes(), dopt), w = at::zeros(x.sizes(), dopt);
  at::Tensor z = at::empty(x.sizes(), dopt);
  double* vp = v.mutable_data_ptr<double>();
  double* zp = z.mutable_data_ptr<double>();
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv2d_solve_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    solve_images<scalar_t, double>(xp, lp, B, H, W, tol, max_iter, check_every, vp,
                                   w.mutable_data_ptr<double>(), zp, ip);
    w = at::Tensor();
    // float64: y over z; float32: y rounded from the float64 z - v, as before
    y = std::is_same_v<scalar_t, double> ? z : at::empty_like(x);
    write_result<scalar_t, double>(xp, lp, B, HW, zp, vp, y.mutable_data_ptr<scalar_t>());
  });
  return {y, info};
}

std::tuple<at::Tensor, at::Tensor> prox_tv2d_region_backward_cpu(const at::Tensor& grad_y,
                                                                 const at::Tensor& y,
                                                                 const at::Tensor& lam,
                                                                 double region_tol) {
  check_images(y, lam);
  check_grad_like(grad_y, y);
  const at::Tensor g = grad_y.contiguous();
  const int64_t B = y.size(0), H = y.size(1), W = y.size(2), HW = H * W;
  at::Tensor gx = at::empty_like(y);
  at::Tensor glam = at::empty({B}, lam.options());
  if (B == 0) return {gx, glam};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "prox_tv2d_region_backward_cpu", [&] {
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* lp = lam.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    scalar_t* glp = glam.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<int32_t> parent(HW);
      std::vector<double> sum(HW), count(HW), bsign(HW);
      for (int64_t b = begin; b < end; ++b) {
        const bool identity = !(double(lp[b]) > 0.0);
        glp[b] = scalar_t(core::tv2d_region_backward<scalar_t>(
            yp + b * HW, gp + b * HW, gxp + b * HW, H, W, identity ? 0.0 : region_tol,
            identity, parent.data(), sum.data(), count.data(), bsign.data()));
      }
    });
  });
  return {gx, glam};
}

}  // namespace tvcli

namespace tvcli {
namespace {

// Paper mode over all lines of all images per pass (see prox_tv2d_dykstra_cpu).
// State in float64 tensors; rows solved in place of a gathered line, columns in
// kColBlock-wide tiles as in the converged solver. Same results as the per-image
// core::tv2d_dykstra_forward (same operations in the same order per element).
template <typename T>
void dykstra_lines(const T* xp, const T* lp, T* yp, int8_t* sp, int64_t B, int64_t H,
                   int64_t W, int64_t iters, core::LineSolver ls, bool sharp) {
  const int64_t HW = H * W, planes = 2 * iters;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor Yt = at::empty({B * HW}, opts), Pt = at::zeros({B * HW}, opts);
  at::Tensor Qt = at::zeros({B * HW}, opts), Zt = at::empty({B * HW}, opts);
  double* Y = Yt.mutable_data_ptr<double>();
  double* P = Pt.mutable_data_ptr<double>();
  double* Q = Qt.mutable_data_ptr<double>();
  double* Z = Zt.mutable_data_ptr<double>();
  std::vector<char> bad(B, 0);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      bool finite = true;
      for (int64_t k = b * HW; k < (b + 1) * HW; ++k) {
        Y[k] = double(xp[k]);
        finite = finite && core::is_finite(Y[k]);
      }
      if (finite) continue;
      bad[b] = 1;  // as core::tv2d_dykstra_forward: identity at lam 0, else NaN
      const T nan = T(core::quiet_nan<double>());
      for (int64_t k = b * HW; k < (b + 1) * HW; ++k) {
        const T p = lp[b] == T(0) ? xp[k] : nan;
        yp[k] = sharp ? core::sharpen_store(xp[k], p) : p;
      }
      std::fill(sp + b * planes * HW, sp + (b + 1) * planes * HW, int8_t(0));
      sp[b * planes * HW] = core::kBadImage;
    }
  });
  const int64_t nblk = (W + kColBlock - 1) / kColBlock;
  for (int64_t it = 0; it < iters; ++it) {
    at::parallel_for(0, B * H, grain_for_lines(W), [&](int64_t begin, int64_t end) {
      Line ln(W);
      for (int64_t s = begin; s < end; ++s) {
        const int64_t b = s / H, i = s % H;
        if (bad[b]) continue;
        const int64_t o = s * W;
        int8_t* sr = sp + (b * planes + 2 * it) * HW + i * W;
        for (int64_t j = 0; j < W; ++j) ln.in[j] = Y[o + j] + P[o + j];
        core::tv1d_line<double>(ln.in.data(), W, double(lp[b]), ln.out.data(), ln.ws.data(),
                                ls);
        for (int64_t j = 0; j < W; ++j) {
          P[o + j] = ln.in[j] - ln.out[j];
          Z[o + j] = ln.out[j];
          sr[j] = j + 1 < W ? core::jump_sign(ln.out[j], ln.out[j + 1]) : int8_t(0);
        }
      }
    });
    at::parallel_for(0, B * nblk, std::max<int64_t>(1, grain_for_lines(H) / kColBlock),
                     [&](int64_t begin, int64_t end) {
      Tile tile(H);
      for (int64_t s = begin; s < end; ++s) {
        const int64_t b = s / nblk;
        if (bad[b]) continue;
        const int64_t j0 = (s % nblk) * kColBlock;
        const int64_t nc = std::min<int64_t>(kColBlock, W - j0);
        const int64_t o = b * HW + j0;
        int8_t* sc = sp + (b * planes + 2 * it + 1) * HW + j0;
        for (int64_t i = 0; i < H; ++i)
          for (int64_t c = 0; c < nc; ++c) tile.in[c * H + i] = Z[o + i * W + c] + Q[o + i * W + c];
        for (int64_t c = 0; c < nc; ++c)
          core::tv1d_line<double>(tile.in.data() + c * H, H, double(lp[b]),
                                  tile.out.data() + c * H, tile.ws.data(), ls);
        for (int64_t i = 0; i < H; ++i) {
          for (int64_t c = 0; c < nc; ++c) {
            const int64_t k = o + i * W + c;
            const double out = tile.out[c * H + i];
            Q[k] = tile.in[c * H + i] - out;
            Y[k] = out;
            sc[i * W + c] = i + 1 < H ? core::jump_sign(out, tile.out[c * H + i + 1])
                                      : int8_t(0);
          }
        }
      }
    });
  }
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      if (bad[b]) continue;
      if (sharp) {
        for (int64_t k = b * HW; k < (b + 1) * HW; ++k) {
          yp[k] = core::sharpen_store(xp[k], T(Y[k]));
        }
      } else {
        for (int64_t k = b * HW; k < (b + 1) * HW; ++k) yp[k] = T(Y[k]);
      }
    }
  });
}

// Asks for [p, p + n) to be brought into cache (no-op where unsupported).
void prefetch(const void* p, int64_t n) {
#if defined(__GNUC__) || defined(__clang__)
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < n; o += 64) __builtin_prefetch(c + o);
#else
  (void)p;
  (void)n;
#endif
}

// Paper mode's large outputs (a layer's jump signs: 2 K bytes per sample, 50 MB for
// (64, 96, 32, 32) at K = 4; y; the backward's dL/dx) come from big_alloc: freshly
// mapped memory costs a page fault per 4 KB and the kernel's zeroing on first touch
// (a 50 MB buffer: 113-172 ms to allocate and fill on this machine, one thread,
// loaded). So buffers are (1) in 2 MB pages where the kernel gives them on request
// (Linux transparent huge pages in "madvise" mode: 31-88 ms; 24574 -> 60 page faults
// per forward+backward on (6144, 32, 32)), and (2) kept when freed, up to
// TVCLI_PAPER_CACHE_MB (default 256; 0: none) in all, for the next request of the
// same size: a training loop asks for the same sizes every step, and the kernel's page
// zeroing was still ~20% of the op's profile with (1) alone (measured: ~340 against
// ~370 ms per forward+backward of (6144, 32, 32), one thread, loaded; the cost: up
// to that much memory stays with the process). Elsewhere, or below 16 MB: at::empty.
#if defined(__linux__)
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kBigMin = 8 * kHugePage;

size_t big_cache_limit() {
  static const size_t limit = [] {
    const char* env = std::getenv("TVCLI_PAPER_CACHE_MB");
    return size_t(env == nullptr ? 256 : std::max(0L, std::atol(env))) << 20;
  }();
  return limit;
}

struct BigCache {
  std::mutex mu;
  std::vector<std::pair<size_t, void*>> buffers;  // (bytes, buffer), free
  size_t bytes = 0;
};

BigCache& big_cache() {
  static BigCache* cache = new BigCache();  // never destroyed: deleters may run at exit
  return *cache;
}

void big_free(void* p, size_t bytes) {
  BigCache& c = big_cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.bytes + bytes <= big_cache_limit()) {
      c.buffers.emplace_back(bytes, p);
      c.bytes += bytes;
      return;
    }
  }
  free(p);
}

void* big_alloc(size_t bytes) {
  BigCache& c = big_cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (size_t i = 0; i < c.buffers.size(); ++i) {
      if (c.buffers[i].first != bytes) continue;
      void* p = c.buffers[i].second;
      c.buffers.erase(c.buffers.begin() + int64_t(i));
      c.bytes -= bytes;
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, bytes) != 0) return nullptr;
#if defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);  // advice only: a no-op where THP is off
#endif
  return p;
}
#endif

at::Tensor empty_big(at::IntArrayRef sizes, const at::TensorOptions& opts) {
#if defined(__linux__)
  int64_t n = 1;
  for (const int64_t s : sizes) n *= s;
  const size_t bytes = size_t(n) * opts.dtype().itemsize();
  if (opts.device().is_cpu() && bytes >= kBigMin) {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    if (void* p = big_alloc(rounded)) {
      return at::from_blob(p, sizes, [rounded](void* q) { big_free(q, rounded); }, opts);
    }
  }
#endif
  return at::empty(sizes, opts);
}

}  // namespace

// Paper mode: K Dykstra iterations per image, one image per task (a layer's
// N * C images keep both cores busy; each image's state stays in cache). sharp:
// the output is 2 x - prox(x) (core::sharpen_store), written in the final pass.
std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_cpu(const at::Tensor& x,
                                                         const at::Tensor& lam,
                                                         int64_t iters, bool sharp) {
  check_images(x, lam);
  TORCH_CHECK(iters >= 1, "tvcli: iters must be >= 1");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), HW = H * W;
  at::Tensor y = empty_big(x.sizes(), x.options());
  at::Tensor sgn = empty_big({B, 2 * iters, H, W}, x.options().dtype(at::kChar));
  if (x.numel() == 0) return {y, sgn};
  const core::LineSolver ls = line_solver(core::LineSolver::kCondat);
  // Few or large images (a photo rather than a layer's channels): one image per
  // task would leave cores idle and walk columns with a stride of W, so run the
  // passes line-parallel over all images instead (same arithmetic, same signs).
  const bool per_image = B >= 2 * at::get_num_threads() && HW <= 65536;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "prox_tv2d_dykstra_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* lp = lam.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    int8_t* sp = sgn.mutable_data_ptr<int8_t>();
    if (!per_image) {
      // Photo-like inputs. Condat's sweep, as for layer channels: over K = 4
      // iterations it beat the DP at every lam we tried (camera 512x512, lam 0.01:
      // 47 vs 65 ms; lam 0.1: 54 vs 56 ms; astronaut RGB, lam 0.003-0.3: 1.1-1.8x);
      // the DP only pays on the much smoother iterates of the converged mode.
      dykstra_lines<scalar_t>(xp, lp, yp, sp, B, H, W, iters, ls, sharp);
      return;
    }
    // Condat's sweep in AVX-512 lanes where the CPU has them (same bits:
    // tv2d_paper_simd.h); TVCLI_PAPER_SIMD=0 keeps the scalar sweep.
    const bool simd = ls == core::LineSolver::kCondat && cpu::paper_simd_enabled();
    at::parallel_for(0, B, std::max<int64_t>(1, 4096 / std::max<int64_t>(HW, 1)),
                     [&](int64_t begin, int64_t end) {
      if (simd) {
        std::vector<double> ws(cpu::paper_simd_workspace(H, W));
        for (int64_t b = begin; b < end; ++b) {
          cpu::tv2d_dykstra_forward_simd<scalar_t>(xp + b * HW, yp + b * HW,
                                                   sp + b * 2 * iters * HW, H, W, iters,
                                                   double(lp[b]), ws.data(), sharp);
        }
        return;
      }
      std::vector<double> ws(core::tv2d_dykstra_workspace(H, W));
      for (int64_t b = begin; b < end; ++b) {
        core::tv2d_dykstra_forward<scalar_t, double>(xp + b * HW, yp + b * HW,
                                                     sp + b * 2 * iters * HW, H, W, iters,
                                                     double(lp[b]), ws.data(), ls, sharp);
      }
    });
  });
  return {y, sgn};
}

// sharp: the backward of the sharpened output 2 x - prox(x): the prox's backward
// runs on -g (a negated copy of the image's g, in cache), then dL/dx = 2 g + that
// (core::sharpen_grad) and dL/dlam is the prox's for -g: the bits autograd gives
// through `2 * x - y`.
std::tuple<at::Tensor, at::Tensor> prox_tv2d_dykstra_backward_cpu(const at::Tensor& grad_y,
                                                                  const at::Tensor& sgn,
                                                                  const at::Tensor& lam,
                                                                  bool sharp) {
  const at::Tensor g = grad_y.contiguous();
  check_images(g, lam);
  check_signs(sgn, g);
  const int64_t B = g.size(0), H = g.size(1), W = g.size(2), HW = H * W;
  const int64_t iters = sgn.size(1) / 2;
  at::Tensor gx = empty_big(g.sizes(), g.options());
  at::Tensor glam = at::empty({B}, lam.options());
  if (g.numel() == 0) return {gx, glam.zero_()};
  // 8 lines per AVX-512 register where the CPU has them (same bits:
  // tv2d_paper_simd.h); TVCLI_PAPER_SIMD=0 keeps the 2-wide strips.
  const bool simd = cpu::paper_simd_enabled();
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "prox_tv2d_dykstra_backward_cpu", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* lp = lam.const_data_ptr<scalar_t>();
    const int8_t* sp = sgn.const_data_ptr<int8_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    scalar_t* glp = glam.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, std::max<int64_t>(1, 4096 / std::max<int64_t>(HW, 1)),
                     [&](int64_t begin, int64_t end) {
      std::vector<double> ws(core::tv2d_dykstra_workspace(H, W));
      std::vector<scalar_t> neg(sharp ? HW : 0);
      const int64_t sign_bytes = 2 * iters * HW;
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* gb = gp + b * HW;
        const scalar_t* gin = gb;
        if (sharp) {
          for (int64_t k = 0; k < HW; ++k) neg[k] = -gb[k];
          gin = neg.data();
        }
        // The next image's signs (8 KB for 32 x 32, K = 4) load while this one is
        // computed: the backward reads the planes last to first, which the hardware
        // prefetchers do not anticipate (~15% of the time on a layer's 32 x 32 maps).
        if (b + 1 < end && sign_bytes <= 65536) prefetch(sp + (b + 1) * sign_bytes, sign_bytes);
        glp[b] = scalar_t(
            simd ? cpu::tv2d_dykstra_backward_simd<scalar_t>(sp + b * sign_bytes, gin,
                                                             gxp + b * HW, H, W, iters,
                                                             !(double(lp[b]) > 0.0), ws.data())
                 : core::tv2d_dykstra_backward<scalar_t, double>(
                       sp + b * sign_bytes, gin, gxp + b * HW, H, W, iters,
                       !(double(lp[b]) > 0.0), ws.data()));
        if (sharp) {
          scalar_t* gxb = gxp + b * HW;
          for (int64_t k = 0; k < HW; ++k) gxb[k] = core::sharpen_grad(gb[k], gxb[k]);
        }
      }
    });
  });
  return {gx, glam};
}

}  // namespace tvcli
