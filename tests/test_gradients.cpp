// SPDX-License-Identifier: MIT
// Backward of the reference backend against central finite differences of the forward, in double,
// for every built-in policy and the user policies of tests/support/custom_policy.hpp; structural
// zeros of the gradient; backward overwrites its outputs; float agrees with double.
//
// The kept set is a constant for differentiation, so finite differences only measure the analytic
// gradient where no score can cross a selection boundary during a step. For input-dependent
// policies every problem is drawn from a seed and rejected (the next seed is tried) unless every
// row is at least `selection_margin` away from changing its selection; a step of 1e-6 moves a score
// by at most a few 1e-6, so a margin of 1e-3 leaves a factor of more than 10.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <optional>
#include <random>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/finite_diff.hpp"
#include "support/margins.hpp"
#include "support/oracle.hpp"

using namespace semfocus;
using namespace semfocus::test;

namespace {

constexpr double fd_step = 1e-6;
constexpr double selection_margin = 1e-3;

/// Distance of one row of scaled scores from the boundary of its selection (how far a score may
/// move before the kept set changes; +inf when no move can change it).
using row_margin_fn = std::function<double(const std::vector<double>&)>;

double effective_scale(const attention_shape& s, const attention_options& opt) {
  return opt.scale ? *opt.scale : 1.0 / std::sqrt(static_cast<double>(s.d));
}

/// The smallest row margin over every score row (b, h, i) of `pr`, with the scores
/// s_ij = scale * q_i . k_j computed here, independently of the library.
double problem_margin(const problem<double>& pr, double scale, const row_margin_fn& row_margin) {
  const attention_shape& s = pr.shape;
  double worst = unbounded;
  std::vector<double> row(static_cast<std::size_t>(s.n_k));
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        test_scores(pr, b, h, i, scale, row);
        worst = std::min(worst, row_margin(row));
      }
  return worst;
}

/// The first problem of shape `s` from seeds seed, seed + 1000, ... whose every row is at least
/// `selection_margin` from its selection boundary; nullopt if none of 200 seeds qualifies.
std::optional<problem<double>> stable_problem(const attention_shape& s, double scale,
                                              std::uint64_t seed, const row_margin_fn& row_margin) {
  for (std::uint64_t attempt = 0; attempt < 200; ++attempt) {
    problem<double> pr(s, seed + 1000 * attempt);
    if (problem_margin(pr, scale, row_margin) >= selection_margin) return pr;
  }
  return std::nullopt;
}

// Row margins of the input-dependent policies.

/// threshold: every score other than the (unique) max at least the margin from max - tau, and the
/// max ahead of the second score by the margin. The max itself is always kept (s >= s - tau).
double threshold_gap(const std::vector<double>& s, double tau) {
  const auto top = std::max_element(s.begin(), s.end());
  const double floor = *top - tau;
  double m = unbounded;
  for (auto it = s.begin(); it != s.end(); ++it)
    if (it != top) m = std::min({m, std::abs(*it - floor), *top - *it});
  return m;
}

struct grad_case {
  attention_shape shape;
  attention_options opt;
  std::uint64_t seed;
};

const std::vector<grad_case>& grad_cases() {
  static const std::vector<grad_case> cases = {
      {{2, 2, 5, 7, 3, 4}, {}, 11},              // batch 2 x heads 2, n_q < n_k, d != d_v
      {{1, 2, 7, 5, 3, 4}, {}, 21},              // n_q > n_k
      {{1, 1, 6, 6, 4, 2}, {.scale = 0.7}, 31},  // custom scale
      {{2, 1, 4, 8, 2, 3}, {.scale = 0.7}, 41},  // custom scale, n_q < n_k
      {{1, 1, 1, 1, 2, 3}, {}, 51},              // n = 1
      {{1, 2, 1, 6, 3, 2}, {}, 61},              // a single query
  };
  return cases;
}

constexpr int problems_per_case = 4;  // independent random problems per shape

/// gradient_error of the policy make(shape) is <= 1 on random problems of every case.
template <class MakePolicy>
void check_fixed_policy(const MakePolicy& make) {
  for (const grad_case& c : grad_cases())
    for (int r = 0; r < problems_per_case; ++r) {
      const std::uint64_t seed = c.seed + 100 * std::uint64_t(r);
      CAPTURE(c.shape);
      CAPTURE(seed);
      const problem<double> pr(c.shape, seed);
      const auto p = make(c.shape);
      const double err = gradient_error(p, pr, fd_step, c.opt);
      CAPTURE(err);
      CHECK(err <= 1.0);
    }
}

