// SPDX-License-Identifier: MIT
#pragma once

// Helpers of tests/test_simd.cpp: running any backend the way run_reference runs the reference,
// normwise and bitwise comparisons of results, records and row statistics, the kept sets the
// reference selects, and problems whose scores are exact in every backend.
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

/// \brief Normwise relative error over the finite entries of two arrays of the same length whose
/// infinities (-inf log-sum-exp of empty rows, -inf cuts of rows that keep everything) must sit
/// at the same places with the same sign; +inf otherwise, or on any NaN.
template <class A, class B>
double finite_rel_diff(const std::vector<A>& a, const std::vector<B>& b) {
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
  return normwise_rel_diff(fa, fb);
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
  double value_rel_diff = 0;         // finite_rel_diff of the values
};

template <class S>
requires comparable_statistic<S> stats_comparison compare_stats(const std::vector<S>& a,
                                                                const std::vector<S>& b) {
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
  c.value_rel_diff = finite_rel_diff(va, vb);
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
