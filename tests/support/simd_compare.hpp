// SPDX-License-Identifier: MIT
#pragma once

// Helpers of tests/test_simd.cpp, test_simd_edges.cpp and the fuzz driver: running any backend the
// way run_reference runs the reference, normwise and bitwise comparisons of results, records and
// row statistics, the kept sets the reference selects, and problems whose scores are exact in every
// backend.
#if defined(SEMFOCUS_HAS_XSIMD)

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/oracle.hpp"

namespace semfocus::test {

/// \brief Normwise relative tolerance of the SIMD backend against the reference.
template <class T>
inline constexpr double simd_tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

/// \brief max_x |a_x - b_x| / max(max_x |b_x|, norm_floor): the normwise relative error of a
/// against b. 0 when a equals b; +inf when the sizes differ, when either holds a NaN or an
/// infinity, or when a differs from an all-zero b and norm_floor is 0.
template <class A, class B>
double normwise_rel_diff(const std::vector<A>& a, const std::vector<B>& b, double norm_floor = 0) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, norm = 0;
  for (std::size_t x = 0; x < a.size(); ++x) {
    const double ax = static_cast<double>(a[x]), bx = static_cast<double>(b[x]);
    if (!std::isfinite(ax) || !std::isfinite(bx)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::abs(ax - bx));
    norm = std::max(norm, std::abs(bx));
  }
  if (diff == 0) return 0;
  norm = std::max(norm, norm_floor);
  return norm == 0 ? std::numeric_limits<double>::infinity() : diff / norm;
}

/// \brief Normwise relative error (normwise_rel_diff, with `norm_floor`) over the finite entries of
/// two arrays of the same length whose infinities (-inf log-sum-exp of empty rows, -inf cuts of
/// rows that keep everything) must sit at the same places with the same sign; +inf otherwise, or
/// on any NaN.
template <class A, class B>
double finite_rel_diff(const std::vector<A>& a, const std::vector<B>& b, double norm_floor = 0) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  std::vector<double> fa, fb;
  for (std::size_t x = 0; x < a.size(); ++x) {
    const double ax = static_cast<double>(a[x]), bx = static_cast<double>(b[x]);
    if (std::isnan(ax) || std::isnan(bx)) return std::numeric_limits<double>::infinity();
    if (std::isinf(ax) || std::isinf(bx)) {
      if (ax != bx) return std::numeric_limits<double>::infinity();
      continue;
    }
    fa.push_back(ax);
    fb.push_back(bx);
  }
  return normwise_rel_diff(fa, fb, norm_floor);
}

/// \brief max |x| over an array (0 when empty).
template <class T>
double max_abs(const std::vector<T>& a) {
  double m = 0;
  for (const T& x : a) m = std::max(m, std::abs(static_cast<double>(x)));
  return m;
}

/// \brief True when every element is finite.
template <class T>
bool all_finite(const std::vector<T>& a) {
  return std::all_of(a.begin(), a.end(), [](T x) { return std::isfinite(x); });
}

/// \brief Whether row (b, h, i) of t is all zeros.
template <class T>
bool row_is_zero(const tensor<T>& t, index_t b, index_t h, index_t i) {
  for (index_t c = 0; c < t.shape.dim; ++c)
    if (t(b, h, i, c) != T(0)) return false;
  return true;
}

/// \brief Same length and the same bytes (a memcmp: -0 differs from +0, NaN payloads count).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// \name The comparable parts of the row statistics of the built-in and user row policies: a
/// score value (compared in value) and an index (compared exactly).
/// \{
template <class T, bool Largest>
std::pair<T, index_t> stat_key(const rank_cut<T, Largest>& c) {
  return {c.value, c.last};
}
template <class T>
std::pair<T, index_t> stat_key(const score_floor<T>& c) {
  return {c.floor, 0};
}
template <class T>
std::pair<T, index_t> stat_key(const user::mean_floor<T>& c) {
  return {c.mean, 0};
}
/// \}

template <class S>
concept comparable_statistic = requires(const S& s) {
  stat_key(s);
};

/// \brief How two arrays of row statistics differ.
struct stats_comparison {
  bool same_size = false;
  std::size_t index_mismatches = 0;  // rows whose index parts differ
  std::size_t value_mismatches = 0;  // rows whose values differ in any bit
  double value_rel_diff = 0;         // finite_rel_diff of the values (with value_floor)
};

template <class S>
requires comparable_statistic<S> stats_comparison compare_stats(const std::vector<S>& a,
                                                                const std::vector<S>& b,
                                                                double value_floor = 0) {
  stats_comparison c;
  c.same_size = a.size() == b.size();
  if (!c.same_size) return c;
  using V = decltype(stat_key(a[0]).first);
  std::vector<V> va, vb;
  for (std::size_t r = 0; r < a.size(); ++r) {
    const auto ka = stat_key(a[r]), kb = stat_key(b[r]);
    c.index_mismatches += ka.second != kb.second;
    c.value_mismatches += std::memcmp(&ka.first, &kb.first, sizeof(V)) != 0;
    va.push_back(ka.first);
    vb.push_back(kb.first);
  }
  c.value_rel_diff = finite_rel_diff(va, vb, value_floor);
  return c;
}

