// SPDX-License-Identifier: MIT
// The SIMD backend (exec::simd) against the reference backend, part 1 (part 2, the views, reuse
// and edge cases: test_simd_edges.cpp): every built-in and user policy in float and double,
// forward (out, log-sum-exp, row statistics, saved selections) and backward (dQ, dK, dV); exact
// selections on exact scores, ties included; odd sizes; bit-identical results for 1, 2 and 3
// threads.
//
// Tolerance: the normwise relative error max|simd - ref| / max|ref| is at most 1e-5 in float and
// 1e-12 in double. The two backends compute scores with different summation orders, so
// input-dependent policies are tested either on Gaussian problems whose every score is at least
// `selection_margin` from its row's selection boundary (drawn from seeds, rejected otherwise), or
// on integer-valued Q and K with a power-of-two scale, where every score is exact in both
// backends, so that they must select the same keys and save bit-identical statistics.
#if defined(SEMFOCUS_HAS_XSIMD)

#include <doctest/doctest.h>

#include <semfocus/detail/eigen.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/margins.hpp"
#include "support/oracle.hpp"
#include "support/simd_checks.hpp"
#include "support/simd_compare.hpp"
#include "support/strided.hpp"

using namespace semfocus;
using namespace semfocus::test;

namespace {

/// How far (in scaled score) every score of a Gaussian problem must stay from its row's selection
/// boundary: float scores of the two backends differ by about 1e-6 at most.
constexpr double selection_margin = 1e-4;

/// The first Gaussian problem from seeds seed, seed + 1000, ... at least selection_margin from
/// every selection boundary of `p`; nullopt if none of 100 qualifies.
template <class T, class Policy>
std::optional<problem<T>> stable_problem(const Policy& p, const attention_shape& s, double scale,
                                         std::uint64_t seed) {
  for (std::uint64_t attempt = 0; attempt < 100; ++attempt) {
    problem<T> pr(s, seed + 1000 * attempt);
    if (problem_margin(p, pr, scale) >= selection_margin) return pr;
  }
  return std::nullopt;
}

double default_scale(const attention_shape& s) { return 1.0 / std::sqrt(double(s.d)); }

/// Forward and backward of `p` on `pr` with `ex` against the reference; also checks that a
/// problem that is not tiny is not trivial (the reference output is not all zero).
template <class Policy, class T>
void check_matches_reference(const Policy& p, const problem<T>& pr, const attention_options& opt,
                             bool exact_scores, const exec::simd_t& ex = exec::simd) {
  const auto ref = run_reference(p, pr, opt);
  const auto sim = run_backend(ex, p, pr, opt);
  if (pr.shape.rows() * pr.shape.n_k >= 64) CHECK(max_abs(ref.out.data) > 0);
  check_forward(p, pr, sim.out, sim.record, ref, exact_scores);
  check_gradients(sim.dq, sim.dk, sim.dv, ref);
  if (sim.record.has_selection()) {
    // Without its saved selection, backward re-derives the kept sets from recomputed scores and
    // the saved statistics: they must select what forward selected (e.g. top_k's k-th key).
    auto bare = sim.record;
    bare.selection_offsets.clear();
    bare.selection.clear();
    tensor<T> dq(pr.shape.q()), dk(pr.shape.k()), dv(pr.shape.v());
    backward(ex, p, pr.q.view(), pr.k.view(), pr.v.view(), sim.out.cview(), pr.d_out.view(), bare,
             dq.view(), dk.view(), dv.view());
    INFO("simd backward of the simd record without its saved selection");
    check_gradients(dq, dk, dv, ref);
  }
}

/// Calls f(name, policy) for every input-agnostic policy, built-in and user, serving shape s
/// (n_q, n_k >= 1). The explicit masks live until f returns.
template <class F>
void for_each_fixed_policy(const attention_shape& s, F&& f) {
  const index_t nq = s.n_q, nk = s.n_k;
  const index_t g = nq >= 3 && nk >= 3 ? 2 : 0;
  tensor<std::uint8_t> per_head({s.batch, s.heads, nq, nk}), broadcast({1, 1, nq, nk});
  std::mt19937_64 gen(std::uint64_t(nq * 1000 + nk));
  std::bernoulli_distribution keep(0.4);
  for (std::uint8_t& x : per_head.data) x = keep(gen) ? 1 : 0;
  for (std::uint8_t& x : broadcast.data) x = keep(gen) ? 1 : 0;
  f("dense", dense{});
  f("dense{true}", dense{true});
  f("causal", causal{});
  f("banded", banded(std::min<index_t>(5, nk)));
  f("banded(1)", banded(1));
  f("block_local", block_local(4));
  f("strided with a local window", strided(3, 1));
  f("strided", strided(4));
  f("global_tokens(banded)", global_tokens(banded(std::min<index_t>(3, nk - g)), g));
  f("global_tokens(causal)", global_tokens(causal{}, g));
  f("global_tokens(block_local)", global_tokens(block_local(3), g));
  f("global_tokens(strided)", global_tokens(strided(3), g));
  f("explicit_mask per head", explicit_mask(per_head.cview()));
  f("explicit_mask broadcast over batch and heads", explicit_mask(broadcast.cview()));
  f("random_k", random_k(std::min<index_t>(4, nk), 7));
  f("user::same_parity", user::same_parity{});
}

/// Calls f(name, policy) for every input-dependent policy, built-in and user. `tau(x)` maps a
/// nominal threshold x (in units of the score's standard deviation) to the one used.
template <class Tau, class F>
void for_each_input_dependent_policy(const attention_shape& s, const Tau& tau, F&& f) {
  const index_t nk = s.n_k;
  f("top_k(1)", top_k(1));
  f("top_k(3)", top_k(std::min<index_t>(3, nk)));
  f("top_k(3 n_k / 4)", top_k(std::max<index_t>(1, 3 * nk / 4)));
  f("top_k(n_k)", top_k(nk));
  f("bottom_k(2)", bottom_k(std::min<index_t>(2, nk)));
  f("bottom_k(n_k / 2)", bottom_k(std::max<index_t>(1, nk / 2)));
  f("threshold, few kept", threshold(tau(0.2)));
  f("threshold", threshold(tau(1.0)));
  f("threshold, most kept", threshold(tau(3.0)));
  f("absolute_threshold", absolute_threshold(tau(0.1)));
  f("absolute_threshold, rows may be empty", absolute_threshold(tau(1.5)));
  f("user::above_mean", user::above_mean{});
}

const std::vector<attention_shape>& moderate_shapes() {
  static const std::vector<attention_shape> shapes = {
      {2, 2, 19, 23, 17, 9},   // batch and heads, n_q < n_k, d != d_v
      {1, 3, 33, 21, 8, 12},   // n_q > n_k, d < d_v
      {2, 1, 40, 70, 64, 32},  // a full vector width of d
  };
  return shapes;
}

}  // namespace