/// As check_fixed_policy, on problems at least selection_margin from every selection boundary
/// (row_margin(policy, scores)).
template <class MakePolicy, class RowMargin>
void check_input_dependent_policy(const MakePolicy& make, const RowMargin& row_margin) {
  for (const grad_case& c : grad_cases())
    for (int r = 0; r < problems_per_case; ++r) {
      const std::uint64_t seed = c.seed + 100 * std::uint64_t(r);
      CAPTURE(c.shape);
      CAPTURE(seed);
      const auto p = make(c.shape);
      const auto pr =
          stable_problem(c.shape, effective_scale(c.shape, c.opt), seed,
                         [&](const std::vector<double>& s) { return row_margin(p, s); });
      REQUIRE(pr.has_value());
      const double err = gradient_error(p, *pr, fd_step, c.opt);
      CAPTURE(err);
      CHECK(err <= 1.0);
    }
}

index_t at_most(index_t k, index_t n) { return k < n ? k : n; }

bool all_finite(const std::vector<double>& xs) {
  return std::all_of(xs.begin(), xs.end(), [](double x) { return std::isfinite(x); });
}

}  // namespace

TEST_CASE("backward matches central finite differences for every input-agnostic policy") {
  SUBCASE("dense") {
    check_fixed_policy([](const attention_shape&) { return dense{}; });
  }
  SUBCASE("causal") {
    check_fixed_policy([](const attention_shape&) { return causal{}; });
  }
  SUBCASE("banded") {
    check_fixed_policy([](const attention_shape& s) { return banded(at_most(3, s.n_k)); });
  }
  SUBCASE("block_local") {
    check_fixed_policy([](const attention_shape&) { return block_local(2); });
  }
  SUBCASE("strided with a local window") {
    check_fixed_policy([](const attention_shape&) { return strided(3, 1); });
  }
  SUBCASE("global_tokens(banded)") {
    check_fixed_policy([](const attention_shape& s) {
      const index_t g = s.n_q >= 2 && s.n_k >= 2 ? 1 : 0;
      return global_tokens(banded(at_most(2, s.n_k - g)), g);
    });
  }
  SUBCASE("global_tokens(block_local)") {
    check_fixed_policy(
        [](const attention_shape& s) { return global_tokens(block_local(2), at_most(1, s.n_q)); });
  }
  SUBCASE("global_tokens(causal) and global_tokens(strided)") {
    check_fixed_policy(
        [](const attention_shape& s) { return global_tokens(causal{}, at_most(1, s.n_q)); });
    check_fixed_policy(
        [](const attention_shape& s) { return global_tokens(strided(2), at_most(1, s.n_q)); });
  }
  SUBCASE("explicit_mask, per head and broadcast over batch and heads") {
    std::list<tensor<std::uint8_t>> masks;  // outlive the policies that view them
    std::mt19937_64 gen(5);
    std::bernoulli_distribution keep(0.6);
    for (const bool broadcast : {false, true}) {
      CAPTURE(broadcast);
      check_fixed_policy([&](const attention_shape& s) {
        const tensor_shape ms{broadcast ? 1 : s.batch, broadcast ? 1 : s.heads, s.n_q, s.n_k};
        tensor<std::uint8_t>& m = masks.emplace_back(ms);
        for (std::uint8_t& x : m.data) x = keep(gen) ? 1 : 0;
        return explicit_mask(m.cview());
      });
    }
  }
  SUBCASE("random_k") {
    check_fixed_policy([](const attention_shape& s) { return random_k(at_most(3, s.n_k), 7); });
  }
  SUBCASE("user::same_parity") {
    check_fixed_policy([](const attention_shape&) { return user::same_parity{}; });
  }
}

TEST_CASE("backward matches central finite differences for every input-dependent policy") {
  SUBCASE("top_k") {
    check_input_dependent_policy(
        [](const attention_shape& s) { return top_k(at_most(3, s.n_k)); },
        [](const top_k& p, const std::vector<double>& s) { return rank_gap(s, p.k, true); });
  }
  SUBCASE("top_k(1)") {
    check_input_dependent_policy(
        [](const attention_shape&) { return top_k(1); },
        [](const top_k& p, const std::vector<double>& s) { return rank_gap(s, p.k, true); });
  }
  SUBCASE("bottom_k") {
    check_input_dependent_policy(
        [](const attention_shape& s) { return bottom_k(at_most(2, s.n_k)); },
        [](const bottom_k& p, const std::vector<double>& s) { return rank_gap(s, p.k, false); });
  }
  SUBCASE("threshold") {
    check_input_dependent_policy(
        [](const attention_shape&) { return threshold(1.0); },
        [](const threshold& p, const std::vector<double>& s) { return threshold_gap(s, p.tau); });
  }
  SUBCASE("absolute_threshold (rows may be empty)") {
    check_input_dependent_policy([](const attention_shape&) { return absolute_threshold(0.3); },
                                 [](const absolute_threshold& p, const std::vector<double>& s) {
                                   return absolute_gap(s, p.tau);
                                 });
  }
  SUBCASE("user::above_mean") {
    check_input_dependent_policy(
        [](const attention_shape&) { return user::above_mean{}; },
        [](const user::above_mean&, const std::vector<double>& s) { return mean_gap(s); });
  }
}

