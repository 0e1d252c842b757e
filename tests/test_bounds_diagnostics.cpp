// SPDX-License-Identifier: MIT
// The bounds module's diagnostics (PAPER.md, "Theory quantities"): type-7 quantiles, kept sets and
// selection margins, per-row dispersion / separation / sink counts of diagnose() and their pooled
// summaries, spectral norms and the weight-norm quantities of an attention layer, and the softmax
// stability constants with the paper's conditions LHS_W, LHS_X (its Table 6 reproduced).
//
// Every expected value is computed here, by hand or by brute force from the documented
// definitions, never by calling the function under test a second time. The hand examples use
// K = identity (d = n_k) and scale 1, so the score matrix is exactly Q: every score, dispersion
// and separation below is a small dyadic number, exact in float and double.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <limits>
#include <numbers>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <semfocus/bounds/bounds.hpp>
#include <semfocus/semfocus.hpp>

#include "support/custom_policy.hpp"
#include "support/tensors.hpp"

using namespace semfocus;
using namespace semfocus::test;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

// ------------------------------------------------------------------------------------------------
// Hand example: 6 queries x 6 keys, scores chosen directly.

constexpr index_t hand_n = 6;
constexpr double hand_scores[6][6] = {
    {1, 5, 3, -2, 0, 4},         // row 0
    {-1, -3, 2, 2.5, 7, 0.5},    // row 1
    {0, 0, 0, 0, 0, 0},          // row 2: all tied
    {10, -10, 6, 8, 9, -4},      // row 3
    {2, 1.5, -0.5, 3, 2.75, 1},  // row 4
    {-6, -2, -8, -1, -7, -3},    // row 5
};

/// Q = the score matrix, K = identity: with scale 1, s_ij = q_i . e_j = hand_scores[i][j].
template <class T>
struct hand_problem {
  tensor<T> q{tensor_shape{1, 1, hand_n, hand_n}};
  tensor<T> k{tensor_shape{1, 1, hand_n, hand_n}};
  hand_problem() {
    for (index_t i = 0; i < hand_n; ++i)
      for (index_t j = 0; j < hand_n; ++j) q(0, 0, i, j) = T(hand_scores[i][j]);
    for (index_t j = 0; j < hand_n; ++j) k(0, 0, j, j) = T(1);
  }
};

const attention_options unit_scale{.scale = 1.0};

/// The diagnostics of one policy on the hand example, worked out by hand.
struct hand_expect {
  std::array<double, 6> dispersion;
  std::array<double, 6> separation;
  std::array<index_t, 6> kept_count;
  std::array<index_t, 6> sink_count;
};

// max - min of every row: the dense dispersions, also dispersion_all of every policy.
constexpr std::array<double, 6> hand_dispersion_all = {7, 10, 0, 20, 3.5, 7};

const hand_expect hand_dense = {
    hand_dispersion_all, {inf, inf, inf, inf, inf, inf}, {6, 6, 6, 6, 6, 6}, {6, 6, 6, 6, 6, 6}};

// top_k(2): row 0 keeps {1, 5} (5, 4; next 3), row 1 {4, 3} (7, 2.5; next 2), row 2 the ties
// {0, 1} (index order; next 0), row 3 {0, 4} (10, 9; next 8), row 4 {3, 4} (3, 2.75; next 2),
// row 5 {3, 1} (-1, -2; next -3).
const hand_expect hand_top2 = {
    {1, 4.5, 0, 1, 0.25, 1}, {1, 0.5, 0, 1, 0.75, 1}, {2, 2, 2, 2, 2, 2}, {2, 3, 0, 3, 3, 1}};

// threshold(2.5): floor = max - 2.5. Row 0 (floor 2.5) keeps {1, 2, 5}; row 1 (4.5) {4}; row 2
// (-2.5) all; row 3 (7.5) {0, 3, 4}; row 4 (0.5) all but key 2; row 5 (-3.5) {1, 3, 5}.
const hand_expect hand_threshold = {
    {2, 0, 0, 2, 2, 2}, {2, 4.5, inf, 2, 1.5, 3}, {3, 1, 6, 3, 5, 3}, {3, 4, 2, 4, 4, 4}};

// absolute_threshold(2): s >= 2. Row 0 keeps {1, 2, 5}; row 1 {2, 3, 4}; row 2 nothing; row 3
// {0, 2, 3, 4}; row 4 {0, 3, 4}; row 5 nothing. Empty rows: dispersion 0, separation +inf.
const hand_expect hand_absolute = {
    {2, 5, 0, 4, 1, 0}, {2, 1.5, inf, 10, 0.5, inf}, {3, 3, 0, 4, 3, 0}, {2, 1, 3, 3, 3, 1}};

// banded(3), n_q = n_k: start(i) = clamp(i - 1, 0, 3): rows 0, 1 keep {0, 1, 2}, row 2 {1, 2, 3},
// row 3 {2, 3, 4}, rows 4, 5 {3, 4, 5}. A fixed mask: separations may be negative.
const hand_expect hand_banded = {
    {4, 5, 0, 3, 2, 6}, {-3, -10, 0, -4, -1, -5}, {3, 3, 3, 3, 3, 3}, {2, 3, 4, 4, 3, 2}};

// block_local(2): blocks {0, 1}, {2, 3}, {4, 5}; row i keeps the block of i.
const hand_expect hand_block = {
    {4, 2, 0, 2, 1.75, 4}, {-3, -10, 0, -4, -2, -6}, {2, 2, 2, 2, 2, 2}, {2, 2, 2, 2, 2, 2}};

void check_hand(const bounds::attention_diagnostics& d, const hand_expect& e) {
  REQUIRE(d.dispersion.size() == 6);
  REQUIRE(d.dispersion_all.size() == 6);
  REQUIRE(d.separation.size() == 6);
  REQUIRE(d.kept_count.size() == 6);
  REQUIRE(d.sink_count.size() == 6);
  CHECK(d.scale == 1.0);
  for (std::size_t r = 0; r < 6; ++r) {
    CAPTURE(r);
    CHECK(d.dispersion[r] == e.dispersion[r]);
    CHECK(d.dispersion_all[r] == hand_dispersion_all[r]);
    CHECK(d.separation[r] == e.separation[r]);
    CHECK(d.kept_count[r] == e.kept_count[r]);
    CHECK(d.sink_count[r] == e.sink_count[r]);
  }
}

// ------------------------------------------------------------------------------------------------
// Brute-force diagnostics from the documented definitions, on scores computed in the test.

/// keep(i, n_q, row) -> which keys row i keeps.
using keep_fn = std::function<std::vector<bool>(index_t, index_t, const std::vector<double>&)>;

keep_fn keep_dense() {
  return [](index_t, index_t, const std::vector<double>& s) {
    return std::vector<bool>(s.size(), true);
  };
}

/// The k largest, ties by index ascending.
keep_fn keep_top(index_t k) {
  return [k](index_t, index_t, const std::vector<double>& s) {
    std::vector<std::size_t> idx(s.size());
    std::iota(idx.begin(), idx.end(), std::size_t(0));
    std::stable_sort(idx.begin(), idx.end(),
                     [&](std::size_t a, std::size_t b) { return s[a] > s[b]; });
    std::vector<bool> kept(s.size(), false);
    for (std::size_t x = 0; x < std::size_t(k); ++x) kept[idx[x]] = true;
    return kept;
  };
}

keep_fn keep_threshold(double tau) {
  return [tau](index_t, index_t, const std::vector<double>& s) {
    const double floor = *std::max_element(s.begin(), s.end()) - tau;
    std::vector<bool> kept(s.size());
    for (std::size_t j = 0; j < s.size(); ++j) kept[j] = s[j] >= floor;
    return kept;
  };
}

keep_fn keep_absolute(double tau) {
  return [tau](index_t, index_t, const std::vector<double>& s) {
    std::vector<bool> kept(s.size());
    for (std::size_t j = 0; j < s.size(); ++j) kept[j] = s[j] >= tau;
    return kept;
  };
}

/// Window of k keys around position p = i + n_k - n_q, shifted inside [0, n_k).
keep_fn keep_banded(index_t k) {
  return [k](index_t i, index_t n_q, const std::vector<double>& s) {
    const auto n_k = index_t(s.size());
    const index_t start = std::clamp(i + n_k - n_q - (k - 1) / 2, index_t(0), n_k - k);
    std::vector<bool> kept(s.size());
    for (index_t j = 0; j < n_k; ++j) kept[std::size_t(j)] = j >= start && j < start + k;
    return kept;
  };
}

keep_fn keep_block(index_t k) {
  return [k](index_t i, index_t n_q, const std::vector<double>& s) {
    const auto n_k = index_t(s.size());
    const index_t p = i + n_k - n_q;
    std::vector<bool> kept(s.size());
    for (index_t j = 0; j < n_k; ++j) kept[std::size_t(j)] = p >= 0 && p / k == j / k;
    return kept;
  };
}

