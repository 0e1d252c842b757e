// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>

#include "semfocus/config.hpp"
#include "semfocus/detail/numeric.hpp"

// The softmax of one score row over its kept set K_i, and its backward. One formula for every
// backend:
//   lse_i  = log sum_{j in K_i} exp(s_ij)            (-inf when K_i is empty)
//   P_ij   = exp(s_ij - lse_i) for j in K_i, else 0   (all 0 when lse_i = -inf)
//   D_i    = sum_j P_ij dP_ij  (= dO_i . O_i)
//   dS_ij  = P_ij (dP_ij - D_i)                       (0 off K_i: the kept set is constant)
// Scores equal to -inf contribute nothing. A row whose kept scores are all -inf is empty.
namespace semfocus {

/// \brief Streaming (online) log-sum-exp of a row: running max m and sum l = sum exp(s - m).
/// Adding scores in any order gives the same value up to rounding; O(1) state.
template <class T>
struct online_softmax {
  T max = -detail::infinity<T>();
  T sum = T(0);

  /// \brief Adds one kept score. Invariant: sum = sum over added s of exp(s - max).
  SEMFOCUS_HD void add(T s) noexcept {
    if (s == -detail::infinity<T>()) return;
    if (s > max) {
      sum = sum * std::exp(max - s) + T(1);
      max = s;
    } else {
      sum += std::exp(s - max);
    }
  }

  /// \brief Merges another partial state (e.g. of another key tile).
  SEMFOCUS_HD void merge(const online_softmax& o) noexcept {
    if (o.sum == T(0)) return;
    if (sum == T(0)) {
      *this = o;
      return;
    }
    const T m = max > o.max ? max : o.max;
    sum = sum * std::exp(max - m) + o.sum * std::exp(o.max - m);
    max = m;
  }

  /// \brief log sum exp of the added scores; -inf when none (or only -inf) was added, NaN when a
  /// NaN was added (NaN propagates as in any dense softmax).
  SEMFOCUS_HD T lse() const noexcept {
    return sum == T(0) ? -detail::infinity<T>() : max + std::log(sum);
  }
};

/// \brief P_ij from a kept score and its row's log-sum-exp; 0 for an empty row (lse = -inf).
template <class T>
SEMFOCUS_HD T softmax_probability(T s, T lse) noexcept {
  return lse == -detail::infinity<T>() ? T(0) : std::exp(s - lse);
}

/// \brief dS_ij = P_ij (dP_ij - D_i) for a kept entry, with D_i = sum_j P_ij dP_ij.
template <class T>
SEMFOCUS_HD T softmax_backward(T p, T dp, T row_dot) noexcept {
  return p * (dp - row_dot);
}

}  // namespace semfocus