/// \brief The kept keys of every row (indexed as record rows), ascending.
using kept_sets = std::vector<std::vector<std::uint32_t>>;

/// \brief The kept sets the reference backend selects: its scores (backend::reference::score) and,
/// for a row policy, the statistics saved in its record `rec`.
template <class Policy, class T>
kept_sets reference_kept_sets(const Policy& p, const problem<T>& pr,
                              const forward_record_t<Policy, T>& rec) {
  const attention_shape& s = pr.shape;
  kept_sets kept(static_cast<std::size_t>(s.rows()));
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      const head_slice hs{b, h, s.n_q, s.n_k};
      for (index_t i = 0; i < s.n_q; ++i) {
        const auto r = static_cast<std::size_t>(rec.row_index(b, h, i));
        row_statistic_t<Policy, T> st{};
        if constexpr (row_policy<Policy, T>) st = rec.stats[r];
        for (index_t j = 0; j < s.n_k; ++j) {
          const T sij =
              backend::reference::score(&pr.q(b, h, i, 0), &pr.k(b, h, j, 0), s.d, rec.scale);
          if (is_kept(p, hs, i, j, sij, st)) kept[r].push_back(static_cast<std::uint32_t>(j));
        }
      }
    }
  return kept;
}

/// \brief Empty when `rec` saved no selection or saved exactly `kept`; else the first difference.
template <class R>
std::string selection_mismatch(const R& rec, const kept_sets& kept) {
  if (!rec.has_selection()) return {};
  std::ostringstream os;
  const auto& off = rec.selection_offsets;
  if (kept.size() + 1 != off.size()) {
    os << "selection_offsets has " << off.size() << " entries, expected " << kept.size() + 1;
    return os.str();
  }
  if (off.front() != 0 || off.back() != static_cast<std::int64_t>(rec.selection.size())) {
    os << "selection_offsets spans [" << off.front() << ", " << off.back() << ") but selection has "
       << rec.selection.size() << " entries";
    return os.str();
  }
  for (std::size_t r = 0; r < kept.size(); ++r) {
    if (off[r + 1] < off[r]) {
      os << "selection_offsets decreases at row " << r;
      return os.str();
    }
    const auto first = rec.selection.begin() + off[r], last = rec.selection.begin() + off[r + 1];
    if (!std::equal(first, last, kept[r].begin(), kept[r].end())) {
      os << "row " << r << " saved " << (off[r + 1] - off[r]) << " keys {";
      for (auto it = first; it != last; ++it) os << (it == first ? "" : ", ") << *it;
      os << "}, the reference keeps " << kept[r].size() << " keys {";
      for (std::size_t x = 0; x < kept[r].size(); ++x) os << (x ? ", " : "") << kept[r][x];
      os << "}";
      return os.str();
    }
  }
  return {};
}

/// \brief The properties a comparison found violated, one sentence each with its values; empty
/// when everything holds.
using differences = std::vector<std::string>;

/// \brief The sentences of `d`, one a line (empty when d is).
inline std::string join(const differences& d) {
  std::string s;
  for (const std::string& x : d) s += (s.empty() ? "" : "\n") + x;
  return s;
}

/// \brief Adds "<what>: <error> > <tol>" to d unless error <= tol (a NaN error is added).
inline void expect_within(differences& d, const std::string& what, double error, double tol) {
  if (error <= tol) return;
  std::ostringstream os;
  os.precision(3);
  os << what << ": " << error << " > " << tol;
  d.push_back(os.str());
}

/// \brief Norm floors of forward_differences and gradient_differences: each normwise relative
/// error divides by max(max |reference|, floor); 0 gives the plain normwise error.
struct norm_floors {
  double out = 0, lse = 0, stats = 0, dq = 0, dk = 0, dv = 0;
};