keep_fn keep_same_parity() {
  return [](index_t i, index_t, const std::vector<double>& s) {
    std::vector<bool> kept(s.size());
    for (index_t j = 0; j < index_t(s.size()); ++j) kept[std::size_t(j)] = (i - j) % 2 == 0;
    return kept;
  };
}

keep_fn keep_above_mean() {
  return [](index_t, index_t, const std::vector<double>& s) {
    const double mean = std::accumulate(s.begin(), s.end(), 0.0) / double(s.size());
    std::vector<bool> kept(s.size());
    for (std::size_t j = 0; j < s.size(); ++j) kept[j] = s[j] >= mean;
    return kept;
  };
}

struct brute_diag {
  std::vector<double> dispersion, dispersion_all, separation;
  std::vector<index_t> kept_count, sink_count;
};

/// Diagnostics of `pr` under `keep`, rows r = (b heads + h) n_q + i, keys (b heads + h) n_k + j.
template <class T>
brute_diag brute_diagnostics(const problem<T>& pr, double scale, const keep_fn& keep) {
  const attention_shape& s = pr.shape;
  brute_diag out;
  out.sink_count.assign(std::size_t(s.batch * s.heads * s.n_k), 0);
  std::vector<double> row;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        test_scores(pr, b, h, i, scale, row);
        const std::vector<bool> kept = keep(i, s.n_q, row);
        double kmin = inf, kmax = -inf, umax = -inf;
        index_t count = 0;
        for (std::size_t j = 0; j < row.size(); ++j) {
          if (kept[j]) {
            ++count;
            kmin = std::min(kmin, row[j]);
            kmax = std::max(kmax, row[j]);
            ++out.sink_count[std::size_t((b * s.heads + h) * s.n_k) + j];
          } else {
            umax = std::max(umax, row[j]);
          }
        }
        const double lo = *std::min_element(row.begin(), row.end());
        const double hi = *std::max_element(row.begin(), row.end());
        out.dispersion.push_back(count >= 2 ? kmax - kmin : 0.0);
        out.dispersion_all.push_back(hi - lo);
        out.separation.push_back(count == 0 || count == s.n_k ? inf : kmin - umax);
        out.kept_count.push_back(count);
      }
  return out;
}

/// diagnose(p) on `pr` agrees with the brute force within `tol` (relative to the score range).
template <class Policy, class T>
void check_brute(const Policy& p, const keep_fn& keep, const problem<T>& pr, double tol) {
  const attention_shape& s = pr.shape;
  const double scale = 1.0 / std::sqrt(double(s.d));
  const bounds::attention_diagnostics d = bounds::diagnose(p, pr.q.view(), pr.k.view());
  const brute_diag e = brute_diagnostics(pr, scale, keep);
  // V plays no part: the shape records d_v = d (K stands in for V), so compare the rest.
  CHECK(d.shape.batch == s.batch);
  CHECK(d.shape.heads == s.heads);
  CHECK(d.shape.n_q == s.n_q);
  CHECK(d.shape.n_k == s.n_k);
  CHECK(d.shape.d == s.d);
  CHECK(d.scale == doctest::Approx(scale).epsilon(1e-15));
  REQUIRE(d.dispersion.size() == e.dispersion.size());
  REQUIRE(d.sink_count.size() == e.sink_count.size());
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      const auto [r0, r1] = d.rows_of(b, h);
      const auto [c0, c1] = d.keys_of(b, h);
      CHECK(r0 == std::size_t((b * s.heads + h) * s.n_q));
      CHECK(r1 == r0 + std::size_t(s.n_q));
      CHECK(c0 == std::size_t((b * s.heads + h) * s.n_k));
      CHECK(c1 == c0 + std::size_t(s.n_k));
      for (std::size_t r = r0; r < r1; ++r) {
        CAPTURE(b);
        CAPTURE(h);
        CAPTURE(r);
        CHECK(d.kept_count[r] == e.kept_count[r]);
        CHECK(std::abs(d.dispersion[r] - e.dispersion[r]) <= tol);
        CHECK(std::abs(d.dispersion_all[r] - e.dispersion_all[r]) <= tol);
        if (std::isinf(e.separation[r]))
          CHECK(d.separation[r] == e.separation[r]);
        else
          CHECK(std::abs(d.separation[r] - e.separation[r]) <= tol);
      }
      for (std::size_t c = c0; c < c1; ++c) {
        CAPTURE(c);
        CHECK(d.sink_count[c] == e.sink_count[c]);
      }
    }
}

// ------------------------------------------------------------------------------------------------
// Eigen helpers.

Eigen::MatrixXd gaussian(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  Eigen::MatrixXd m(rows, cols);
  for (Eigen::Index c = 0; c < cols; ++c)
    for (Eigen::Index r = 0; r < rows; ++r) m(r, c) = nd(gen);
  return m;
}

Eigen::VectorXd gaussian_vec(Eigen::Index n, std::uint64_t seed) {
  return gaussian(n, 1, seed).col(0);
}

/// Largest singular value by Jacobi SVD (the independent reference).
double svd_norm(const Eigen::MatrixXd& m) {
  return Eigen::JacobiSVD<Eigen::MatrixXd>(m).singularValues()(0);
}

/// [W | b] built column by column in the test.
Eigen::MatrixXd with_bias(const Eigen::MatrixXd& w, const Eigen::VectorXd& b) {
  Eigen::MatrixXd out(w.rows(), w.cols() + 1);
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    for (Eigen::Index c = 0; c < w.cols(); ++c) out(r, c) = w(r, c);
    out(r, w.cols()) = b(r);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// The paper's stability formulas, written out here from PAPER.md.

double paper_lhs_w(double ds, double dh, double sep) {
  const double D = std::max(sep, 1e-9), s = std::max(ds, 1e-9);
  return dh / s + std::log(2 * (1 + 1 / D)) / s;
}

double paper_lhs_x(double ds, double dh, double sep, double beta) {
  const double D = std::max(sep, 1e-9), s = std::max(ds, 1e-9);
  return dh / s + (std::log(s * (1 + beta) * (1 + 1 / D) + beta) - std::log(1 + s)) / s;
}

}  // namespace

// ================================================================================================
// Quantiles

TEST_CASE("bounds: quantile_sorted gives the type-7 values") {
  const std::vector<double> x = {1, 2, 3, 4};
  // h = level (n - 1); x[floor h] + frac (x[floor h + 1] - x[floor h]).
  CHECK(bounds::quantile_sorted(x, 0.0) == 1.0);
  CHECK(bounds::quantile_sorted(x, 0.25) == doctest::Approx(1.75).epsilon(1e-15));
  CHECK(bounds::quantile_sorted(x, 0.5) == doctest::Approx(2.5).epsilon(1e-15));
  CHECK(bounds::quantile_sorted(x, 0.75) == doctest::Approx(3.25).epsilon(1e-15));
  CHECK(bounds::quantile_sorted(x, 0.1) == doctest::Approx(1.3).epsilon(1e-15));
  CHECK(bounds::quantile_sorted(x, 0.9) == doctest::Approx(3.7).epsilon(1e-15));
  CHECK(bounds::quantile_sorted(x, 1.0) == 4.0);
  CHECK(bounds::quantile_sorted(x, 1.0 / 3) == doctest::Approx(2.0).epsilon(1e-15));

  const std::vector<double> y = {-3, 0, 0, 10, 20};                                  // h = 4 level
  CHECK(bounds::quantile_sorted(y, 0.125) == doctest::Approx(-1.5).epsilon(1e-15));  // h = 0.5
  CHECK(bounds::quantile_sorted(y, 0.375) == doctest::Approx(0.0).epsilon(1e-15));   // h = 1.5
  CHECK(bounds::quantile_sorted(y, 0.6) == doctest::Approx(4.0).epsilon(1e-15));     // h = 2.4
  CHECK(bounds::quantile_sorted(y, 0.95) == doctest::Approx(18.0).epsilon(1e-15));   // h = 3.8

  const std::vector<double> one = {7.5};
  for (const double level : {0.0, 0.3, 1.0}) CHECK(bounds::quantile_sorted(one, level) == 7.5);
}

TEST_CASE("bounds: quantiles sorts, drops NaN and handles infinities") {
  const std::vector<double> v = {4, nan_v, 1, 3, nan_v, 2};
  const auto q = bounds::quantiles(v, std::array<double, 4>{0.25, 0.5, 0.75, 1.0});
  CHECK(q[0] == doctest::Approx(1.75).epsilon(1e-15));
  CHECK(q[1] == doctest::Approx(2.5).epsilon(1e-15));
  CHECK(q[2] == doctest::Approx(3.25).epsilon(1e-15));
  CHECK(q[3] == 4.0);

  // +inf at the top: interpolation touching it returns it, exact order statistics do not.
  const std::vector<double> w = {inf, 1, 2};
  const auto qi = bounds::quantiles(w, std::array<double, 5>{0.0, 0.25, 0.5, 0.75, 1.0});
  CHECK(qi[0] == 1.0);
  CHECK(qi[1] == doctest::Approx(1.5).epsilon(1e-15));
  CHECK(qi[2] == 2.0);
  CHECK(qi[3] == inf);
  CHECK(qi[4] == inf);
  const std::vector<double> all_inf = {inf, inf, nan_v};
  CHECK(bounds::quantiles(all_inf, std::array<double, 1>{0.5})[0] == inf);
  const std::vector<double> neg = {0, -inf, 1};
  const auto qn = bounds::quantiles(neg, std::array<double, 3>{0.0, 0.25, 0.75});
  CHECK(qn[0] == -inf);
  CHECK(qn[1] == -inf);
  CHECK(qn[2] == doctest::Approx(0.5).epsilon(1e-15));
  for (const double x : qi) CHECK_FALSE(std::isnan(x));
}

