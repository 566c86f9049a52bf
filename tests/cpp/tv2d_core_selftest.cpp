// Torch-free self-test of the 2-D core headers (tv1d_dp.h, tv2d_dykstra.h,
// tv2d_regions.h), built by tests/test_tv2d_core_cpp.py with AddressSanitizer and
// UBSan. Every buffer has exactly the size the headers document, so any read or
// write past it aborts. Checks: the DP solver's KKT conditions and agreement with
// Condat's (tv1d_direct.h) on random signals and on rows / columns of 2-D Dykstra
// iterates; the Dykstra backward against finite differences; the region backward
// on exact piecewise-constant images.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kkt.h"
#include "core/tv1d_direct.h"
#include "core/tv1d_dp.h"
#include "core/tv2d_dykstra.h"
#include "core/tv2d_regions.h"

using namespace tvcli::core;

namespace {

int failures = 0;

void check(bool ok, const char* what, double value) {
  if (!ok) {
    ++failures;
    std::printf("FAIL %s (%g)\n", what, value);
  }
}

void check_line(const std::vector<double>& x, double lam) {
  const int64_t n = int64_t(x.size());
  std::vector<double> y(n), yc(n), ws(tv1d_dp_workspace(n));
  tv1d_dp_solve<double>(x.data(), n, lam, y.data(), ws.data());
  tv1d_direct<double, double>(x.data(), n, 1, yc.data(), 1, lam);
  double diff = 0, scale = lam;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(y[i] - yc[i]));
    scale = std::max(scale, std::fabs(x[i]));
  }
  check(tvcli_test::kkt_violation(x, y, lam) <= 1e-12, "dp kkt", tvcli_test::kkt_violation(x, y, lam));
  check(diff <= 1e-9 * scale, "dp vs condat", diff);
}

std::vector<double> signal(std::mt19937& g, int kind, int64_t n) {
  std::normal_distribution<double> nd;
  std::vector<double> x(n);
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = nd(g);
    switch (kind) {
      case 0: x[i] = e; break;
      case 1: acc += e; x[i] = acc; break;
      case 2: x[i] = (i < n / 2 ? 0.0 : 1.0) + 0.1 * e; break;
      case 3: x[i] = 0.5; break;
      default: x[i] = std::floor(4 * std::sin(0.05 * double(i))) + 1e-9 * e; break;
    }
  }
  return x;
}

void test_dp_random() {
  std::mt19937 g(1);
  for (int64_t n : {2, 3, 4, 7, 16, 33, 100, 513}) {
    for (int kind = 0; kind < 5; ++kind) {
      for (double lam : {1e-12, 1e-3, 0.05, 0.5, 3.0, 1e3}) check_line(signal(g, kind, n), lam);
    }
  }
}

// Rows and columns of 2-D Dykstra iterates (inputs A = Y + P, B = Z + Q).
void test_dp_on_dykstra_iterates() {
  std::mt19937 g(2);
  std::uniform_real_distribution<double> ud;
  const int64_t h = 40, w = 57;
  for (double lam : {0.01, 0.1, 0.7}) {
    std::vector<double> Y(h * w), P(h * w, 0.0), Q(h * w, 0.0), Z(h * w);
    for (auto& v : Y) v = ud(g) < 0.3 ? ud(g) : 0.5;
    for (int it = 0; it < 6; ++it) {
      for (int64_t i = 0; i < h; ++i) {
        std::vector<double> a(w), out(w), ws(tv1d_dp_workspace(w));
        for (int64_t j = 0; j < w; ++j) a[j] = Y[i * w + j] + P[i * w + j];
        check_line(a, lam);
        tv1d_dp_solve<double>(a.data(), w, lam, out.data(), ws.data());
        for (int64_t j = 0; j < w; ++j) {
          P[i * w + j] = a[j] - out[j];
          Z[i * w + j] = out[j];
        }
      }
      for (int64_t j = 0; j < w; ++j) {
        std::vector<double> b(h), out(h), ws(tv1d_dp_workspace(h));
        for (int64_t i = 0; i < h; ++i) b[i] = Z[i * w + j] + Q[i * w + j];
        check_line(b, lam);
        tv1d_dp_solve<double>(b.data(), h, lam, out.data(), ws.data());
        for (int64_t i = 0; i < h; ++i) {
          Q[i * w + j] = b[i] - out[i];
          Y[i * w + j] = out[i];
        }
      }
    }
  }
}

