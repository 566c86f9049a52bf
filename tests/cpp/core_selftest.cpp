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

// Short rows of decimal and k/255 values with lam a multiple of 0.1 or 1/255:
// exact ties (vmin == vmax at the right boundary) that rounding breaks. The
// published sweep's boundary restart went wrong on these: last samples off by
// up to 0.1, and reads/writes past the end of the row (docs/exactness.md).
void decimal_rows(std::mt19937_64& rng, int count) {
  for (int t = 0; t < count; ++t) {
    const int n = 2 + int(rng() % (t % 2 ? 20 : 300));
    const int mode = int(rng() % 4);
    const double lam = mode == 3 ? double(1 + rng() % 20) / 10.0 : double(1 + rng() % 50) / 255.0;
    std::vector<double> x(n);
    for (int i = 0; i < n; ++i) {
      if (mode == 0) x[i] = double(rng() % 256) / 255.0;
      else if (mode == 1) x[i] = double(rng() % 10) / 10.0;
      else if (mode == 2) x[i] = i > 0 && rng() % 4 ? x[i - 1] : double(rng() % 256) / 255.0;
      else x[i] = double(rng() % 7) / 10.0;
    }
    check<double>(x, lam, 1, "decimal row");
  }
  // Found by that search (old code: y[20] = 0.35, exact 0.4).
  const std::vector<double> row = {0.4, 0.3, 0.4, 0.2, 0.3, 0.5, 0.4, 0.6, 0.2, 0.1, 0.2,
                                   0.4, 0.1, 0.0, 0.2, 0.2, 0.5, 0.3, 0.6, 0.3, 0.4};
  check<double>(row, 0.1, 1, "decimal regression row");
  // Old code: the boundary restart left kminus = n - 1 for the sweep, which
  // then read and wrote past the end (ASan: heap-buffer-overflow).
  const std::vector<double> overrun = {0.2, 0.0, 0.6, 0.1, 0.2, 0.0, 0.2, 0.3};
  check<double>(overrun, 0.2, 1, "decimal overrun row");
  // Found by the fuzz harness (kind "ties"): crashed the old build.
  const std::vector<double> harness = {0.6, 0.2, 0.5, 0.1, 0.6, 0.0, 0.2, 0.6,
                                       0.2, 0.6, 0.2, 0.0, 0.0, 0.5, 0.1};
  check<double>(harness, 0.4, 1, "harness overrun row");
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
  decimal_rows(rng, 100000);
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "OK", failures);
  return failures ? 1 : 0;
}