TEST_CASE("bounds: quantiles reject empty input and bad levels") {
  const std::vector<double> empty;
  const std::vector<double> nans = {nan_v, nan_v};
  const std::vector<double> x = {1, 2, 3};
  CHECK_THROWS_AS(bounds::quantile_sorted(empty, 0.5), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::quantiles(empty, std::array<double, 1>{0.5}), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::quantiles(nans, std::array<double, 1>{0.5}), semfocus::invalid_argument);
  for (const double bad : {-0.01, 1.01, nan_v, inf, -inf}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(bounds::quantile_sorted(x, bad), semfocus::invalid_argument);
    CHECK_THROWS_AS(bounds::quantiles(x, std::array<double, 2>{0.5, bad}),
                    semfocus::invalid_argument);
  }
}

TEST_CASE("bounds: quantile_summary at the paper levels") {
  // 0, 1, ..., 100 shuffled, with NaNs: the type-7 quantile at level l is 100 l.
  std::vector<double> v;
  for (int x = 100; x >= 0; --x) v.push_back(double((x * 37) % 101));
  v.push_back(nan_v);
  v.insert(v.begin() + 10, nan_v);
  const bounds::quantile_summary s = bounds::quantile_summary::of(v);
  CHECK(s.count == 101);
  const std::array<double, 11> levels = {0.0,  0.01, 0.05, 0.10, 0.25, 0.50,
                                         0.75, 0.90, 0.95, 0.99, 1.0};
  REQUIRE(bounds::paper_levels.size() == levels.size());
  for (std::size_t l = 0; l < levels.size(); ++l) {
    CAPTURE(levels[l]);
    CHECK(bounds::paper_levels[l] == levels[l]);
    CHECK(s.values[l] == doctest::Approx(100 * levels[l]).epsilon(1e-12));
    CHECK(s.at(levels[l]) == doctest::Approx(100 * levels[l]).epsilon(1e-12));
  }
  // Level arithmetic that is off by rounding still finds the level.
  CHECK(s.at(1.0 - 0.9) == doctest::Approx(10.0).epsilon(1e-12));
  CHECK(s.at(1.0 - 0.95) == doctest::Approx(5.0).epsilon(1e-12));

  // Empty (or all-NaN) input: count 0, NaN values.
  const std::vector<double> nans = {nan_v};
  for (const auto& input : {std::vector<double>{}, nans}) {
    const bounds::quantile_summary e = bounds::quantile_summary::of(input);
    CHECK(e.count == 0);
    for (const double x : e.values) CHECK(std::isnan(x));
    CHECK(std::isnan(e.at(0.5)));
  }

  // set / at round trip, only at paper levels.
  bounds::quantile_summary t;
  t.set(0.9, 5.5);
  t.set(0.0, -1.0);
  CHECK(t.at(0.9) == 5.5);
  CHECK(t.values[7] == 5.5);
  CHECK(t.at(0.0) == -1.0);
  CHECK(t.values[0] == -1.0);
  CHECK(t.at(0.5) == 0.0);  // untouched
  for (const double bad : {0.3, 0.2, 0.999, -0.25, 1.5, nan_v}) {
    CAPTURE(bad);
    CHECK_THROWS_AS((void)t.at(bad), semfocus::invalid_argument);
    CHECK_THROWS_AS(t.set(bad, 1.0), semfocus::invalid_argument);
  }
  CHECK(t.at(0.9) == 5.5);  // a failed set changed nothing
}

// ================================================================================================
// Selection

TEST_CASE("bounds: select_head gives the scores and kept sets of the policy") {
  const hand_problem<double> hp;
  const bounds::head_selection sel =
      bounds::select_head(top_k(2), hp.q.view(), hp.k.view(), 0, 0, 1.0);
  CHECK(sel.slice.n_q == hand_n);
  CHECK(sel.slice.n_k == hand_n);
  const std::array<std::array<int, 6>, 6> kept = {{{0, 1, 0, 0, 0, 1},
                                                   {0, 0, 0, 1, 1, 0},
                                                   {1, 1, 0, 0, 0, 0},
                                                   {1, 0, 0, 0, 1, 0},
                                                   {0, 0, 0, 1, 1, 0},
                                                   {0, 1, 0, 1, 0, 0}}};
  for (index_t i = 0; i < hand_n; ++i) {
    const auto sr = sel.score_row(i);
    const auto kr = sel.kept_row(i);
    REQUIRE(sr.size() == 6);
    REQUIRE(kr.size() == 6);
    for (std::size_t j = 0; j < 6; ++j) {
      CHECK(sr[j] == hand_scores[i][j]);
      CHECK(int(kr[j]) == kept[std::size_t(i)][j]);
    }
  }
  // The scale multiplies the scores.
  const bounds::head_selection half =
      bounds::select_head(dense{}, hp.q.view(), hp.k.view(), 0, 0, 0.5);
  for (index_t i = 0; i < hand_n; ++i)
    for (std::size_t j = 0; j < 6; ++j) CHECK(half.score_row(i)[j] == 0.5 * hand_scores[i][j]);
}

TEST_CASE("bounds: separation of a row") {
  using u8 = std::vector<unsigned char>;
  const std::vector<double> s = {1, 5, 3, -2, 0, 4};
  CHECK(bounds::separation(s, u8{0, 1, 0, 0, 0, 1}) == 1.0);   // 4 - 3
  CHECK(bounds::separation(s, u8{1, 1, 0, 0, 0, 0}) == -3.0);  // 1 - 4
  CHECK(bounds::separation(s, u8{1, 1, 1, 1, 1, 1}) == inf);
  CHECK(bounds::separation(s, u8{0, 0, 0, 0, 0, 0}) == inf);
  // NaN scores are ignored, kept or not.
  const std::vector<double> n = {2, nan_v, 1, nan_v};
  CHECK(bounds::separation(n, u8{1, 1, 0, 0}) == 1.0);
  CHECK(bounds::separation(n, u8{1, 0, 1, 0}) == inf);
}

namespace {
/// A user row policy that reports its own selection margin.
struct margin_reporting : user::above_mean {
  double selection_margin(const head_slice&, index_t i, std::span<const double>,
                          std::span<const unsigned char>) const {
    return 0.125 * double(i + 1);
  }
};
}  // namespace

