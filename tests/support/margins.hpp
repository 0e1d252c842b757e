// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include <semfocus/semfocus.hpp>

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

}  // namespace semfocus::test
