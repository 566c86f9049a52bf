// Optimality (KKT) check of a 1-D TV prox result, shared by the C++ self-tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace tvcli_test {

// Largest violation of the optimality conditions of y = prox(x, lam)
// (u = cumsum(x - y): u_{N-1} = 0, |u_n| <= lam, u_n = -lam sign(y_{n+1} - y_n)
// at jumps), relative to max|x| + lam and divided by N. A jump whose dual is
// off counts with the smaller of that and its own size: two segments whose
// exact values tie may differ by rounding in either direction.
inline double kkt_violation(const std::vector<double>& x, const std::vector<double>& y,
                            double lam) {
  const size_t n = x.size();
  double scale = lam, u = 0, worst = 0;
  for (double v : x) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < n; ++i) {
    u += x[i] - y[i];
    if (i + 1 == n) {
      worst = std::max(worst, std::fabs(u));
    } else {
      worst = std::max(worst, std::fabs(u) - lam);
      const double d = y[i + 1] - y[i];
      if (d != 0)
        worst = std::max(worst, std::min(std::fabs(u + lam * (d > 0 ? 1 : -1)), std::fabs(d)));
    }
  }
  return worst / (scale + 1e-300) / double(n);
}

}  // namespace tvcli_test