double dykstra_dot(const std::vector<double>& x, const std::vector<double>& gdir, int64_t h,
                   int64_t w, int64_t k, double lam, LineSolver ls) {
  std::vector<double> y(h * w), ws(tv2d_dykstra_workspace(h, w));
  std::vector<int8_t> sgn(2 * k * h * w);
  tv2d_dykstra_forward<double, double>(x.data(), y.data(), sgn.data(), h, w, k, lam,
                                       ws.data(), ls);
  double s = 0;
  for (int64_t i = 0; i < h * w; ++i) s += y[i] * gdir[i];
  return s;
}

void test_dykstra_backward_fd() {
  std::mt19937 rng(3);
  std::normal_distribution<double> nd;
  for (LineSolver ls : {LineSolver::kCondat, LineSolver::kDP}) {
    for (auto [h, w] : {std::pair<int64_t, int64_t>{1, 9}, {7, 1}, {6, 8}, {13, 5}}) {
      const int64_t k = 3, n = h * w;
      const double lam = 0.08;
      std::vector<double> x(n), g(n), d(n), gx(n), y(n), ws(tv2d_dykstra_workspace(h, w));
      std::vector<int8_t> sgn(2 * k * n);
      for (int64_t i = 0; i < n; ++i) {
        x[i] = nd(rng);
        g[i] = nd(rng);
        d[i] = nd(rng);
      }
      tv2d_dykstra_forward<double, double>(x.data(), y.data(), sgn.data(), h, w, k, lam,
                                           ws.data(), ls);
      const double glam = tv2d_dykstra_backward<double, double>(sgn.data(), g.data(),
                                                                gx.data(), h, w, k, false,
                                                                ws.data());
      const double eps = 1e-7;
      std::vector<double> xp(x), xm(x);
      for (int64_t i = 0; i < n; ++i) {
        xp[i] += eps * d[i];
        xm[i] -= eps * d[i];
      }
      const double fd = (dykstra_dot(xp, g, h, w, k, lam, ls) -
                         dykstra_dot(xm, g, h, w, k, lam, ls)) / (2 * eps);
      double an = 0;
      for (int64_t i = 0; i < n; ++i) an += gx[i] * d[i];
      check(std::fabs(fd - an) <= 1e-5 * (1 + std::fabs(fd)), "dykstra grad x", fd - an);
      const double fl = (dykstra_dot(x, g, h, w, k, lam + eps, ls) -
                         dykstra_dot(x, g, h, w, k, lam - eps, ls)) / (2 * eps);
      check(std::fabs(fl - glam) <= 1e-5 * (1 + std::fabs(fl)), "dykstra grad lam", fl - glam);
    }
  }
  // A NaN image: NaN output, NaN gradients, no out-of-bounds access.
  const int64_t h = 4, w = 5, k = 2;
  std::vector<double> x(h * w, 1.0), y(h * w), gx(h * w), g(h * w, 1.0);
  std::vector<double> ws(tv2d_dykstra_workspace(h, w));
  std::vector<int8_t> sgn(2 * k * h * w);
  x[7] = NAN;
  tv2d_dykstra_forward<double, double>(x.data(), y.data(), sgn.data(), h, w, k, 0.1,
                                       ws.data(), LineSolver::kDP);
  const double glam = tv2d_dykstra_backward<double, double>(sgn.data(), g.data(), gx.data(),
                                                            h, w, k, false, ws.data());
  check(std::isnan(y[0]) && std::isnan(gx[0]) && std::isnan(glam), "nan image", 0);
}

// The per-run Dykstra backward that tv2d_dykstra_backward's lockstep passes replaced
// (one line at a time, one loop per run): the reference for the latter.
double ref_line_backward(const int8_t* sgn, int64_t ss, const double* g, double* out, int64_t n,
                         bool identity) {
  double glam = 0, left = 0;
  int64_t start = 0;
  while (start < n) {
    int64_t end = start;
    double sum = g[start];
    while (end + 1 < n && sgn[end * ss] == 0) sum += g[++end];
    ++end;
    const double mean = sum / double(end - start);
    const double right = end < n ? double(sgn[(end - 1) * ss]) : 0.0;
    glam += (right - left) * mean;
    left = right;
    for (int64_t i = start; i < end; ++i) out[i] = identity ? g[i] : mean;
    start = end;
  }
  return glam;
}