TEST_CASE(
    "the margin check rejects a problem whose selection flips within a finite-difference step") {
  // One query, two keys whose scores differ by about 1e-9: a step of 1e-6 on k flips top_k(1),
  // so the finite difference sees the jump v_0 - v_1 and disagrees with the analytic gradient
  // (which holds the kept set constant). The margin check must reject exactly this problem.
  const attention_shape s{1, 1, 1, 2, 1, 1};
  problem<double> pr(s, 3);
  pr.q(0, 0, 0, 0) = 1.0;
  pr.k(0, 0, 0, 0) = 0.5;
  pr.k(0, 0, 1, 0) = 0.5 + 1e-9;
  pr.v(0, 0, 0, 0) = 1.0;
  pr.v(0, 0, 1, 0) = -1.0;
  pr.d_out(0, 0, 0, 0) = 1.0;
  const top_k p(1);
  const double margin = problem_margin(
      pr, 1.0, [&](const std::vector<double>& row) { return rank_gap(row, p.k, true); });
  CHECK(margin < selection_margin);
  CHECK(gradient_error(p, pr, fd_step) > 1.0);
  // Moved apart, the same problem passes both.
  pr.k(0, 0, 1, 0) = 0.7;
  CHECK(problem_margin(pr, 1.0, [&](const std::vector<double>& row) {
          return rank_gap(row, p.k, true);
        }) >= selection_margin);
  CHECK(gradient_error(p, pr, fd_step) <= 1.0);
}

TEST_CASE("keys that no row keeps get exactly zero dK and dV") {
  SUBCASE("banded(2) with 3 queries over 8 keys keeps only keys 5..7") {
    const attention_shape s{2, 2, 3, 8, 3, 4};
    const problem<double> pr(s, 81);
    const index_t k = 2;
    // Kept union from the definition: row i, at key position p = i + n_k - n_q, keeps
    // [clamp(p - (k-1)/2, 0, n_k - k), + k).
    std::vector<bool> kept(std::size_t(s.n_k), false);
    for (index_t i = 0; i < s.n_q; ++i) {
      const index_t start = std::clamp<index_t>(i + s.n_k - s.n_q - (k - 1) / 2, 0, s.n_k - k);
      for (index_t j = start; j < start + k; ++j) kept[std::size_t(j)] = true;
    }
    const auto r = run_reference(banded(k), pr);
    for (index_t b = 0; b < s.batch; ++b)
      for (index_t h = 0; h < s.heads; ++h)
        for (index_t j = 0; j < s.n_k; ++j) {
          CAPTURE(j);
          bool any_dv = false;
          for (index_t c = 0; c < s.d_v; ++c) any_dv = any_dv || r.dv(b, h, j, c) != 0.0;
          CHECK(any_dv == kept[std::size_t(j)]);
          if (!kept[std::size_t(j)])
            for (index_t c = 0; c < s.d; ++c) CHECK(r.dk(b, h, j, c) == 0.0);
        }
    CHECK(std::count(kept.begin(), kept.end(), true) == 3);
    CHECK(gradient_error(banded(k), pr, fd_step) <= 1.0);
  }
  SUBCASE("block_local(3) with 4 queries over 8 keys: keys 0, 1, 2 are unseen") {
    // The queries sit at key positions 4..7: blocks {3, 4, 5} and {6, 7}.
    const attention_shape s{1, 2, 4, 8, 2, 3};
    const problem<double> pr(s, 82);
    const auto r = run_reference(block_local(3), pr);
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t j = 0; j < s.n_k; ++j) {
        CAPTURE(j);
        const bool kept = j >= 3;
        bool any_dv = false;
        for (index_t c = 0; c < s.d_v; ++c) any_dv = any_dv || r.dv(0, h, j, c) != 0.0;
        CHECK(any_dv == kept);
        if (!kept)
          for (index_t c = 0; c < s.d; ++c) CHECK(r.dk(0, h, j, c) == 0.0);
      }
  }
}

