// CPU backward of the n-D TV prox (tvcli::prox_tv_nd_backward): the implicit
// differentiation of tvcli/tv_implicit.py, per problem in C++ (one problem per
// thread), so that the backward costs about what the forward does.
//
// At the solution y, pixels whose difference vector is below thr (flat_factor x
// the certified RMS bound + 1e-12 (1 + max|y|)) join their successors into regions
// (iso: all directions of a flat pixel; aniso: each flat direction); on the
// subspace S of images constant on regions the prox is smooth and
//   M u = P_S g,  M = P_S (I + D^T H D) P_S,  H_i = w_i / |v_i| (I - n_i n_i^T)
// (v = D y, n = v / |v|; H = 0 on flat pixels and for aniso), solved by conjugate
// gradients to a relative residual cg_rtol; dL/dx = u, dL/dw_i = -<(D u)_i, n_i>.
// Union-find with path halving labels the regions. All float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "../core/tv_nd_fgp.h"
#include "../tv_nd_ops.h"

namespace tvcli {
namespace {

using core::tvnd::Geometry;

int64_t find_root(std::vector<int64_t>& parent, int64_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}

struct Workspace {
  std::vector<uint8_t> next;     // bit d: pixel has a successor along d
  std::vector<double> mask;      // (nd, n): 1.0 where pixel has a successor along d, else 0
  std::vector<double> proj;      // (n)
  std::vector<double> unit;      // (nd, C, n)
  std::vector<double> coef;      // (n)
  std::vector<int64_t> region;   // (n) compact ids of multi-pixel regions, -1: alone
  std::vector<int64_t> members;  // the pixels of multi-pixel regions (P_S moves only them)
  std::vector<double> count;     // (regions)
  std::vector<double> sums;      // (regions, C)
  std::vector<double> du;        // (nd, C, n)
  std::vector<double> u, r, p, ap, tmp;  // (C, n)
};

// D u: du[(d C + c) n + i] = u[c n + i + s_d] - u[c n + i] (0 past the last slice):
// branch-free loops (times the 0/1 mask), which the compiler vectorises.
void grad_into(const Geometry& g, const Workspace& ws, const double* u, double* du) {
  const int64_t n = g.n, C = g.channels;
  for (int d = 0; d < g.nd; ++d)
    for (int64_t c = 0; c < C; ++c) {
      const double* uc = u + c * n;
      const double* m = ws.mask.data() + d * n;
      double* out = du + (d * C + c) * n;
      const int64_t s = g.stride[d], end = n - s;
      for (int64_t i = 0; i < end; ++i) out[i] = (uc[i + s] - uc[i]) * m[i];
      for (int64_t i = end; i < n; ++i) out[i] = 0.0;
    }
}

// out = P_S(u): the mean over each region, channel by channel (a pixel alone in
// its region keeps its value: only the members of larger regions are averaged).
void region_average(const Geometry& g, Workspace& ws, const double* u, double* out) {
  const int64_t n = g.n, C = g.channels;
  if (out != u) std::copy(u, u + C * n, out);
  if (ws.members.empty()) return;
  std::fill(ws.sums.begin(), ws.sums.end(), 0.0);
  for (int64_t c = 0; c < C; ++c)
    for (const int64_t i : ws.members) ws.sums[ws.region[i] * C + c] += u[c * n + i];
  const int64_t R = static_cast<int64_t>(ws.count.size());
  for (int64_t k = 0; k < R; ++k)
    for (int64_t c = 0; c < C; ++c) ws.sums[k * C + c] /= ws.count[k];
  for (int64_t c = 0; c < C; ++c)
    for (const int64_t i : ws.members) out[c * n + i] = ws.sums[ws.region[i] * C + c];
}

// out = M u = P_S(u + D^T H D u) (iso).
void apply_m(const Geometry& g, Workspace& ws, const double* u, double* out) {
  const int64_t n = g.n, C = g.channels, nd = g.nd;
  grad_into(g, ws, u, ws.du.data());
  // hdu = coef (du - unit <du, unit>), in place in du (0 where coef is 0: flat
  // pixels, and the last slices, where du and unit are 0).
  double* proj = ws.proj.data();
  for (int64_t i = 0; i < n; ++i) proj[i] = 0.0;
  for (int64_t k = 0; k < nd * C; ++k) {
    const double* a = ws.du.data() + k * n;
    const double* e = ws.unit.data() + k * n;
    for (int64_t i = 0; i < n; ++i) proj[i] += a[i] * e[i];
  }
  for (int64_t k = 0; k < nd * C; ++k) {
    double* a = ws.du.data() + k * n;
    const double* e = ws.unit.data() + k * n;
    for (int64_t i = 0; i < n; ++i) a[i] = ws.coef[i] * (a[i] - e[i] * proj[i]);
  }
  // tmp = u + D^T hdu; (D_d^T h)[j] = h[j - e_d] - h[j] (h is 0 on the last slice).
  std::copy(u, u + C * n, ws.tmp.data());
  for (int d = 0; d < nd; ++d)
    for (int64_t c = 0; c < C; ++c) {
      const double* h = ws.du.data() + (d * C + c) * n;
      double* t = ws.tmp.data() + c * n;
      const int64_t s = g.stride[d];
      for (int64_t i = 0; i < n; ++i) t[i] -= h[i];
      for (int64_t i = 0; i + s < n; ++i) t[i + s] += h[i];
    }
  region_average(g, ws, ws.tmp.data(), out);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double acc = 0.0;
  const int64_t m = static_cast<int64_t>(a.size());
  const double* x = a.data();
  const double* y = b.data();
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < m; ++i) acc += x[i] * y[i];
  return acc;
}

void backward_problem(const Geometry& g, bool iso, const double* gy, const double* y,
                      const double* w, bool w_map, double bound, const TvNdBackwardOptions& o,
                      double* gx, double* gw) {
  const int64_t n = g.n, C = g.channels, nd = g.nd, cn = C * n;
  bool finite = true;
  double scale = 0.0;
  for (int64_t k = 0; k < cn; ++k) {
    finite = finite && std::isfinite(y[k]);
    scale = std::max(scale, std::abs(y[k]));
  }
  if (!finite) {
    std::fill(gx, gx + cn, std::numeric_limits<double>::quiet_NaN());
    std::fill(gw, gw + n, std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const double thr =
      o.flat_factor * (std::isnan(bound) ? 0.0 : bound) + 1e-12 * (1.0 + scale);
  Workspace ws;
  ws.next.assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t idx = rest % g.size[d];
      rest /= g.size[d];
      if (idx + 1 < g.size[d]) ws.next[i] |= uint8_t(1u << d);
    }
  }
  ws.mask.assign(size_t(nd * n), 0.0);
  for (int d = 0; d < nd; ++d)
    for (int64_t i = 0; i < n; ++i) ws.mask[d * n + i] = ((ws.next[i] >> d) & 1) ? 1.0 : 0.0;
  ws.proj.assign(size_t(n), 0.0);
  std::vector<double> v(size_t(nd * cn));
  grad_into(g, ws, y, v.data());
  ws.unit.assign(size_t(nd * cn), 0.0);
  ws.coef.assign(size_t(n), 0.0);
  std::vector<int64_t> parent(static_cast<size_t>(n));
  std::iota(parent.begin(), parent.end(), int64_t(0));
  auto join = [&](int64_t a, int64_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  };
  for (int64_t i = 0; i < n; ++i) {
    const double wi = w[w_map ? i : 0];
    if (iso) {
      double n2 = 0.0;
      for (int64_t k = 0; k < nd * C; ++k) n2 += v[k * n + i] * v[k * n + i];
      const double nv = std::sqrt(n2);
      if (nv <= thr) {
        for (int d = 0; d < nd; ++d)
          if ((ws.next[i] >> d) & 1) join(i, i + g.stride[d]);
      } else {
        for (int64_t k = 0; k < nd * C; ++k) ws.unit[k * n + i] = v[k * n + i] / nv;
        ws.coef[i] = wi / nv;
      }
    } else {
      for (int d = 0; d < nd; ++d) {
        const double vd = v[d * n + i];  // aniso: C = 1
        if (std::abs(vd) <= thr) {
          if ((ws.next[i] >> d) & 1) join(i, i + g.stride[d]);
        } else {
          ws.unit[d * n + i] = vd > 0.0 ? 1.0 : -1.0;
        }
      }
    }
  }
  // Compact ids for the regions of two or more pixels; the others stay -1.
  std::vector<int64_t> size_of(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) size_of[find_root(parent, i)] += 1;
  ws.region.assign(size_t(n), -1);
  std::vector<int64_t> id_of(size_t(n), -1);
  int64_t regions = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t root = find_root(parent, i);
    if (size_of[root] < 2) continue;
    if (id_of[root] < 0) id_of[root] = regions++;
    ws.region[i] = id_of[root];
    ws.members.push_back(i);
  }
  ws.count.assign(size_t(regions), 0.0);
  for (const int64_t i : ws.members) ws.count[ws.region[i]] += 1.0;
  ws.sums.assign(size_t(regions * C), 0.0);
  ws.du.assign(size_t(nd * cn), 0.0);
  ws.u.assign(size_t(cn), 0.0);
  ws.tmp.assign(size_t(cn), 0.0);
  std::vector<double> rhs(static_cast<size_t>(cn));
  region_average(g, ws, gy, rhs.data());
  ws.u = rhs;
  if (iso) {
    ws.r.assign(size_t(cn), 0.0);
    ws.ap.assign(size_t(cn), 0.0);
    apply_m(g, ws, ws.u.data(), ws.ap.data());
    for (int64_t k = 0; k < cn; ++k) ws.r[k] = rhs[k] - ws.ap[k];
    ws.p = ws.r;
    double rs = dot(ws.r, ws.r);
    const double stop = o.cg_rtol * o.cg_rtol * dot(rhs, rhs);
    for (int64_t it = 0; it < o.cg_max_iter && rs > stop; ++it) {
      apply_m(g, ws, ws.p.data(), ws.ap.data());
      const double pap = dot(ws.p, ws.ap);
      const double alpha = pap > 0.0 ? rs / pap : 0.0;
      for (int64_t k = 0; k < cn; ++k) {
        ws.u[k] += alpha * ws.p[k];
        ws.r[k] -= alpha * ws.ap[k];
      }
      const double rs_new = dot(ws.r, ws.r);
      const double beta = rs > 0.0 ? rs_new / rs : 0.0;
      for (int64_t k = 0; k < cn; ++k) ws.p[k] = ws.r[k] + beta * ws.p[k];
      rs = rs_new;
      if (alpha == 0.0) break;
    }
  }
  std::copy(ws.u.begin(), ws.u.end(), gx);
  grad_into(g, ws, ws.u.data(), ws.du.data());
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (int64_t k = 0; k < nd * C; ++k) acc += ws.du[k * n + i] * ws.unit[k * n + i];
    gw[i] = -acc;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> prox_tv_nd_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& y, const at::Tensor& w, const at::Tensor& bound,
    int64_t nd, c10::string_view norm, double flat_factor, double cg_rtol, int64_t cg_max_iter) {
  check_tv_nd_args(y, w, nd, norm, 0.0, 1, 1, false);
  TORCH_CHECK(y.scalar_type() == at::kDouble, "tvcli: the n-D backward works in float64");
  TORCH_CHECK(grad_y.sizes() == y.sizes() && grad_y.scalar_type() == at::kDouble &&
                  grad_y.is_contiguous() && grad_y.device() == y.device(),
              "tvcli: grad_y must be a contiguous float64 tensor of y's shape");
  TORCH_CHECK(bound.dim() == 1 && bound.size(0) == y.size(0) &&
                  bound.scalar_type() == at::kDouble && bound.is_contiguous(),
              "tvcli: bound must be a contiguous float64 (B,) tensor");
  TORCH_CHECK(norm == "iso" || y.size(1) == 1, "tvcli: the aniso backward takes one channel");
  TORCH_CHECK(flat_factor >= 0.0 && cg_rtol >= 0.0 && cg_max_iter >= 0,
              "tvcli: flat_factor, cg_rtol and cg_max_iter must be >= 0");
  const int64_t B = y.size(0);
  std::vector<int64_t> wshape = {B, 1};
  for (int64_t d = 0; d < nd; ++d) wshape.push_back(y.size(2 + d));
  at::Tensor gx = at::empty_like(y);
  at::Tensor gw = at::empty(wshape, y.options());
  if (B == 0) return {gx, gw};
  int64_t sizes[core::tvnd::kMaxDims] = {1, 1, 1, 1};
  for (int64_t d = 0; d < nd; ++d) sizes[d] = y.size(2 + d);
  const Geometry g = core::tvnd::make_geometry(int(nd), sizes, int(y.size(1)));
  const bool w_map = w.numel() != B;
  const TvNdBackwardOptions o{flat_factor, cg_rtol, cg_max_iter};
  const double* gyp = grad_y.const_data_ptr<double>();
  const double* yp = y.const_data_ptr<double>();
  const double* wp = w.const_data_ptr<double>();
  const double* bp = bound.const_data_ptr<double>();
  double* gxp = gx.mutable_data_ptr<double>();
  double* gwp = gw.mutable_data_ptr<double>();
  const int64_t cn = g.channels * g.n;
  const bool iso = norm == "iso";
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      backward_problem(g, iso, gyp + b * cn, yp + b * cn, wp + (w_map ? b * g.n : b), w_map,
                       bp[b], o, gxp + b * cn, gwp + b * g.n);
  });
  return {gx, gw};
}

}  // namespace tvcli