double ref_backward(const int8_t* sgn, const double* g, double* gx, int64_t h, int64_t w,
                    int64_t iters, bool identity) {
  const int64_t hw = h * w, n = std::max(h, w);
  if (sgn[0] == kBadImage) {
    for (int64_t k = 0; k < hw; ++k) gx[k] = NAN;
    return NAN;
  }
  std::vector<double> gY(g, g + hw), gP(hw, 0.0), gQ(hw, 0.0), in(n), out(n);
  double glam = 0;
  for (int64_t it = iters - 1; it >= 0; --it) {
    const int8_t* sr = sgn + (2 * it) * hw;
    const int8_t* sc = sr + hw;
    for (int64_t j = 0; j < w; ++j) {
      for (int64_t i = 0; i < h; ++i) in[i] = gY[i * w + j] - gQ[i * w + j];
      glam += ref_line_backward(sc + j, w, in.data(), out.data(), h, identity);
      for (int64_t i = 0; i < h; ++i) gQ[i * w + j] += out[i];
    }
    for (int64_t i = 0; i < h; ++i) {
      for (int64_t j = 0; j < w; ++j) in[j] = gQ[i * w + j] - gP[i * w + j];
      glam += ref_line_backward(sr + i * w, 1, in.data(), out.data(), w, identity);
      for (int64_t j = 0; j < w; ++j) {
        gP[i * w + j] += out[j];
        gY[i * w + j] = gP[i * w + j];
      }
    }
  }
  for (int64_t k = 0; k < hw; ++k) gx[k] = gY[k];
  return glam;
}

// The backward against the per-run reference: gradient w.r.t. x equal bit for bit
// (same sums and divisions), dL/dlam to rounding (another order of summation), NaN in
// g where the reference has it. Shapes cover strips of 8 lines and remainders.
void test_dykstra_backward_vs_reference() {
  std::mt19937 rng(5);
  std::normal_distribution<double> nd;
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {1, 2}, {2, 1}, {3, 3}, {1, 9},
                                                {9, 1}, {5, 17}, {17, 5}, {8, 8}, {16, 9},
                                                {9, 16}, {19, 11}, {32, 32}, {24, 40}};
  for (auto [h, w] : shapes) {
    for (double lam : {0.0, 0.02, 0.1, 0.6, 1e3}) {
      for (int kind = 0; kind < 3; ++kind) {
        const int64_t k = 3, n = h * w;
        std::vector<double> x(n), g(n), y(n), gx(n), gr(n), ws(tv2d_dykstra_workspace(h, w));
        std::vector<int8_t> sgn(2 * k * n);
        for (int64_t i = 0; i < n; ++i) {
          x[i] = kind == 1 ? 0.25 : kind == 2 ? double(i % 3) : nd(rng);
          g[i] = nd(rng);
        }
        if (kind == 2) g[n / 2] = NAN;
        tv2d_dykstra_forward<double, double>(x.data(), y.data(), sgn.data(), h, w, k, lam,
                                             ws.data(), LineSolver::kCondat);
        const bool identity = !(lam > 0);
        const double glam = tv2d_dykstra_backward<double, double>(sgn.data(), g.data(),
                                                                  gx.data(), h, w, k, identity,
                                                                  ws.data());
        const double gref = ref_backward(sgn.data(), g.data(), gr.data(), h, w, k, identity);
        bool same = true;
        for (int64_t i = 0; i < n; ++i) {
          same = same && (std::isnan(gr[i]) ? std::isnan(gx[i]) : gx[i] == gr[i]);
        }
        check(same, "dykstra backward vs reference: grad x", double(h * 1000 + w));
        const bool lam_ok = std::isnan(gref)
                                ? std::isnan(glam)
                                : std::fabs(glam - gref) <= 1e-12 * (1 + std::fabs(gref));
        check(lam_ok, "dykstra backward vs reference: grad lam", glam - gref);
      }
    }
  }
}

void test_regions() {
  // Two regions: left 3 columns 0.2, right 2 columns 0.9 (4 rows). With g = 1 on the
  // left region only: grad x = 1 on the left, 0 on the right; dL/dlam = -(sum of
  // boundary signs of the left region) * mean = -(4 * sign(0.2 - 0.9)) * 1 = 4.
  const int64_t h = 4, w = 5, n = h * w;
  std::vector<float> y(n), g(n), gx(n);
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j) {
      y[i * w + j] = j < 3 ? 0.2f : 0.9f;
      g[i * w + j] = j < 3 ? 1.0f : 0.0f;
    }
  std::vector<int32_t> parent(n);
  std::vector<double> sum(n), count(n), bsign(n);
  const double glam = tv2d_region_backward<float>(y.data(), g.data(), gx.data(), h, w, 1e-6,
                                                  false, parent.data(), sum.data(),
                                                  count.data(), bsign.data());
  check(std::fabs(glam - 4.0) <= 1e-12, "regions glam", glam);
  check(gx[0] == 1.0f && gx[4] == 0.0f, "regions gx", gx[0]);
}

}  // namespace

int main() {
  test_dp_random();
  test_dp_on_dykstra_iterates();
  test_dykstra_backward_fd();
  test_dykstra_backward_vs_reference();
  test_regions();
  std::printf("OK (%d failures)\n", failures);
  return failures == 0 ? 0 : 1;
}