TEST_CASE("empty rows have exactly zero dQ and nothing is NaN") {
  SUBCASE("absolute_threshold: a zero query row scores 0 < tau and keeps nothing") {
    const attention_shape s{2, 2, 4, 6, 3, 2};
    problem<double> pr(s, 91);
    for (index_t c = 0; c < s.d; ++c) pr.q(1, 0, 2, c) = 0.0;
    const absolute_threshold p(0.5);
    const auto r = run_reference(p, pr);
    CHECK(r.record.lse[std::size_t(r.record.row_index(1, 0, 2))] == -INFINITY);
    for (index_t c = 0; c < s.d; ++c) CHECK(r.dq(1, 0, 2, c) == 0.0);
    for (index_t c = 0; c < s.d_v; ++c) CHECK(r.out(1, 0, 2, c) == 0.0);
    CHECK(all_finite(r.out.data));
    CHECK(all_finite(r.dq.data));
    CHECK(all_finite(r.dk.data));
    CHECK(all_finite(r.dv.data));
    // The other rows still have a gradient.
    CHECK(std::any_of(r.dq.data.begin(), r.dq.data.end(), [](double x) { return x != 0.0; }));
  }
  SUBCASE("absolute_threshold that keeps nothing anywhere: every gradient is exactly 0") {
    const attention_shape s{2, 1, 3, 5, 2, 3};
    const problem<double> pr(s, 92);
    const auto r = run_reference(absolute_threshold(1e9), pr);
    for (double x : r.record.lse) CHECK(x == -INFINITY);
    for (double x : r.out.data) CHECK(x == 0.0);
    for (double x : r.dq.data) CHECK(x == 0.0);
    for (double x : r.dk.data) CHECK(x == 0.0);
    for (double x : r.dv.data) CHECK(x == 0.0);
  }
  SUBCASE("causal and block_local with n_q > n_k: the rows that see no key") {
    const attention_shape s{1, 2, 7, 4, 3, 2};
    const problem<double> pr(s, 93);
    // kept_count(i): how many keys row i keeps. An empty row has lse -inf and dq exactly 0; so
    // has a row with one kept key (P = 1 there, dS = dP - dP = 0); other rows have a gradient.
    auto check_rows = [&](const auto& p, auto kept_count) {
      const auto r = run_reference(p, pr);
      for (index_t h = 0; h < s.heads; ++h)
        for (index_t i = 0; i < s.n_q; ++i) {
          CAPTURE(i);
          const index_t n = kept_count(i);
          CHECK((r.record.lse[std::size_t(r.record.row_index(0, h, i))] == -INFINITY) == (n == 0));
          bool any_dq = false;
          for (index_t c = 0; c < s.d; ++c) any_dq = any_dq || r.dq(0, h, i, c) != 0.0;
          CHECK(any_dq == (n >= 2));
          if (n == 0)
            for (index_t c = 0; c < s.d_v; ++c) CHECK(r.out(0, h, i, c) == 0.0);
        }
      CHECK(all_finite(r.out.data));
      CHECK(all_finite(r.dq.data));
      CHECK(all_finite(r.dk.data));
      CHECK(all_finite(r.dv.data));
      CHECK(gradient_error(p, pr, fd_step) <= 1.0);
    };
    // causal aligns the queries with the last n_q keys: row i keeps j <= i - 3.
    check_rows(causal{}, [](index_t i) -> index_t { return i < 3 ? 0 : i - 2; });
    // block_local(2): row i sits at key position i - 3; negative positions keep nothing, the
    // others keep their block of 2.
    check_rows(block_local(2), [](index_t i) -> index_t { return i < 3 ? 0 : 2; });
  }
}

TEST_CASE("a softmax over one kept key has exactly zero score gradient: top_k(1)") {
  // P = 1 on the single kept key, so dS = 1 * (dP - dP) = 0: dQ and dK vanish, dV does not.
  const attention_shape s{2, 2, 4, 6, 3, 2};
  const problem<double> pr(s, 101);
  const auto r = run_reference(top_k(1), pr);
  for (double x : r.dq.data) CHECK(x == 0.0);
  for (double x : r.dk.data) CHECK(x == 0.0);
  CHECK(std::any_of(r.dv.data.begin(), r.dv.data.end(), [](double x) { return x != 0.0; }));
  // dV_j is the sum of dO_i over the rows whose top score is key j (scores computed here).
  tensor<double> expected(s.v());
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        index_t best = 0;
        double best_score = -INFINITY;
        for (index_t j = 0; j < s.n_k; ++j) {
          double acc = 0;
          for (index_t c = 0; c < s.d; ++c) acc += pr.q(b, h, i, c) * pr.k(b, h, j, c);
          if (acc > best_score) best_score = acc, best = j;
        }
        for (index_t c = 0; c < s.d_v; ++c) expected(b, h, best, c) += pr.d_out(b, h, i, c);
      }
  CHECK(max_rel_diff(r.dv.data, expected.data) < 1e-15);
}