/// \brief Forward results of the SIMD backend (out, record) against the reference run `ref` of
/// the same problem, whose kept sets are `kept` (reference_kept_sets): shape and scale equal, out
/// and log-sum-exp within simd_tol, the row statistics (index parts exactly; values bit-identical
/// when `exact_scores`, else within simd_tol), and any selection the record saved equal to `kept`.
template <class Policy, class T>
differences forward_differences(const tensor<T>& out, const forward_record_t<Policy, T>& rec,
                                const result<Policy, T>& ref, const kept_sets& kept,
                                bool exact_scores, const norm_floors& floors = {}) {
  const double tol = simd_tol<T>;
  differences d;
  if (!rec.policy.has_value()) return {"the record holds no policy"};
  if (!(rec.shape == ref.record.shape))
    d.push_back("the record's shape differs from the reference's");
  if (rec.scale != ref.record.scale) d.push_back("the record's scale differs from the reference's");
  expect_within(d, "out: normwise relative error",
                normwise_rel_diff(out.data, ref.out.data, floors.out), tol);
  expect_within(d, "log-sum-exp: normwise relative error",
                finite_rel_diff(rec.lse, ref.record.lse, floors.lse), tol);
  if constexpr (row_policy<Policy, T>) {
    const stats_comparison c = compare_stats(rec.stats, ref.record.stats, floors.stats);
    if (!c.same_size) d.push_back("row statistics: not as many as the reference's");
    if (c.index_mismatches != 0)
      d.push_back("row statistics: " + std::to_string(c.index_mismatches) + " index mismatches");
    if (exact_scores && c.value_mismatches != 0)
      d.push_back("row statistics: " + std::to_string(c.value_mismatches) +
                  " values differ in bits on exact scores");
    expect_within(d, "row statistics: normwise relative error of the values", c.value_rel_diff,
                  tol);
  } else if (!rec.stats.empty()) {
    d.push_back("row statistics saved for an elementwise policy");
  }
  const std::string selection = selection_mismatch(rec, kept);
  if (!selection.empty()) d.push_back("saved selection: " + selection);
  return d;
}

/// \brief Gradients against the reference run `ref`, within simd_tol: normwise per array, or
/// relative to the largest reference gradient of the three when the reference array is exactly 0
/// (rows that keep one key have dS = 0 analytically, and a backend using D = dO . O gets
/// rounding-level values there) or when `whole_norm` (for problems built so that an array cancels
/// to rounding noise); and at least `floors` (dq, dk, dv).
template <class Policy, class T>
differences gradient_differences(const tensor<T>& dq, const tensor<T>& dk, const tensor<T>& dv,
                                 const result<Policy, T>& ref, bool whole_norm = false,
                                 const norm_floors& floors = {}) {
  const double whole = std::max({max_abs(ref.dq.data), max_abs(ref.dk.data), max_abs(ref.dv.data)});
  differences d;
  auto check = [&](const char* what, const tensor<T>& a, const tensor<T>& b, double at_least) {
    const double floor = std::max(whole_norm || max_abs(b.data) == 0 ? whole : 0.0, at_least);
    expect_within(d, std::string(what) + ": normwise relative error",
                  normwise_rel_diff(a.data, b.data, floor), simd_tol<T>);
  };
  check("dQ", dq, ref.dq, floors.dq);
  check("dK", dk, ref.dk, floors.dk);
  check("dV", dv, ref.dv, floors.dv);
  return d;
}

/// \brief Empty when two records hold the same bits (shape, scale, log-sum-exp, row statistics,
/// saved selection); else what differs.
template <class Policy, class T>
differences record_bit_differences(const forward_record_t<Policy, T>& a,
                                   const forward_record_t<Policy, T>& b) {
  differences d;
  if (!(a.shape == b.shape)) d.push_back("record shapes differ");
  if (a.scale != b.scale) d.push_back("record scales differ");
  if (!same_bits(a.lse, b.lse)) d.push_back("log-sum-exp differs in bits");
  if constexpr (row_policy<Policy, T>) {
    const stats_comparison c = compare_stats(a.stats, b.stats);
    if (!c.same_size || c.index_mismatches != 0 || c.value_mismatches != 0)
      d.push_back("row statistics differ in bits");
  }
  if (a.selection_offsets != b.selection_offsets || a.selection != b.selection)
    d.push_back("saved selections differ");
  return d;
}

/// \brief A scale 2^-m close to 1 / (2 sqrt(d)): with Q and K from integer_problem (entries in
/// [-2, 2]) the scaled scores have a standard deviation near 1 and are exact multiples of it.
inline double exact_scale(index_t d) {
  return std::ldexp(1.0, -static_cast<int>(std::lround(std::log2(2 * std::sqrt(double(d))))));
}

/// \brief A problem whose Q and K entries are integers in [-range, range] (V and dO Gaussian):
/// every dot product is an integer below 2^24 in magnitude, computed exactly in float and double
/// whatever the summation order, so with a power-of-two scale (or 1) every backend computes
/// bit-identical scores and selects the same keys, ties included.
template <class T>
problem<T> integer_problem(const attention_shape& s, std::uint64_t seed, int range = 2) {
  problem<T> pr(s, seed);
  std::mt19937_64 gen(seed ^ 0x9e3779b97f4a7c15ull);
  std::uniform_int_distribution<int> u(-range, range);
  for (T& x : pr.q.data) x = static_cast<T>(u(gen));
  for (T& x : pr.k.data) x = static_cast<T>(u(gen));
  return pr;
}

}  // namespace semfocus::test

#endif  // SEMFOCUS_HAS_XSIMD
