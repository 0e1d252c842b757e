// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include <semfocus/semfocus.hpp>

#include "support/custom_policy.hpp"
#include "support/tensors.hpp"

// Row margins of input-dependent policies: how far a row's exact scores are from the selection
// boundary, so that tests can keep their inputs away from it (float and double scores may then
// differ in the last bits without changing the kept set).
namespace semfocus::test {

inline constexpr double unbounded = std::numeric_limits<double>::infinity();

/// \brief top_k (largest) / bottom_k: the gap between the k-th and (k+1)-th score in rank order (0
/// for an exact tie there); +inf when every key is kept.
inline double rank_gap(std::vector<double> s, index_t k, bool largest) {
  if (k >= static_cast<index_t>(s.size())) return unbounded;
  if (largest)
    std::sort(s.begin(), s.end(), std::greater<>());
  else
    std::sort(s.begin(), s.end());
  return std::abs(s[std::size_t(k - 1)] - s[std::size_t(k)]);
}

/// \brief absolute_threshold: the distance of the closest score to tau.
inline double absolute_gap(const std::vector<double>& s, double tau) {
  double m = unbounded;
  for (double x : s) m = std::min(m, std::abs(x - tau));
  return m;
}

/// \brief user::above_mean: the distance of the closest score to the row mean (a single key is
/// always kept: it equals the mean exactly).
inline double mean_gap(const std::vector<double>& s) {
  if (s.size() <= 1) return unbounded;
  double mean = 0;
  for (double x : s) mean += x;
  mean /= static_cast<double>(s.size());
  double m = unbounded;
  for (double x : s) m = std::min(m, std::abs(x - mean));
  return m;
}

/// \name row_margin(p, s): the distance of a row of exact scores s from changing the kept set of
/// the input-dependent policy p (0 at a tie on the selection boundary, +inf when no score can
/// change it).
/// \{
inline double row_margin(const top_k& p, const std::vector<double>& s) {
  return rank_gap(s, p.k, true);
}
inline double row_margin(const bottom_k& p, const std::vector<double>& s) {
  return rank_gap(s, p.k, false);
}
/// threshold: every score away from the floor max - tau.
inline double row_margin(const threshold& p, const std::vector<double>& s) {
  const double floor = *std::max_element(s.begin(), s.end()) - p.tau;
  double m = unbounded;
  for (double x : s) m = std::min(m, std::abs(x - floor));
  return m;
}
inline double row_margin(const absolute_threshold& p, const std::vector<double>& s) {
  return absolute_gap(s, p.tau);
}
inline double row_margin(const user::above_mean&, const std::vector<double>& s) {
  return mean_gap(s);
}
/// \}

/// \brief The smallest row margin of `p` over every row of `pr`, from exact scores (test_scores,
/// summed in long double) at `scale`; when `max_abs_score` is given, it receives the largest
/// |score| of the problem (the scale against which a margin is small). O(batch heads n_q n_k d).
template <class Policy, class T>
double problem_margin(const Policy& p, const problem<T>& pr, double scale,
                      double* max_abs_score = nullptr) {
  const attention_shape& s = pr.shape;
  double worst = unbounded, largest = 0;
  std::vector<double> row;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        test_scores(pr, b, h, i, scale, row);
        worst = std::min(worst, row_margin(p, row));
        for (double x : row) largest = std::max(largest, std::abs(x));
      }
  if (max_abs_score) *max_abs_score = largest;
  return worst;
}

}  // namespace semfocus::test