TEST_CASE_TEMPLATE("simd matches the reference for every input-agnostic policy", T, float, double) {
  std::uint64_t seed = 1000;
  for (const attention_shape& s : moderate_shapes()) {
    CAPTURE(s);
    const problem<T> pr(s, ++seed);
    for_each_fixed_policy(s, [&](const char* name, const auto& p) {
      INFO(std::string(name));
      check_matches_reference(p, pr, {}, false);
    });
  }
}

TEST_CASE_TEMPLATE(
    "simd matches the reference for every input-dependent policy away from selection boundaries", T,
    float, double) {
  std::uint64_t seed = 2000;
  for (const attention_shape& s : moderate_shapes()) {
    CAPTURE(s);
    for_each_input_dependent_policy(
        s, [](double x) { return x; },
        [&](const char* name, const auto& p) {
          INFO(std::string(name));
          const auto pr = stable_problem<T>(p, s, default_scale(s), ++seed);
          REQUIRE(pr.has_value());
          check_matches_reference(p, *pr, {}, false);
        });
  }
}

TEST_CASE_TEMPLATE(
    "simd matches the reference for every input-dependent policy on exact integer scores", T, float,
    double) {
  const std::vector<attention_shape> shapes = {{2, 2, 19, 23, 17, 9},
                                               {1, 3, 33, 21, 8, 12},
                                               {2, 1, 40, 257, 64, 32},
                                               {1, 2, 130, 70, 65, 17}};
  std::uint64_t seed = 3000;
  for (const attention_shape& s : shapes) {
    CAPTURE(s);
    const double unit = exact_scale(s.d);
    const problem<T> pr = integer_problem<T>(s, ++seed);
    for_each_input_dependent_policy(s, half_units(unit), [&](const char* name, const auto& p) {
      INFO(std::string(name));
      check_matches_reference(p, pr, {.scale = unit}, true, exec::simd.with_threads(2));
    });
  }
}