TEST_CASE("bounds: selection_margin by policy, and perturbations below it keep the kept set") {
  using u8 = std::vector<unsigned char>;
  const head_slice hs{0, 0, 6, 6};
  const std::vector<double> s = {1, 5, 3, -2, 0, 4};
  const u8 top2 = {0, 1, 0, 0, 0, 1};
  CHECK(bounds::selection_margin(dense{}, hs, 0, s, u8(6, 1)) == inf);
  CHECK(bounds::selection_margin(banded(3), hs, 0, s, u8{1, 1, 1, 0, 0, 0}) == inf);
  CHECK(bounds::selection_margin(user::same_parity{}, hs, 0, s, u8{1, 0, 1, 0, 1, 0}) == inf);
  CHECK(bounds::selection_margin(top_k(2), hs, 0, s, top2) == 0.5);  // (4 - 3) / 2
  // bottom_k(2) keeps -2, 0; next 1: Delta = 1 - 0 in the rank order.
  CHECK(bounds::selection_margin(bottom_k(2), hs, 0, s, u8{0, 0, 0, 1, 1, 0}) == 0.5);
  // threshold(2.5): floor 2.5, distances |s - 2.5| = 1.5, 2.5, 0.5, 4.5, 2.5, 1.5; min / 2.
  CHECK(bounds::selection_margin(threshold(2.5), hs, 0, s, u8{0, 1, 1, 0, 0, 1}) == 0.25);
  // absolute_threshold(2): distances 1, 3, 1, 4, 2, 2.
  CHECK(bounds::selection_margin(absolute_threshold(2), hs, 0, s, u8{0, 1, 1, 0, 0, 1}) == 1.0);
  CHECK(bounds::selection_margin(user::above_mean{}, hs, 0, s, u8{0, 1, 1, 0, 0, 1}) == 0.0);
  CHECK(bounds::selection_margin(margin_reporting{}, hs, 3, s, u8{0, 1, 1, 0, 0, 1}) == 0.5);

  // Random rows: perturbing every score by less than the margin (random signs, and the
  // adversarial direction for top_k) leaves the brute-force kept set unchanged; for top_k a
  // push of 1.01 margins in the adversarial direction changes it (the margin is tight).
  std::mt19937_64 gen(77);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(-1, 1);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<double> row(9);
    for (double& x : row) x = 2 * nd(gen);
    const struct {
      keep_fn keep;
      std::function<double(const u8&)> margin;
    } cases[] = {
        {keep_top(3),
         [&](const u8& k) { return bounds::selection_margin(top_k(3), hs, 0, row, k); }},
        {keep_threshold(1.5),
         [&](const u8& k) { return bounds::selection_margin(threshold(1.5), hs, 0, row, k); }},
        {keep_absolute(0.3),
         [&](const u8& k) {
           return bounds::selection_margin(absolute_threshold(0.3), hs, 0, row, k);
         }},
    };
    for (const auto& c : cases) {
      const std::vector<bool> kb = c.keep(0, 1, row);
      const u8 k(kb.begin(), kb.end());
      const double m = c.margin(k);
      REQUIRE(m > 0);
      REQUIRE(std::isfinite(m));
      for (int rep = 0; rep < 5; ++rep) {
        std::vector<double> moved = row;
        for (double& x : moved) x += 0.99 * m * ud(gen);
        CHECK(c.keep(0, 1, moved) == kb);
      }
    }
    const std::vector<bool> kb = keep_top(3)(0, 1, row);
    const double m = bounds::selection_margin(top_k(3), hs, 0, row, u8(kb.begin(), kb.end()));
    std::vector<double> in = row, out = row;
    for (std::size_t j = 0; j < row.size(); ++j) {
      in[j] += kb[j] ? -0.99 * m : 0.99 * m;
      out[j] += kb[j] ? -1.01 * m : 1.01 * m;
    }
    CHECK(keep_top(3)(0, 1, in) == kb);
    CHECK(keep_top(3)(0, 1, out) != kb);
  }
}

TEST_CASE("bounds: radius_for_margin solves scale (a r + c r^2) = eps") {
  struct rcase {
    double eps, scale, a, c;
  };
  for (const rcase& r : {rcase{1, 0.5, 2, 3}, rcase{0.1, 1, 1e-3, 10}, rcase{2, 0.25, 5, 0},
                         rcase{3, 1, 0, 4}, rcase{1e-8, 1, 1e4, 1e4}}) {
    const double x = bounds::radius_for_margin(r.eps, r.scale, r.a, r.c);
    CAPTURE(r.eps);
    CAPTURE(r.a);
    CAPTURE(r.c);
    CHECK(x > 0);
    CHECK(r.scale * (r.a * x + r.c * x * x) == doctest::Approx(r.eps).epsilon(1e-12));
  }
  CHECK(bounds::radius_for_margin(2, 0.25, 5, 0) == doctest::Approx(1.6).epsilon(1e-14));  // e/a
  CHECK(bounds::radius_for_margin(3, 1, 0, 4) == doctest::Approx(std::sqrt(0.75)).epsilon(1e-14));
  CHECK(bounds::radius_for_margin(inf, 1, 1, 1) == inf);
  CHECK(bounds::radius_for_margin(1, 1, 0, 0) == inf);
  CHECK(bounds::radius_for_margin(0, 1, 1, 1) == 0.0);
}

// ================================================================================================
// diagnose

TEST_CASE("bounds: diagnose on hand-computed scores") {
  const hand_problem<double> hp;
  const auto q = hp.q.view();
  const auto k = hp.k.view();
  SUBCASE("dense") { check_hand(bounds::diagnose(dense{}, q, k, unit_scale), hand_dense); }
  SUBCASE("top_k 2") { check_hand(bounds::diagnose(top_k(2), q, k, unit_scale), hand_top2); }
  SUBCASE("threshold 2.5") {
    check_hand(bounds::diagnose(threshold(2.5), q, k, unit_scale), hand_threshold);
  }
  SUBCASE("absolute_threshold 2") {
    check_hand(bounds::diagnose(absolute_threshold(2), q, k, unit_scale), hand_absolute);
  }
  SUBCASE("banded 3") { check_hand(bounds::diagnose(banded(3), q, k, unit_scale), hand_banded); }
  SUBCASE("block_local 2") {
    check_hand(bounds::diagnose(block_local(2), q, k, unit_scale), hand_block);
  }
  SUBCASE("absolute threshold above every score") {
    const hand_expect none = {
        {0, 0, 0, 0, 0, 0}, {inf, inf, inf, inf, inf, inf}, {0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0}};
    check_hand(bounds::diagnose(absolute_threshold(100), q, k, unit_scale), none);
  }
  SUBCASE("default scale 1 / sqrt(d)") {
    const bounds::attention_diagnostics d = bounds::diagnose(top_k(2), q, k);
    const double scale = 1 / std::sqrt(6.0);
    CHECK(d.scale == doctest::Approx(scale).epsilon(1e-15));
    for (std::size_t r = 0; r < 6; ++r) {
      CHECK(d.dispersion[r] == doctest::Approx(scale * hand_top2.dispersion[r]).epsilon(1e-14));
      CHECK(d.dispersion_all[r] == doctest::Approx(scale * hand_dispersion_all[r]).epsilon(1e-14));
      CHECK(d.separation[r] == doctest::Approx(scale * hand_top2.separation[r]).epsilon(1e-14));
      CHECK(d.kept_count[r] == 2);
      CHECK(d.sink_count[r] == hand_top2.sink_count[r]);
    }
  }
}

TEST_CASE("bounds: diagnose accepts float inputs") {
  const hand_problem<float> hp;
  const auto q = hp.q.view();
  const auto k = hp.k.view();
  check_hand(bounds::diagnose(top_k(2), q, k, unit_scale), hand_top2);
  check_hand(bounds::diagnose(threshold(2.5), q, k, unit_scale), hand_threshold);
  check_hand(bounds::diagnose(banded(3), q, k, unit_scale), hand_banded);
  check_hand(bounds::diagnose(absolute_threshold(2), q, k, unit_scale), hand_absolute);

  // Random float problem: scores rounded to float, so compare within float precision.
  const problem<float> pr({2, 2, 5, 8, 4, 3}, 901);
  check_brute(top_k(3), keep_top(3), pr, 1e-5);
  check_brute(dense{}, keep_dense(), pr, 1e-5);
}

TEST_CASE("bounds: diagnose over several batches and heads against brute force") {
  // batch 2, heads 3, n_q 5 < n_k 7 (positional masks bottom-right aligned), d 3.
  const problem<double> pr({2, 3, 5, 7, 3, 2}, 4242);
  const double tol = 1e-12;
  SUBCASE("dense") { check_brute(dense{}, keep_dense(), pr, tol); }
  SUBCASE("top_k") {
    check_brute(top_k(1), keep_top(1), pr, tol);
    check_brute(top_k(3), keep_top(3), pr, tol);
    check_brute(top_k(7), keep_top(7), pr, tol);
  }
  SUBCASE("threshold") {
    check_brute(threshold(0.0), keep_threshold(0.0), pr, tol);
    check_brute(threshold(0.7), keep_threshold(0.7), pr, tol);
  }
  SUBCASE("absolute_threshold") {
    check_brute(absolute_threshold(0.4), keep_absolute(0.4), pr, tol);
  }
  SUBCASE("banded") {
    check_brute(banded(3), keep_banded(3), pr, tol);
    check_brute(banded(4), keep_banded(4), pr, tol);
  }
  SUBCASE("block_local") {
    check_brute(block_local(2), keep_block(2), pr, tol);
    check_brute(block_local(3), keep_block(3), pr, tol);
  }
  SUBCASE("user policies") {
    check_brute(user::same_parity{}, keep_same_parity(), pr, tol);
    check_brute(user::above_mean{}, keep_above_mean(), pr, tol);
  }
  SUBCASE("n_q > n_k: block_local leaves the first rows empty") {
    const problem<double> tall({1, 2, 6, 4, 2, 2}, 77);
    check_brute(block_local(2), keep_block(2), tall, tol);
    const bounds::attention_diagnostics d =
        bounds::diagnose(block_local(2), tall.q.view(), tall.k.view());
    for (index_t h = 0; h < 2; ++h) {
      const std::size_t r0 = d.rows_of(0, h).first;
      CHECK(d.kept_count[r0] == 0);
      CHECK(d.kept_count[r0 + 1] == 0);
      CHECK(d.kept_count[r0 + 2] == 2);
    }
  }
  SUBCASE("every row keeps k keys and the sink counts add up") {
    const bounds::attention_diagnostics d = bounds::diagnose(top_k(3), pr.q.view(), pr.k.view());
    for (const index_t c : d.kept_count) CHECK(c == 3);
    for (index_t b = 0; b < 2; ++b)
      for (index_t h = 0; h < 3; ++h) {
        const auto [c0, c1] = d.keys_of(b, h);
        index_t total = 0;
        for (std::size_t c = c0; c < c1; ++c) total += d.sink_count[c];
        CHECK(total == 3 * 5);
      }
  }
}

