// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "semfocus/backend/reference/scores.hpp"
#include "semfocus/core/checks.hpp"
#include "semfocus/policy/absolute_threshold.hpp"
#include "semfocus/policy/concepts.hpp"
#include "semfocus/policy/rank_k.hpp"
#include "semfocus/policy/threshold.hpp"

// The kept sets the bounds module reasons about, and how far the scores may move before they
// change. Scores and selections are those of the reference backend (backend/reference/scores.hpp:
// one deterministic formula), so they equal what forward(exec::reference, ...) selects.
namespace semfocus::bounds {

/// \brief Scores and kept set of one (batch, head): scores[i n_k + j] = s_ij (the score type's
/// value, widened to double) and kept[i n_k + j] = 1 when row i keeps key j.
struct head_selection {
  head_slice slice{};
  std::vector<double> scores;
  std::vector<unsigned char> kept;

  /// \brief The n_k scores of row i.
  std::span<const double> score_row(index_t i) const {
    return {scores.data() + std::size_t(i * slice.n_k), std::size_t(slice.n_k)};
  }
  /// \brief The n_k kept flags of row i.
  std::span<const unsigned char> kept_row(index_t i) const {
    return {kept.data() + std::size_t(i * slice.n_k), std::size_t(slice.n_k)};
  }
};

/// \brief The scores and kept set of head (b, h), exactly as the reference forward computes them
/// (scores in T, then the policy's statistic and predicate). O(n_q n_k d).
template <class Policy, class T>
requires attention_policy<Policy, T> head_selection select_head(const Policy& p,
                                                                const tensor_view<const T>& q,
                                                                const tensor_view<const T>& k,
                                                                index_t b, index_t h,
                                                                double scale) {
  head_selection out;
  out.slice = {b, h, q.seq(), k.seq()};
  const auto nk = std::size_t(k.seq());
  out.scores.resize(std::size_t(q.seq()) * nk);
  out.kept.resize(out.scores.size());
  std::vector<T> s(nk);
  for (index_t i = 0; i < q.seq(); ++i) {
    backend::reference::score_row(q, k, b, h, i, scale, s);
    row_statistic_t<Policy, T> st{};
    if constexpr (row_policy<Policy, T>) st = p.row_statistic(out.slice, i, s.data());
    for (index_t j = 0; j < k.seq(); ++j) {
      const std::size_t x = std::size_t(i) * nk + std::size_t(j);
      out.scores[x] = double(s[std::size_t(j)]);
      out.kept[x] = is_kept(p, out.slice, i, j, s[std::size_t(j)], st) ? 1 : 0;
    }
  }
  return out;
}

/// \brief Separation of a row: the smallest kept score minus the largest unkept one (NaN scores
/// ignored); +inf when nothing is unkept or nothing is kept. For top-k this is the paper's
/// Delta = s_(k) - s_(k+1); for a fixed mask it may be negative and bounds nothing. With
/// sign = -1 the scores are negated first (the order of bottom_k). O(n_k), no allocation.
inline double separation(std::span<const double> scores, std::span<const unsigned char> kept,
                         double sign = 1.0) {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  bool any_kept = false, any_unkept = false;
  for (std::size_t j = 0; j < scores.size(); ++j) {
    if (std::isnan(scores[j])) continue;
    const double x = sign * scores[j];
    if (kept[j]) {
      lo = std::min(lo, x);
      any_kept = true;
    } else {
      hi = std::max(hi, x);
      any_unkept = true;
    }
  }
  if (!any_kept || !any_unkept) return std::numeric_limits<double>::infinity();
  return lo - hi;
}

/// \brief Selection margin of row i: the largest eps such that every score perturbation with
/// max_j |ds_ij| < eps leaves the row's kept set unchanged. Scores are finite.
///  - input-agnostic policies (dense, fixed masks): +inf;
///  - top_k / bottom_k: Delta / 2, Delta the separation (kept minus unkept, in the rank's order):
///    a kept and an unkept score approach each other by at most 2 eps;
///  - threshold(tau): min over j of |s_ij - (max_l s_il - tau)| / 2 taken over kept j (>= 0) and
///    unkept j (> 0): s_ij - max moves by at most 2 eps;
///  - absolute_threshold(tau): min_j |s_ij - tau| (the floor does not move);
///  - a user policy with a member `double selection_margin(const head_slice&, index_t i,
///    std::span<const double> scores, std::span<const unsigned char> kept) const`: its value;
///  - any other input-dependent policy: 0 (nothing is certified beyond the point itself).
/// O(n_k).
template <class Policy>
double selection_margin(const Policy& p, const head_slice& hs, index_t i,
                        std::span<const double> scores, std::span<const unsigned char> kept) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if constexpr (requires {
                  { p.selection_margin(hs, i, scores, kept) } -> std::convertible_to<double>;
                }) {
    return p.selection_margin(hs, i, scores, kept);
  } else if constexpr (is_input_agnostic_v<Policy>) {
    return inf;
  } else if constexpr (std::is_same_v<Policy, rank_k<true>>) {
    return separation(scores, kept) / 2;
  } else if constexpr (std::is_same_v<Policy, rank_k<false>>) {
    return separation(scores, kept, -1.0) / 2;
  } else if constexpr (std::is_same_v<Policy, threshold> ||
                       std::is_same_v<Policy, absolute_threshold>) {
    double floor = p.tau;
    if constexpr (std::is_same_v<Policy, threshold>) {
      double max = -inf;
      for (const double s : scores) max = std::max(max, s);
      floor = max - p.tau;
    }
    double m = inf;
    for (const double s : scores)
      if (!std::isnan(s)) m = std::min(m, std::abs(s - floor));
    return std::is_same_v<Policy, threshold> ? m / 2 : m;
  } else {
    (void)p, (void)hs, (void)i, (void)scores, (void)kept;
    return 0;
  }
}

/// \brief Largest r such that scale (a r + c r^2) <= eps for a, c >= 0: the input radius that
/// keeps every score perturbation within the margin eps, when |ds| <= scale (a r + c r^2).
/// Computed as 2 (eps/scale) / (a + sqrt(a^2 + 4 c eps/scale)) (no cancellation); +inf when
/// eps = +inf or a = c = 0.
inline double radius_for_margin(double eps, double scale, double a, double c) {
  const double e = eps / scale;
  if (std::isinf(e) || (a == 0 && c == 0)) return std::numeric_limits<double>::infinity();
  if (e <= 0) return 0;
  return 2 * e / (a + std::sqrt(a * a + 4 * c * e));
}

}  // namespace semfocus::bounds