TEST_CASE_TEMPLATE("simd selects exactly the reference's keys on small-integer inputs with ties", T,
                   float, double) {
  // Scale 1 and entries in [-2, 2]: integer scores, exact in both backends. d_v = n_k and V = I,
  // so out is the probability matrix P itself: its zeros are exactly the unkept keys. Odd keys
  // duplicate the key before them and the last key duplicates key 0 (tied scores in every row);
  // query row (0, 1, 5) is zero, so all its scores tie at 0.
  const attention_shape s{2, 2, 17, 33, 4, 33};
  problem<T> pr = integer_problem<T>(s, 7);
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t j = 0; j < s.n_k; ++j) {
        for (index_t c = 0; c < s.d_v; ++c) pr.v(b, h, j, c) = j == c ? T(1) : T(0);
        const index_t twin = j == s.n_k - 1 ? 0 : (j % 2 == 1 ? j - 1 : j);
        for (index_t c = 0; c < s.d; ++c) pr.k(b, h, j, c) = pr.k(b, h, twin, c);
      }
  for (index_t c = 0; c < s.d; ++c) pr.q(0, 1, 5, c) = T(0);
  const attention_options opt{1.0};

  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    const auto ref = run_reference(p, pr, opt);
    const auto sim = run_backend(exec::simd, p, pr, opt);
    const kept_sets kept = reference_kept_sets(p, pr, ref.record);
    std::size_t mismatches = 0, reference_mismatches = 0, kept_total = 0;
    for (index_t b = 0; b < s.batch; ++b)
      for (index_t h = 0; h < s.heads; ++h)
        for (index_t i = 0; i < s.n_q; ++i) {
          const auto& row = kept[std::size_t(ref.record.row_index(b, h, i))];
          kept_total += row.size();
          for (index_t j = 0; j < s.n_k; ++j) {
            const bool in = std::binary_search(row.begin(), row.end(), std::uint32_t(j));
            mismatches += (sim.out(b, h, i, j) != T(0)) != in;
            reference_mismatches += (ref.out(b, h, i, j) != T(0)) != in;
          }
        }
    CHECK(reference_mismatches == 0);  // the construction reads the kept sets off P
    CHECK(mismatches == 0);
    CHECK(kept_total > 0);
    if constexpr (row_policy<std::decay_t<decltype(p)>, T>) {
      const stats_comparison c = compare_stats(sim.record.stats, ref.record.stats);
      CHECK(c.same_size);
      CHECK(c.index_mismatches == 0);
      CHECK(c.value_mismatches == 0);
    }
    const std::string selection = selection_mismatch(sim.record, kept);
    CHECK_MESSAGE(selection.empty(), selection);
    check_forward(p, pr, sim.out, sim.record, ref, true);
    // A row whose kept keys are all twins has dQ = scale sum_j dS_ij K_j = K (sum_j dS_ij) = 0
    // analytically: dQ is rounding noise there, so it is measured against the whole gradient.
    check_gradients(sim.dq, sim.dk, sim.dv, ref, true);
    return sim;
  };
  // In the all-zero row every score ties: a rank policy keeps the k lowest indices.
  auto first_k_kept = [&](const auto& sim, index_t k) {
    for (index_t j = 0; j < s.n_k; ++j) CHECK((sim.out(0, 1, 5, j) != T(0)) == (j < k));
  };
  first_k_kept(check("top_k(1)", top_k(1)), 1);
  first_k_kept(check("top_k(2)", top_k(2)), 2);
  first_k_kept(check("top_k(3)", top_k(3)), 3);
  first_k_kept(check("top_k(16)", top_k(16)), 16);
  first_k_kept(check("top_k(n_k)", top_k(s.n_k)), s.n_k);
  first_k_kept(check("bottom_k(1)", bottom_k(1)), 1);
  first_k_kept(check("bottom_k(4)", bottom_k(4)), 4);
  check("threshold(0): the row max and its ties", threshold(0));
  check("threshold(0.5)", threshold(0.5));
  check("threshold(2.5)", threshold(2.5));
  check("absolute_threshold(0.5)", absolute_threshold(0.5));
  check("absolute_threshold(2.5)", absolute_threshold(2.5));
  check("absolute_threshold(-3.5)", absolute_threshold(-3.5));
  check("user::above_mean", user::above_mean{});
}