TEST_CASE("bounds: diagnose rejects bad inputs") {
  const hand_problem<double> hp;
  const tensor<double> k5(tensor_shape{1, 1, 6, 5});
  const tensor<double> k2(tensor_shape{2, 1, 6, 6});
  CHECK_THROWS_AS(bounds::diagnose(dense{}, hp.q.view(), k5.view()), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::diagnose(dense{}, hp.q.view(), k2.view()), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::diagnose(top_k(7), hp.q.view(), hp.k.view()), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::diagnose(banded(7), hp.q.view(), hp.k.view()),
                  semfocus::invalid_argument);
  for (const double bad : {nan_v, inf}) {
    CHECK_THROWS_AS(bounds::diagnose(dense{}, hp.q.view(), hp.k.view(), {.scale = bad}),
                    semfocus::invalid_argument);
  }
}

TEST_CASE("bounds: summarize pools diagnostics") {
  const hand_problem<double> hp;
  const auto q = hp.q.view();
  const auto k = hp.k.view();
  const std::array<bounds::attention_diagnostics, 2> both = {
      bounds::diagnose(top_k(2), q, k, unit_scale),
      bounds::diagnose(absolute_threshold(2), q, k, unit_scale)};
  const bounds::diagnostics_summary s = bounds::summarize(both);

  // dispersion: the 6 top-k rows and the 4 non-empty absolute-threshold rows (rows 2 and 5 are
  // empty and excluded). Sorted: 0 0.25 1 1 1 1 2 4 4.5 5.
  CHECK(s.dispersion.count == 10);
  CHECK(s.dispersion.at(0.0) == 0.0);
  CHECK(s.dispersion.at(0.1) == doctest::Approx(0.225).epsilon(1e-14));  // h 0.9
  CHECK(s.dispersion.at(0.25) == doctest::Approx(1.0).epsilon(1e-14));   // h 2.25
  CHECK(s.dispersion.at(0.5) == doctest::Approx(1.0).epsilon(1e-14));    // h 4.5
  CHECK(s.dispersion.at(0.75) == doctest::Approx(3.5).epsilon(1e-14));   // h 6.75
  CHECK(s.dispersion.at(0.9) == doctest::Approx(4.55).epsilon(1e-14));   // h 8.1
  CHECK(s.dispersion.at(1.0) == 5.0);
  // separation, same rows (the empty rows' +inf is excluded): 0 0.5 0.5 0.75 1 1 1 1.5 2 10.
  CHECK(s.separation.count == 10);
  CHECK(s.separation.at(0.0) == 0.0);
  CHECK(s.separation.at(0.25) == doctest::Approx(0.5625).epsilon(1e-14));  // h 2.25
  CHECK(s.separation.at(0.5) == doctest::Approx(1.0).epsilon(1e-14));
  CHECK(s.separation.at(0.95) == doctest::Approx(6.4).epsilon(1e-14));  // h 8.55
  CHECK(s.separation.at(1.0) == 10.0);
  // dispersion_all pools every row: {0 3.5 7 7 10 20} twice.
  CHECK(s.dispersion_all.count == 12);
  CHECK(s.dispersion_all.at(0.1) == doctest::Approx(0.35).epsilon(1e-14));  // h 1.1
  CHECK(s.dispersion_all.at(0.25) == doctest::Approx(3.5).epsilon(1e-14));  // h 2.75
  CHECK(s.dispersion_all.at(0.5) == doctest::Approx(7.0).epsilon(1e-14));
  CHECK(s.dispersion_all.at(0.9) == doctest::Approx(19.0).epsilon(1e-14));  // h 9.9
  CHECK(s.dispersion_all.at(1.0) == 20.0);
  // sink counts of every key: {2 3 0 3 3 1} and {2 1 3 3 3 1}.
  CHECK(s.sink_count.count == 12);
  CHECK(s.sink_count.at(0.0) == 0.0);
  CHECK(s.sink_count.at(0.25) == doctest::Approx(1.0).epsilon(1e-14));
  CHECK(s.sink_count.at(0.5) == doctest::Approx(2.5).epsilon(1e-14));
  CHECK(s.sink_count.at(0.75) == doctest::Approx(3.0).epsilon(1e-14));
  CHECK(s.sink_count.at(1.0) == 3.0);

  // One object: threshold's separation includes the +inf of row 2 (keeps everything).
  const bounds::diagnostics_summary t =
      bounds::summarize(bounds::diagnose(threshold(2.5), q, k, unit_scale));
  CHECK(t.separation.count == 6);
  CHECK(t.separation.at(1.0) == inf);
  CHECK(t.separation.at(0.5) == doctest::Approx(2.5).epsilon(1e-14));  // 1.5 2 2 3 4.5 inf
  CHECK(t.separation.at(0.95) == inf);
  CHECK(t.dispersion.at(0.5) == doctest::Approx(2.0).epsilon(1e-14));  // 0 0 2 2 2 2

  // Every row empty: dispersion and separation have nothing to pool.
  const bounds::diagnostics_summary e =
      bounds::summarize(bounds::diagnose(absolute_threshold(100), q, k, unit_scale));
  CHECK(e.dispersion.count == 0);
  CHECK(e.separation.count == 0);
  CHECK(std::isnan(e.dispersion.at(0.5)));
  CHECK(std::isnan(e.separation.at(0.0)));
  CHECK(e.dispersion_all.count == 6);
  CHECK(e.sink_count.count == 6);
  CHECK(e.sink_count.at(1.0) == 0.0);
  // ... so the stability table has no delta_h to work with.
  const bounds::diagnostics_summary full =
      bounds::summarize(bounds::diagnose(dense{}, q, k, unit_scale));
  CHECK_THROWS_AS(bounds::stability_table(full, e, 2), semfocus::invalid_argument);

  // Pooling random heads: counts add up and the extremes are those of the parts.
  const problem<double> p1({2, 2, 4, 6, 3, 2}, 5), p2({1, 3, 3, 5, 3, 2}, 6);
  const std::array<bounds::attention_diagnostics, 2> rnd = {
      bounds::diagnose(top_k(2), p1.q.view(), p1.k.view()),
      bounds::diagnose(top_k(2), p2.q.view(), p2.k.view())};
  const bounds::diagnostics_summary r = bounds::summarize(rnd);
  CHECK(r.dispersion.count == 16 + 9);
  CHECK(r.sink_count.count == 24 + 15);
  double dmax = 0, smin = inf;
  for (const auto& d : rnd) {
    dmax = std::max(dmax, *std::max_element(d.dispersion.begin(), d.dispersion.end()));
    smin = std::min(smin, *std::min_element(d.separation.begin(), d.separation.end()));
  }
  CHECK(r.dispersion.at(1.0) == dmax);
  CHECK(r.separation.at(0.0) == smin);
}

// ================================================================================================
// Norms

TEST_CASE("bounds: spectral_norm agrees with the SVD") {
  struct mcase {
    const char* name;
    Eigen::MatrixXd m;
  };
  const Eigen::VectorXd u = gaussian_vec(7, 3), v = gaussian_vec(4, 4);
  const std::vector<mcase> cases = {
      {"5 x 3", gaussian(5, 3, 11)},
      {"3 x 7", gaussian(3, 7, 12)},
      {"1 x 6", gaussian(1, 6, 13)},
      {"6 x 1", gaussian(6, 1, 14)},
      {"8 x 8", gaussian(8, 8, 15)},
      {"1 x 1", gaussian(1, 1, 16)},
      {"rank 1", u * v.transpose()},
      {"scaled 12 x 9", 1e3 * gaussian(12, 9, 17)},
      {"diag", Eigen::Vector3d(1, -4, 2).asDiagonal().toDenseMatrix()},
  };
  for (const mcase& c : cases) {
    CAPTURE(c.name);
    const bounds::power_result r = bounds::spectral_norm(c.m);
    const double ref = svd_norm(c.m);
    CHECK(r.converged);
    CHECK(r.iterations >= 1);
    CHECK(r.value == doctest::Approx(ref).epsilon(1e-7));
    CHECK(r.value <= ref * (1 + 1e-12));  // ||A v|| for a unit v never exceeds ||A||
    REQUIRE(r.vector.size() == c.m.cols());
    CHECK(r.vector.norm() == doctest::Approx(1.0).epsilon(1e-12));
    CHECK((c.m * r.vector).norm() == doctest::Approx(r.value).epsilon(1e-12));
  }
  CHECK(bounds::spectral_norm(u * v.transpose()).value ==
        doctest::Approx(u.norm() * v.norm()).epsilon(1e-10));
  CHECK(bounds::spectral_norm(Eigen::Vector3d(1, -4, 2).asDiagonal().toDenseMatrix()).value ==
        doctest::Approx(4.0).epsilon(1e-8));

  const bounds::power_result z = bounds::spectral_norm(Eigen::MatrixXd::Zero(4, 3));
  CHECK(z.value == 0.0);
  CHECK(z.iterations == 1);
  CHECK(z.converged);

  CHECK_THROWS_AS(bounds::spectral_norm(Eigen::MatrixXd(0, 3)), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::spectral_norm(Eigen::MatrixXd(2, 0)), semfocus::invalid_argument);
}