TEST_CASE("backward overwrites dq, dk and dv instead of accumulating into them") {
  auto check_overwrites = [](const auto& p, const attention_shape& s, std::uint64_t seed) {
    const problem<double> pr(s, seed);
    const auto fresh = run_reference(p, pr);  // outputs start at 0
    tensor<double> out(s.out(), -1e30);
    tensor<double> dq(s.q(), 1e30), dk(s.k(), NAN), dv(s.v(), -1e30);
    const auto rec = forward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view());
    backward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.cview(),
             pr.d_out.view(), rec, dq.view(), dk.view(), dv.view());
    CHECK(out.data == fresh.out.data);
    CHECK(dq.data == fresh.dq.data);
    CHECK(dk.data == fresh.dk.data);
    CHECK(dv.data == fresh.dv.data);
    // Twice into the same buffers: still the same values.
    backward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.cview(),
             pr.d_out.view(), rec, dq.view(), dk.view(), dv.view());
    CHECK(dq.data == fresh.dq.data);
    CHECK(dk.data == fresh.dk.data);
    CHECK(dv.data == fresh.dv.data);
  };
  SUBCASE("dense") { check_overwrites(dense{}, {2, 2, 5, 7, 3, 4}, 111); }
  SUBCASE("banded: keys nobody keeps") { check_overwrites(banded(2), {1, 2, 3, 8, 3, 2}, 112); }
  SUBCASE("absolute_threshold: empty rows") {
    check_overwrites(absolute_threshold(1e9), {1, 2, 3, 5, 2, 2}, 113);
  }
  SUBCASE("top_k") { check_overwrites(top_k(2), {2, 1, 4, 6, 3, 3}, 114); }
}

TEST_CASE("float forward and backward agree with double") {
  const attention_shape s{2, 2, 5, 7, 4, 3};
  // The same inputs in both types: float values, exactly representable in double.
  auto make_pair = [&](std::uint64_t seed) {
    const problem<float> pf(s, seed);
    problem<double> pd(s, seed);
    for (auto [dst, src] :
         {std::pair{&pd.q, &pf.q}, {&pd.k, &pf.k}, {&pd.v, &pf.v}, {&pd.d_out, &pf.d_out}})
      for (std::size_t x = 0; x < src->data.size(); ++x) dst->data[x] = double(src->data[x]);
    return std::pair{pf, pd};
  };
  auto compare = [&](const auto& p, const problem<float>& pf, const problem<double>& pd) {
    const auto rf = run_reference(p, pf);
    const auto rd = run_reference(p, pd);
    CHECK(max_rel_diff(rf.out.data, rd.out.data) < 1e-4);
    CHECK(max_rel_diff(rf.dq.data, rd.dq.data) < 1e-4);
    CHECK(max_rel_diff(rf.dk.data, rd.dk.data) < 1e-4);
    CHECK(max_rel_diff(rf.dv.data, rd.dv.data) < 1e-4);
    CHECK(max_rel_diff(rf.record.lse, rd.record.lse) < 1e-4);
    // The gradients are not trivially zero.
    CHECK(std::any_of(rd.dq.data.begin(), rd.dq.data.end(), [](double x) { return x != 0.0; }));
  };
  SUBCASE("dense") {
    const auto [pf, pd] = make_pair(121);
    compare(dense{}, pf, pd);
  }
  SUBCASE("top_k, away from near-ties so both types select the same keys") {
    const top_k p(3);
    const double scale = effective_scale(s, {});
    std::uint64_t seed = 122;
    for (int attempt = 0; attempt < 200; ++attempt, seed += 1000) {
      const auto [pf, pd] = make_pair(seed);
      if (problem_margin(pd, scale, [&](const std::vector<double>& row) {
            return rank_gap(row, p.k, true);
          }) < selection_margin)
        continue;
      CAPTURE(seed);
      compare(p, pf, pd);
      return;
    }
    FAIL("no seed gave a problem away from the top_k boundary");
  }
}