TEST_CASE_TEMPLATE("simd matches the reference at odd sizes", T, float, double) {
  const std::vector<attention_shape> shapes = {
      {1, 1, 1, 1, 1, 1},        // every extent 1
      {1, 2, 1, 257, 3, 17},     // one query over many keys
      {2, 1, 257, 1, 17, 3},     // many queries over one key
      {3, 2, 3, 17, 17, 1},      // d_v = 1
      {1, 3, 17, 3, 1, 64},      // d = 1, n_q > n_k
      {2, 2, 63, 65, 64, 65},    // n_q < n_k
      {1, 2, 65, 63, 65, 64},    // n_q > n_k
      {1, 1, 63, 257, 128, 3},   // d = 128
      {1, 1, 257, 65, 3, 128},   // d_v = 128
      {1, 1, 257, 257, 64, 17},  // n_q = n_k = 257
  };
  std::uint64_t seed = 4000;
  for (const attention_shape& s : shapes) {
    CAPTURE(s);
    const index_t nk = s.n_k, g = s.n_q >= 3 && s.n_k >= 3 ? 2 : 0;
    const problem<T> gauss(s, ++seed);
    const problem<T> ints = integer_problem<T>(s, ++seed);
    const double unit = exact_scale(s.d);
    const auto tau = half_units(unit);
    const auto ex = exec::simd.with_threads(3);
    auto fixed = [&](const char* name, const auto& p) {
      INFO(std::string(name));
      check_matches_reference(p, gauss, {}, false, ex);
    };
    auto dependent = [&](const char* name, const auto& p) {
      INFO(std::string(name));
      check_matches_reference(p, ints, {.scale = unit}, true, ex);
    };
    fixed("dense", dense{});
    fixed("causal", causal{});
    fixed("banded", banded(std::min<index_t>(7, nk)));
    fixed("block_local", block_local(16));
    fixed("strided", strided(5, 2));
    fixed("random_k", random_k(std::min<index_t>(9, nk), 3));
    fixed("global_tokens(banded)", global_tokens(banded(std::min<index_t>(3, nk - g)), g));
    fixed("user::same_parity", user::same_parity{});
    dependent("top_k(8)", top_k(std::min<index_t>(8, nk)));
    dependent("top_k(n_k / 2)", top_k(std::max<index_t>(1, nk / 2)));
    dependent("bottom_k(3)", bottom_k(std::min<index_t>(3, nk)));
    dependent("threshold", threshold(tau(1.0)));
    dependent("absolute_threshold", absolute_threshold(tau(0.5)));
    dependent("user::above_mean", user::above_mean{});
  }
}

TEST_CASE_TEMPLATE("simd results are bit-identical for 1, 2 and 3 threads", T, float, double) {
  // Several row blocks and key blocks per (batch, head), and 4 (batch, head) pairs.
  const attention_shape s{2, 2, 300, 300, 64, 64};
  const problem<T> pr(s, 77);
  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    const auto one = run_backend(exec::simd.with_threads(1), p, pr);
    CHECK(all_finite(one.out.data));
    CHECK(max_abs(one.out.data) > 0);
    CHECK(max_abs(one.dq.data) > 0);
    CHECK(max_abs(one.dk.data) > 0);
    CHECK(max_abs(one.dv.data) > 0);
    for (const int threads : {2, 3, 0}) {
      CAPTURE(threads);
      const auto r = run_backend(exec::simd.with_threads(threads), p, pr);
      CHECK(same_bits(r.out.data, one.out.data));
      CHECK(same_bits(r.record.lse, one.record.lse));
      CHECK(same_bits(r.dq.data, one.dq.data));
      CHECK(same_bits(r.dk.data, one.dk.data));
      CHECK(same_bits(r.dv.data, one.dv.data));
      if constexpr (row_policy<std::decay_t<decltype(p)>, T>) {
        const stats_comparison c = compare_stats(r.record.stats, one.record.stats);
        CHECK(c.same_size);
        CHECK(c.index_mismatches == 0);
        CHECK(c.value_mismatches == 0);
      }
      CHECK(r.record.selection_offsets == one.record.selection_offsets);
      CHECK(r.record.selection == one.record.selection);
    }
  };
  check("dense", dense{});
  check("top_k", top_k(16));
  check("threshold", threshold(1.0));
  if constexpr (std::is_same_v<T, float>) {  // the same code paths in double: spare the time
    check("causal", causal{});
    check("banded", banded(33));
    check("top_k, most kept", top_k(250));
  }
}

#endif  // SEMFOCUS_HAS_XSIMD