TEST_CASE("bounds: power_iteration on a matrix-free map") {
  // First differences D x = (x_{t+1} - x_t), n - 1 outputs: D^T D is the path Laplacian with
  // eigenvalues 2 - 2 cos(pi m / n), so ||D|| = 2 sin(pi (n - 1) / (2 n)).
  const index_t n = 6;
  const auto apply = [](const Eigen::VectorXd& x) -> Eigen::VectorXd {
    Eigen::VectorXd y(x.size() - 1);
    for (Eigen::Index t = 0; t + 1 < x.size(); ++t) y[t] = x[t + 1] - x[t];
    return y;
  };
  const auto apply_t = [](const Eigen::VectorXd& y) -> Eigen::VectorXd {
    Eigen::VectorXd x = Eigen::VectorXd::Zero(y.size() + 1);
    for (Eigen::Index t = 0; t < y.size(); ++t) {
      x[t + 1] += y[t];
      x[t] -= y[t];
    }
    return x;
  };
  const double expected = 2 * std::sin(std::numbers::pi * double(n - 1) / double(2 * n));
  const bounds::power_result r = bounds::power_iteration(apply, apply_t, n);
  CHECK(r.converged);
  CHECK(r.iterations > 1);
  CHECK(r.value == doctest::Approx(expected).epsilon(1e-7));
  CHECK(r.value <= expected * (1 + 1e-12));

  // Capped: not converged, iterations = the cap, still a lower bound.
  const bounds::power_result capped =
      bounds::power_iteration(apply, apply_t, n, {.tolerance = 1e-14, .max_iterations = 3});
  CHECK_FALSE(capped.converged);
  CHECK(capped.iterations == 3);
  CHECK(capped.value <= expected * (1 + 1e-12));
  CHECK(capped.value > 0);

  // The seed picks the start vector; either converges to the same value.
  const bounds::power_result other = bounds::power_iteration(apply, apply_t, n, {.seed = 99});
  CHECK(other.value == doctest::Approx(expected).epsilon(1e-7));

  CHECK_THROWS_AS(bounds::power_iteration(apply, apply_t, 0), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::power_iteration(apply, apply_t, n, {.tolerance = 0}),
                  semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::power_iteration(apply, apply_t, n, {.max_iterations = 0}),
                  semfocus::invalid_argument);
}

TEST_CASE("bounds: augmented puts the bias in the last column") {
  const Eigen::MatrixXd w = gaussian(3, 4, 21);
  const Eigen::VectorXd b = gaussian_vec(3, 22);
  const Eigen::MatrixXd a = bounds::augmented(w, b);
  REQUIRE(a.rows() == 3);
  REQUIRE(a.cols() == 5);
  for (Eigen::Index r = 0; r < 3; ++r) {
    for (Eigen::Index c = 0; c < 4; ++c) CHECK(a(r, c) == w(r, c));
    CHECK(a(r, 4) == b(r));
  }
  // y = [W | b] [x; 1] = W x + b.
  const Eigen::VectorXd x = gaussian_vec(4, 23);
  Eigen::VectorXd x1(5);
  x1 << x, 1.0;
  CHECK(((a * x1) - (w * x + b)).norm() <= 1e-12);
  CHECK_THROWS_AS(bounds::augmented(w, gaussian_vec(4, 24)), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::augmented(w, Eigen::VectorXd(0)), semfocus::invalid_argument);
}

