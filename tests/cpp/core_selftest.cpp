// Torch-free self-test of the header-only solver core, built by
// tests/test_core_cpp.py with AddressSanitizer and UBSan: every read and write
// of tv1d_direct / tv1d_backward must stay inside the signal, including on rows
// of 2-D Dykstra iterates (where Condat's published code overruns), on strided
// views, and on adversarial rounding cases. Checks optimality (KKT) per signal.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/tv1d_backward.h"
#include "core/tv1d_direct.h"
#include "kkt.h"

using tvcli::core::tv1d_backward;
using tvcli::core::tv1d_direct;

namespace {

int failures = 0;

template <typename T>
void check(const std::vector<double>& xd, double lam, int64_t stride, const char* what) {
  const int64_t n = static_cast<int64_t>(xd.size());
  // Exactly-sized heap buffers so that ASan flags any access past the view.
  std::vector<T> x(static_cast<size_t>(n * stride)), y(static_cast<size_t>(n * stride));
  for (int64_t i = 0; i < n; ++i) x[i * stride] = T(xd[i]);
  tv1d_direct<T, double>(x.data(), n, stride, y.data(), stride, lam);
  std::vector<double> xs(n), ys(n);
  for (int64_t i = 0; i < n; ++i) {
    xs[i] = double(x[i * stride]);
    ys[i] = double(y[i * stride]);
  }
  const double tol = sizeof(T) == 4 ? 1e-6 : 1e-13;
  const double v = tvcli_test::kkt_violation(xs, ys, lam);
  if (!(v <= tol)) {
    std::printf("FAIL %s n=%lld lam=%g violation=%g\n", what, (long long)n, lam, v);
    ++failures;
  }
  std::vector<T> g(x.size()), gx(x.size());
  for (auto& e : g) e = T(1);
  const double glam = tv1d_backward<T, double>(y.data(), stride, g.data(), stride, gx.data(),
                                               stride, n, lam);
  // With g = 1, grad_x is 1 everywhere and grad_lam telescopes to 0.
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(double(gx[i * stride]) - 1.0) > 1e-6) {
      std::printf("FAIL backward %s n=%lld\n", what, (long long)n);
      ++failures;
      break;
    }
  if (std::fabs(glam) > 1e-9 * double(n)) {
    std::printf("FAIL backward grad_lam %s n=%lld glam=%g\n", what, (long long)n, glam);
    ++failures;
  }
}

// Rows and columns of a few proximal-Dykstra iterates on a random image.
void dykstra_rows(std::mt19937_64& rng, double lam) {
  const int h = 37, w = 53;
  std::uniform_real_distribution<double> u01(0, 1);
  std::vector<double> img(h * w), y(h * w), p(h * w, 0), q(h * w, 0), z(h * w), t(h * w);
  for (auto& v : img) v = u01(rng);
  y = img;
  for (int it = 0; it < 5; ++it) {
    for (int i = 0; i < h * w; ++i) t[i] = y[i] + p[i];
    for (int r = 0; r < h; ++r) {
      std::vector<double> row(t.begin() + r * w, t.begin() + (r + 1) * w);
      check<double>(row, lam, 1, "dykstra row f64");
      check<float>(row, lam, 3, "dykstra row f32 strided");
      tv1d_direct<double, double>(&t[r * w], w, 1, &z[r * w], 1, lam);
    }
    for (int i = 0; i < h * w; ++i) {
      p[i] += y[i] - z[i];
      t[i] = z[i] + q[i];
    }
    for (int c = 0; c < w; ++c) {
      std::vector<double> col(h);
      for (int r = 0; r < h; ++r) col[r] = t[r * w + c];
      check<double>(col, lam, 1, "dykstra col f64");
      tv1d_direct<double, double>(&t[c], h, w, &y[c], w, lam);
    }
    for (int i = 0; i < h * w; ++i) q[i] += z[i] - y[i];
  }
}

}  // namespace

int main() {
  std::mt19937_64 rng(12345);
  std::normal_distribution<double> gauss(0, 1);
  const int lengths[] = {1, 2, 3, 4, 5, 8, 31, 32, 33, 100, 1000, 20000};
  for (int n : lengths) {
    for (int e = -6; e <= 4; ++e) {
      const double lam = std::pow(10.0, e);
      std::vector<double> walk(n), noise(n), alt(n), saw(n), cst(n, 1.5), ties(n);
      double acc = 0;
      for (int i = 0; i < n; ++i) {
        noise[i] = gauss(rng);
        acc += noise[i];
        walk[i] = acc;
        alt[i] = (i % 2 ? 1.0 : -1.0);
        saw[i] = double(i % 7);
        ties[i] = double((i / 3) % 2);  // exact ties: rounding hazards
      }
      for (auto* sig : {&walk, &noise, &alt, &saw, &cst, &ties}) {
        check<double>(*sig, lam, 1, "f64");
        check<float>(*sig, lam, 1, "f32");
        check<double>(*sig, lam, 2, "f64 stride 2");
      }
    }
  }
  for (double lam : {1e-3, 0.05, 0.2, 1.0}) dykstra_rows(rng, lam);
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "OK", failures);
  return failures ? 1 : 0;
}
