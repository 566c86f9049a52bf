// Torch-free self-test of csrc/core/tv_nd_fgp.h under AddressSanitizer + UBSan
// (tests/test_core_cpp.py): every buffer is a std::vector of exactly the size the
// header documents, so a read or write outside it fails. On random problems (1-D
// to 4-D, 1-3 channels, iso / aniso, weight map or one weight, zero weights) it
// runs FISTA iterations three ways -- the CPU's line sweeps with the whole
// residual first, the line sweeps with the residual a slab ahead in a ring (the
// one-thread path), and the CUDA kernels' per-pixel twins -- and demands equal
// dual states bit for bit, then equal certificate pieces (shrink factors, y) and
// gaps equal to rounding.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "core/tv_nd_fgp.h"

namespace nd = tvcli::core::tvnd;

static int failures = 0;

#define CHECK(cond, ...)                         \
  do {                                           \
    if (!(cond)) {                               \
      ++failures;                                \
      std::printf("FAIL %s:%d ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                  \
      std::printf("\n");                         \
    }                                            \
  } while (0)

template <int ND, bool ISO>
void run_case(const int64_t* sizes, int C, bool w_map, unsigned seed) {
  const nd::Geometry g = nd::make_geometry(ND, sizes, C);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  const int64_t n = g.n, cn = C * n, lp = C * g.lines * (g.w + 1);
  std::vector<double> x(static_cast<size_t>(cn)), w(static_cast<size_t>(w_map ? n : 1));
  for (auto& v : x) v = u01(rng);
  for (auto& v : w) v = u01(rng) < 0.1 ? 0.0 : 0.3 * u01(rng);
  const int64_t ring = (ND >= 2 ? g.line_step[0] : 0) + 1;
  struct State {
    std::vector<double> p, q, r, y, s;
  };
  auto make = [&](int64_t r_lines) {
    return State{std::vector<double>(size_t(ND * cn), 0.0), std::vector<double>(size_t(ND * cn), 0.0),
                 std::vector<double>(size_t(C * r_lines * (g.w + 1))),
                 std::vector<double>(size_t(lp)), std::vector<double>(size_t(n))};
  };
  State a = make(g.lines), b = make(ring), c = make(g.lines);
  auto prob = [&](State& st, int64_t r_lines) {
    return nd::Problem<double, double>{x.data(),    w.data(),    w_map,       st.p.data(),
                                       st.q.data(), st.r.data(), st.y.data(), st.s.data(),
                                       r_lines};
  };
  const nd::Problem<double, double> Pa = prob(a, g.lines), Pb = prob(b, ring),
                                    Pc = prob(c, g.lines);
  const std::vector<double> zero(static_cast<size_t>(g.w), 0.0);
  std::vector<double> n2(static_cast<size_t>(g.w)), sc(static_cast<size_t>(g.w));
  const double inv_l = 1.0 / nd::lipschitz(ND);
  double t = 1.0;
  for (int it = 0; it < 12; ++it) {
    const double tn = nd::next_t(t);
    const double beta = (t - 1.0) / tn;
    t = tn;
    double da = 0.0, db = 0.0, dc = 0.0;
    for (int64_t l = 0; l < g.lines; ++l) nd::residual_line<double, double, ND>(g, Pa, l, zero.data());
    for (int64_t l = 0; l < g.lines; ++l)
      nd::update_line<double, double, ND, ISO>(g, Pa, l, inv_l, beta, n2.data(), sc.data(), &da);
    const int64_t ahead = ring - 1;
    for (int64_t l = 0; l < ahead && l < g.lines; ++l)
      nd::residual_line<double, double, ND>(g, Pb, l, zero.data());
    for (int64_t l = 0; l < g.lines; ++l) {
      if (l + ahead < g.lines) nd::residual_line<double, double, ND>(g, Pb, l + ahead, zero.data());
      nd::update_line<double, double, ND, ISO>(g, Pb, l, inv_l, beta, n2.data(), sc.data(), &db);
    }
    for (int64_t i = 0; i < n; ++i) nd::residual_at(g, Pc, i);
    for (int64_t i = 0; i < n; ++i) dc += nd::update_at<double, double, ISO>(g, Pc, i, inv_l, beta);
    CHECK(a.p == b.p && a.q == b.q, "ring sweep differs (ND %d, iso %d, it %d)", ND, ISO, it);
    CHECK(a.p == c.p && a.q == c.q, "per-pixel twins differ (ND %d, iso %d, it %d)", ND, ISO, it);
    CHECK(std::abs(da - db) <= 1e-12 * (1 + std::abs(da)) &&
              std::abs(da - dc) <= 1e-9 * (1 + std::abs(da)),
          "restart sums differ: %g %g %g", da, db, dc);
  }
  double ga = 0.0, gc = 0.0;
  std::vector<double> l1(static_cast<size_t>(g.w)), l2(static_cast<size_t>(g.w));
  for (int64_t l = 0; l < g.lines; ++l) nd::cert_scale_line<double, double, ND, ISO>(g, Pa, l);
  for (int64_t l = 0; l < g.lines; ++l)
    nd::cert_y_line<double, double, ND, ISO>(g, Pa, l, zero.data());
  for (int64_t l = 0; l < g.lines; ++l)
    ga += nd::gap_line<double, double, ND, ISO>(g, Pa, l, l1.data(), l2.data());
  for (int64_t i = 0; i < n; ++i) nd::cert_scale_at<double, double, ISO>(g, Pc, i);
  for (int64_t i = 0; i < n; ++i) nd::cert_y_at<double, double, ISO>(g, Pc, i);
  for (int64_t i = 0; i < n; ++i) gc += nd::gap_at<double, double, ISO>(g, Pc, i);
  CHECK(a.s == c.s && a.y == c.y, "certificate pieces differ (ND %d, iso %d)", ND, ISO);
  CHECK(ga >= 0.0 && std::abs(ga - gc) <= 1e-12 * (1 + ga), "gaps: %g %g", ga, gc);
}

template <int ND>
void run_all(const int64_t* sizes, unsigned seed) {
  for (int C = 1; C <= 3; ++C)
    for (int m = 0; m < 2; ++m) {
      run_case<ND, true>(sizes, C, m == 1, seed + 17 * C + m);
      run_case<ND, false>(sizes, C, m == 1, seed + 31 * C + m);
    }
}

int main() {
  const int64_t s1[] = {9}, s2[] = {5, 7}, s2b[] = {1, 6}, s2c[] = {6, 1}, s3[] = {3, 4, 5},
                s4[] = {2, 3, 2, 3};
  for (unsigned seed = 1; seed <= 3; ++seed) {
    run_all<1>(s1, seed);
    run_all<2>(s2, seed);
    run_all<2>(s2b, seed);
    run_all<2>(s2c, seed);
    run_all<3>(s3, seed);
    run_all<4>(s4, seed);
  }
  std::printf("OK (%d failures)\n", failures);
  return failures == 0 ? 0 : 1;
}