TEST_CASE("bounds: attention_layer_norms bound every score of LayerNorm tokens") {
  const Eigen::Index d_model = 8, d_head = 4, d_mlp = 6, n_tokens = 24;
  bounds::layer_weights w;
  w.wq = gaussian(d_head, d_model, 31) * 0.4;
  w.wk = gaussian(d_head, d_model, 32) * 0.4;
  w.wv = gaussian(d_head, d_model, 33) * 0.4;
  w.w1 = gaussian(d_mlp, d_model, 34) * 0.4;
  w.w2 = gaussian(d_model, d_mlp, 35) * 0.4;
  w.bq = gaussian_vec(d_head, 36);
  w.bk = gaussian_vec(d_head, 37);
  w.bv = gaussian_vec(d_head, 38);
  w.b1 = gaussian_vec(d_mlp, 39);
  w.b2 = gaussian_vec(d_model, 40);
  const double scale = 1 / std::sqrt(double(d_head));
  const double xi = bounds::layernorm_xi(index_t(d_model));
  CHECK(xi == doctest::Approx(3.0).epsilon(1e-15));  // sqrt(8 + 1)
  CHECK(bounds::layernorm_xi(64) == doctest::Approx(std::sqrt(65.0)).epsilon(1e-15));

  const bounds::layer_norms ln = bounds::attention_layer_norms(w, scale, xi);
  const Eigen::MatrixXd qa = with_bias(w.wq, w.bq), ka = with_bias(w.wk, w.bk);
  const double gamma_ref = svd_norm(scale * qa.transpose() * ka);
  CHECK(ln.gamma.converged);
  CHECK(ln.gamma.value == doctest::Approx(gamma_ref).epsilon(1e-7));
  CHECK(ln.gamma.value <= gamma_ref * (1 + 1e-12));
  CHECK(ln.gamma.value <= scale * svd_norm(qa) * svd_norm(ka) * (1 + 1e-12));
  CHECK(ln.upsilon.value == doctest::Approx(svd_norm(with_bias(w.wv, w.bv))).epsilon(1e-7));
  CHECK(ln.b1.value == doctest::Approx(svd_norm(with_bias(w.w1, w.b1))).epsilon(1e-7));
  CHECK(ln.b2.value == doctest::Approx(svd_norm(with_bias(w.w2, w.b2))).epsilon(1e-7));
  CHECK(ln.upsilon.converged);
  CHECK(ln.b1.converged);
  CHECK(ln.b2.converged);
  CHECK(ln.xi == xi);
  CHECK(ln.worst_case_dispersion == doctest::Approx(2 * ln.gamma.value * 9.0).epsilon(1e-15));

  // Tokens after a LayerNorm without affine parameters: zero mean, unit (population) variance,
  // so ||[x; 1]|| = sqrt(d_model + 1) = xi.
  Eigen::MatrixXd x = gaussian(n_tokens, d_model, 41);
  for (Eigen::Index t = 0; t < n_tokens; ++t) {
    x.row(t).array() -= x.row(t).mean();
    x.row(t) /= std::sqrt(x.row(t).squaredNorm() / double(d_model));
    CHECK(std::sqrt(x.row(t).squaredNorm() + 1) == doctest::Approx(xi).epsilon(1e-12));
  }
  double worst_ratio = 0, worst_dispersion = 0;
  for (Eigen::Index i = 0; i < n_tokens; ++i) {
    const Eigen::VectorXd qi = w.wq * x.row(i).transpose() + w.bq;
    double lo = inf, hi = -inf;
    for (Eigen::Index j = 0; j < n_tokens; ++j) {
      const Eigen::VectorXd kj = w.wk * x.row(j).transpose() + w.bk;
      const double s = scale * qi.dot(kj);
      const double bound = ln.gamma.value * std::sqrt(x.row(i).squaredNorm() + 1) *
                           std::sqrt(x.row(j).squaredNorm() + 1);
      CHECK(std::abs(s) <= bound * (1 + 1e-9));
      worst_ratio = std::max(worst_ratio, std::abs(s) / bound);
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
    CHECK(hi - lo <= ln.worst_case_dispersion * (1 + 1e-9));
    worst_dispersion = std::max(worst_dispersion, hi - lo);
  }
  CHECK(worst_ratio > 0.05);  // the bound is not vacuous on these tokens
  CHECK(worst_dispersion > 0);

  // No MLP: b1, b2 stay zero.
  bounds::layer_weights attn_only = w;
  attn_only.w1.resize(0, 0);
  attn_only.w2.resize(0, 0);
  const bounds::layer_norms la = bounds::attention_layer_norms(attn_only, 0.7, 2.0);
  CHECK(la.b1.value == 0.0);
  CHECK(la.b1.iterations == 0);
  CHECK(la.b2.value == 0.0);
  CHECK(la.gamma.value == doctest::Approx(0.7 / scale * gamma_ref).epsilon(1e-7));
  CHECK(la.worst_case_dispersion == doctest::Approx(8 * la.gamma.value).epsilon(1e-15));
}

TEST_CASE("bounds: attention_layer_norms rejects bad shapes and arguments") {
  bounds::layer_weights w;
  w.wq = gaussian(2, 3, 51);
  w.wk = gaussian(2, 3, 52);
  w.wv = gaussian(2, 3, 53);
  w.bq = gaussian_vec(2, 54);
  w.bk = gaussian_vec(2, 55);
  w.bv = gaussian_vec(2, 56);
  CHECK_NOTHROW(bounds::attention_layer_norms(w, 0.5, 2.0));
  CHECK_NOTHROW(bounds::attention_layer_norms(w, 0.5, 0.0));
  for (const double bad : {nan_v, inf, -inf}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(bounds::attention_layer_norms(w, bad, 2.0), semfocus::invalid_argument);
    CHECK_THROWS_AS(bounds::attention_layer_norms(w, 0.5, bad), semfocus::invalid_argument);
  }
  CHECK_THROWS_AS(bounds::attention_layer_norms(w, 0.5, -1e-3), semfocus::invalid_argument);
  {
    bounds::layer_weights b = w;
    b.wk = gaussian(3, 3, 57);  // rows differ from wq
    CHECK_THROWS_AS(bounds::attention_layer_norms(b, 0.5, 2.0), semfocus::invalid_argument);
  }
  {
    bounds::layer_weights b = w;
    b.wk = gaussian(2, 4, 58);  // columns differ from wq
    CHECK_THROWS_AS(bounds::attention_layer_norms(b, 0.5, 2.0), semfocus::invalid_argument);
  }
  {
    bounds::layer_weights b = w;
    b.wq.resize(0, 0);
    b.wk.resize(0, 0);
    CHECK_THROWS_AS(bounds::attention_layer_norms(b, 0.5, 2.0), semfocus::invalid_argument);
  }
  {
    bounds::layer_weights b = w;
    b.wv = gaussian(2, 4, 59);  // not d_model columns
    CHECK_THROWS_AS(bounds::attention_layer_norms(b, 0.5, 2.0), semfocus::invalid_argument);
  }
  {
    bounds::layer_weights b = w;
    b.bq = gaussian_vec(3, 60);  // bias of the wrong size
    CHECK_THROWS_AS(bounds::attention_layer_norms(b, 0.5, 2.0), semfocus::invalid_argument);
  }
  {
    bounds::layer_weights b = w;
    b.w1 = gaussian(4, 3, 61);
    b.b1 = gaussian_vec(3, 62);  // MLP bias of the wrong size
    CHECK_THROWS_AS(bounds::attention_layer_norms(b, 0.5, 2.0), semfocus::invalid_argument);
  }
  CHECK_THROWS_AS(bounds::layernorm_xi(0), semfocus::invalid_argument);
  CHECK_THROWS_AS(bounds::layernorm_xi(-3), semfocus::invalid_argument);
}

// ================================================================================================
// Stability

TEST_CASE("bounds: log stability constants match the paper's formulas") {
  for (const double ds : {0.0, 0.3, 2.0, 8.61, 87.8})
    for (const double dh : {0.0, 0.25, 3.51})
      for (const double sep : {1e-3, 0.016, 1.0, 7.0})
        for (const double beta : {0.0, 0.2, 3.0, 119.6}) {
          CAPTURE(ds);
          CAPTURE(dh);
          CAPTURE(sep);
          CAPTURE(beta);
          CHECK(bounds::log_lambda_w_full(ds) == ds);
          CHECK(bounds::log_lambda_w_topk(dh, sep) ==
                doctest::Approx(std::log(2 * (1 + 1 / sep)) + dh).epsilon(1e-14));
          CHECK(bounds::log_lambda_x_full(ds) ==
                doctest::Approx(ds + std::log(1 + ds)).epsilon(1e-14));
          if (ds > 0 || beta > 0)
            CHECK(bounds::log_lambda_x_topk(dh, ds, sep, beta) ==
                  doctest::Approx(dh + std::log(beta + ds * (1 + beta) * (1 + 1 / sep)))
                      .epsilon(1e-14));
          // The constants themselves, where they fit in a double.
          if (ds < 50) {
            CHECK(std::exp(bounds::log_lambda_w_full(ds)) ==
                  doctest::Approx(std::exp(ds)).epsilon(1e-12));
            CHECK(std::exp(bounds::log_lambda_x_full(ds)) ==
                  doctest::Approx(std::exp(ds) * (1 + ds)).epsilon(1e-12));
          }
          CHECK(std::exp(bounds::log_lambda_w_topk(dh, sep)) ==
                doctest::Approx(2 * (1 + 1 / sep) * std::exp(dh)).epsilon(1e-12));
        }
  // Separation floored at 1e-9: 0 behaves as 1e-9, and stays finite.
  CHECK(bounds::log_lambda_w_topk(1.0, 0.0) == bounds::log_lambda_w_topk(1.0, 1e-9));
  CHECK(bounds::log_lambda_w_topk(1.0, 0.0) ==
        doctest::Approx(std::log(2 * (1 + 1e9)) + 1.0).epsilon(1e-14));
  CHECK(bounds::log_lambda_x_topk(1.0, 2.0, 0.0, 0.5) ==
        bounds::log_lambda_x_topk(1.0, 2.0, 1e-9, 0.5));
  CHECK(std::isfinite(bounds::log_lambda_x_topk(1.0, 2.0, 0.0, 0.5)));
  // Large dispersions do not overflow in log form.
  CHECK(bounds::log_lambda_x_full(800.0) == doctest::Approx(800 + std::log(801.0)).epsilon(1e-14));
}

TEST_CASE("bounds: stability_conditions are the paper's LHS_W and LHS_X") {
  for (const double ds : {0.5, 2.03, 8.61, 29.4})
    for (const double dh : {0.0, 1.03, 6.74})
      for (const double sep : {1e-9, 0.002, 0.5, 3.0})
        for (const double count : {0.0, 1.0, 15.0, 598.0})
          for (const index_t k : {index_t(1), index_t(5), index_t(9)}) {
            CAPTURE(ds);
            CAPTURE(dh);
            CAPTURE(sep);
            CAPTURE(count);
            CAPTURE(k);
            const bounds::stability_lhs lhs = bounds::stability_conditions(ds, dh, sep, count, k);
            const double beta = count / double(k);
            CHECK(lhs.w == doctest::Approx(paper_lhs_w(ds, dh, sep)).epsilon(1e-12));
            CHECK(lhs.x == doctest::Approx(paper_lhs_x(ds, dh, sep, beta)).epsilon(1e-12));
          }
}

TEST_CASE("bounds: LHS < 1 exactly when top-k has the smaller stability constant") {
  int agree_w = 0, agree_x = 0, below_w = 0, below_x = 0;
  for (const double ds : {0.2, 0.5, 1.0, 3.0, 10.0, 40.0, 90.0})
    for (const double dh : {0.0, 0.1, 0.5, 2.0, 8.0, 30.0})
      for (const double sep : {1e-6, 1e-3, 0.05, 0.5, 2.0, 20.0})
        for (const double count : {0.0, 1.0, 4.0, 25.0}) {
          const index_t k = 5;
          const double beta = count / 5.0;
          // ln lambda, written out from PAPER.md.
          const double lw_full = ds, lw_top = std::log(2 * (1 + 1 / sep)) + dh;
          const double lx_full = ds + std::log(1 + ds);
          const double lx_top = dh + std::log(beta + ds * (1 + beta) * (1 + 1 / sep));
          const bounds::stability_lhs lhs = bounds::stability_conditions(ds, dh, sep, count, k);
          CAPTURE(ds);
          CAPTURE(dh);
          CAPTURE(sep);
          CAPTURE(count);
          if (std::abs(lw_top - lw_full) > 1e-9) {
            CHECK((lhs.w < 1) == (lw_top < lw_full));
            ++agree_w;
            below_w += lhs.w < 1;
          }
          if (std::abs(lx_top - lx_full) > 1e-9) {
            CHECK((lhs.x < 1) == (lx_top < lx_full));
            ++agree_x;
            below_x += lhs.x < 1;
          }
          // LHS - 1 is the log ratio over delta_s.
          CHECK(lhs.w - 1 == doctest::Approx((lw_top - lw_full) / ds).epsilon(1e-10));
          CHECK(lhs.x - 1 == doctest::Approx((lx_top - lx_full) / ds).epsilon(1e-10));
        }
  // The grid has both outcomes for both conditions.
  CHECK(below_w > 0);
  CHECK(below_w < agree_w);
  CHECK(below_x > 0);
  CHECK(below_x < agree_x);
}

TEST_CASE("bounds: stability_conditions floors and argument errors") {
  // Delta = 0 behaves as Delta = 1e-9 and is finite.
  const bounds::stability_lhs z = bounds::stability_conditions(8.0, 3.0, 0.0, 4.0, 5);
  const bounds::stability_lhs f = bounds::stability_conditions(8.0, 3.0, 1e-9, 4.0, 5);
  CHECK(std::isfinite(z.w));
  CHECK(std::isfinite(z.x));
  CHECK(z.w == f.w);
  CHECK(z.x == f.x);
  CHECK(z.w == doctest::Approx(3.0 / 8 + std::log(2 * (1 + 1e9)) / 8).epsilon(1e-12));
  // A Delta smaller than the floor is floored too.
  const bounds::stability_lhs tiny = bounds::stability_conditions(8.0, 3.0, 1e-15, 4.0, 5);
  CHECK(tiny.w == f.w);
  CHECK(tiny.x == f.x);
  // delta_s = 0 is floored as well: finite, equal to delta_s = 1e-9.
  const bounds::stability_lhs zs = bounds::stability_conditions(0.0, 0.0, 0.5, 1.0, 5);
  const bounds::stability_lhs fs = bounds::stability_conditions(1e-9, 0.0, 0.5, 1.0, 5);
  CHECK(std::isfinite(zs.w));
  CHECK(std::isfinite(zs.x));
  CHECK(zs.w == fs.w);
  CHECK(zs.x == fs.x);

  using semfocus::invalid_argument;
  CHECK_THROWS_AS(bounds::stability_conditions(-1.0, 1.0, 0.5, 1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, -1.0, 0.5, 1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, -0.5, 1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, 0.5, -1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(nan_v, 1.0, 0.5, 1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, nan_v, 0.5, 1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, nan_v, 1.0, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, 0.5, nan_v, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, 0.5, inf, 5), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, 0.5, 1.0, 0), invalid_argument);
  CHECK_THROWS_AS(bounds::stability_conditions(1.0, 1.0, 0.5, 1.0, -2), invalid_argument);
}

TEST_CASE("bounds: stability_table reads the quantile pairings of real summaries") {
  // Full = dense, top-k = top_k(2) on the hand example.
  //   dense dispersions 0 3.5 7 7 10 20; top-2 dispersions 0 0.25 1 1 1 4.5;
  //   top-2 separations 0 0.5 0.75 1 1 1; sink counts 0 1 2 3 3 3.
  const hand_problem<double> hp;
  const auto full =
      bounds::summarize(bounds::diagnose(dense{}, hp.q.view(), hp.k.view(), unit_scale));
  const auto topk =
      bounds::summarize(bounds::diagnose(top_k(2), hp.q.view(), hp.k.view(), unit_scale));
  const auto table = bounds::stability_table(full, topk, 2);
  struct row {
    double high, low, ds, dh, sep, count;
  };
  const std::array<row, 4> expected = {{
      {0.75, 0.25, 9.25, 1.0, 0.5625, 3.0},   // h = 3.75 and 1.25
      {0.90, 0.10, 15.0, 2.75, 0.25, 3.0},    // h = 4.5 and 0.5
      {0.95, 0.05, 17.5, 3.625, 0.125, 3.0},  // h = 4.75 and 0.25
      {1.00, 0.00, 20.0, 4.5, 0.0, 3.0},
  }};
  for (std::size_t x = 0; x < 4; ++x) {
    CAPTURE(x);
    const bounds::stability_row& r = table[x];
    const row& e = expected[x];
    CHECK(r.high == doctest::Approx(e.high).epsilon(1e-12));
    CHECK(r.low == doctest::Approx(e.low).epsilon(1e-12));
    CHECK(r.delta_s == doctest::Approx(e.ds).epsilon(1e-12));
    CHECK(r.delta_h == doctest::Approx(e.dh).epsilon(1e-12));
    CHECK(r.separation == doctest::Approx(e.sep).epsilon(1e-12));
    CHECK(r.beta_count == doctest::Approx(e.count).epsilon(1e-12));
    CHECK(r.lhs.w == doctest::Approx(paper_lhs_w(e.ds, e.dh, e.sep)).epsilon(1e-12));
    CHECK(r.lhs.x == doctest::Approx(paper_lhs_x(e.ds, e.dh, e.sep, e.count / 2)).epsilon(1e-12));
  }
}

TEST_CASE("bounds: stability_table reproduces the paper's Table 6") {
  // PAPER.md, Table 6 (k = 5): quantiles 75/90/95/100 of delta_s, delta_h and the sink count,
  // paired with 25/10/5/0 of Delta_h.
  //
  // Result (printed below): LHS_W and LHS_X are both >= 1 for Parity 100|0, Even Pairs at every
  // pairing (75|25: 3.17 / 3.02, 90|10: 1.98 / 2.10, 95|5: 1.31 / 1.42, 100|0: 1.80 / 1.90) and
  // Missing Dup. 75|25 (1.53 / 1.53), 90|10 (1.09 / 1.15) and 100|0 (1.14 / 1.20); both are < 1
  // for every ListOps pairing, Parity 75|25, 90|10, 95|5 and Missing Dup. 95|5.
  struct task {
    const char* name;
    std::array<double, 4> delta_s, delta_h, sep, count;
    std::array<bool, 4> w_below, x_below;  // expected LHS < 1 per pairing
  };
  const std::array<task, 4> tasks = {{
      {"ListOps",
       {8.61, 18.5, 29.4, 87.8},
       {3.51, 6.74, 9.67, 28.2},
       {0.016, 0.005, 0.002, 1e-9},
       {1, 3, 15, 598},
       {true, true, true, true},
       {true, true, true, true}},
      {"Parity",
       {8.30, 10.1, 11.2, 19.4},
       {2.31, 3.13, 3.78, 9.16},
       {0.062, 0.022, 0.011, 1e-6},
       {8, 13, 16, 33},
       {true, true, true, false},
       {true, true, true, false}},
      {"Even Pairs",
       {2.03, 4.73, 9.44, 14.6},
       {1.03, 2.84, 5.50, 8.25},
       {0.009, 0.003, 0.002, 3e-8},
       {6, 17, 26, 40},
       {false, false, false, false},
       {false, false, false, false}},
      {"Missing Dup.",
       {4.63, 9.25, 17.1, 23.9},
       {2.36, 4.25, 4.88, 10.5},
       {0.018, 0.006, 0.003, 1e-7},
       {7, 15, 21, 40},
       {false, false, true, false},
       {false, false, true, false}},
  }};
  constexpr std::array<double, 4> highs = {0.75, 0.90, 0.95, 1.0};
  constexpr std::array<double, 4> lows = {0.25, 0.10, 0.05, 0.0};
  constexpr std::array<const char*, 4> pairing = {"75|25", "90|10", "95|5", "100|0"};
  const index_t k = 5;

  std::ostringstream table;
  table << "\n| task | quantiles | delta_s | delta_h | Delta_h | beta count | LHS_W | LHS_X |\n"
        << "|---|---|---|---|---|---|---|---|\n";
  for (const task& t : tasks) {
    bounds::diagnostics_summary full, topk;
    for (std::size_t x = 0; x < 4; ++x) {
      full.dispersion.set(highs[x], t.delta_s[x]);
      topk.dispersion.set(highs[x], t.delta_h[x]);
      topk.separation.set(lows[x], t.sep[x]);
      topk.sink_count.set(highs[x], t.count[x]);
    }
    const std::array<bounds::stability_row, 4> rows = bounds::stability_table(full, topk, k);
    for (std::size_t x = 0; x < 4; ++x) {
      CAPTURE(t.name);
      CAPTURE(pairing[x]);
      const bounds::stability_row& r = rows[x];
      CHECK(r.high == doctest::Approx(highs[x]).epsilon(1e-12));
      CHECK(r.low == doctest::Approx(lows[x]).epsilon(1e-12));
      CHECK(r.delta_s == t.delta_s[x]);
      CHECK(r.delta_h == t.delta_h[x]);
      CHECK(r.separation == t.sep[x]);
      CHECK(r.beta_count == t.count[x]);
      // Written out from PAPER.md: c1 = delta_h / delta_s, beta = count / k, Delta floored.
      const double ds = t.delta_s[x], dh = t.delta_h[x];
      const double sep = std::max(t.sep[x], 1e-9), beta = t.count[x] / 5.0;
      const double lhs_w = dh / ds + std::log(2 * (1 + 1 / sep)) / ds;
      const double lhs_x =
          dh / ds + (std::log(ds * (1 + beta) * (1 + 1 / sep) + beta) - std::log(1 + ds)) / ds;
      CHECK(r.lhs.w == doctest::Approx(lhs_w).epsilon(1e-12));
      CHECK(r.lhs.x == doctest::Approx(lhs_x).epsilon(1e-12));
      CHECK((r.lhs.w < 1) == t.w_below[x]);
      CHECK((r.lhs.x < 1) == t.x_below[x]);
      table << "| " << t.name << " | " << pairing[x] << " | " << ds << " | " << dh << " | "
            << t.sep[x] << " | " << t.count[x] << " | " << std::fixed << std::setprecision(4)
            << r.lhs.w << (r.lhs.w < 1 ? "" : " (>= 1)") << " | " << r.lhs.x
            << (r.lhs.x < 1 ? "" : " (>= 1)") << " |\n";
      table.unsetf(std::ios::floatfield);
      table << std::setprecision(6);
    }
  }
  MESSAGE(table.str());
}
