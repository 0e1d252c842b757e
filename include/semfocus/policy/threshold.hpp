// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>

#include "semfocus/core/error.hpp"
#include "semfocus/detail/numeric.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Row predicate of a score floor: keep j when s >= floor (NaN never kept).
template <class T>
struct score_floor {
  T floor;
  /// \brief s >= floor; O(1).
  SEMFOCUS_HD constexpr bool keep(index_t, T s) const noexcept { return s >= floor; }
};

/// \brief Threshold relative to the row maximum (our definition; not in the paper's code): row i
/// keeps key j when s_ij >= floor_i = max_j s_ij - tau, the floor computed in double and rounded
/// to the score type T (clamped to T's finite range when the max is finite). The kept set is
/// never empty (the max is kept) unless the row is all NaN, and its dispersion (max - min over
/// kept scores) is at most tau up to that rounding. Row statistic: the floor (score_floor).
/// Requires a finite tau >= 0.
struct threshold {
  static constexpr locality locality_kind = locality::row;

  double tau = 0;

  /// \throws invalid_argument unless tau is finite and >= 0.
  explicit threshold(double tau_) : tau(tau_) { validate(attention_shape{}); }

  /// \throws invalid_argument unless tau is finite and >= 0.
  void validate(const attention_shape&) const {
    detail::require(std::isfinite(tau) && tau >= 0,
                    "semfocus::threshold: tau must be finite and >= 0, got ", tau);
  }

  /// \brief The floor of row i from its n_k scores: floor_of their max (NaN skipped); O(n_k).
  template <class T>
  SEMFOCUS_HD score_floor<T> row_statistic(const head_slice& hs, index_t,
                                           const T* scores) const noexcept {
    T max = -detail::infinity<T>();
    for (index_t j = 0; j < hs.n_k; ++j)
      if (scores[j] > max) max = scores[j];
    return floor_of(max);
  }

  /// \brief The floor of a row whose max score is `max` (-inf for a row without numbers); O(1).
  template <class T>
  SEMFOCUS_HD score_floor<T> floor_of(T max) const noexcept {
    // max - tau in double, so a tau beyond T's range cannot turn an infinite max into NaN; a
    // finite floor that rounds past T's range is clamped to -max_finite, so -inf stays unkept.
    const double floor = static_cast<double>(max) - tau;
    const T rounded = static_cast<T>(floor);
    const bool overflowed =
        rounded == -detail::infinity<T>() && floor > -detail::infinity<double>();
    return {overflowed ? -detail::max_finite<T>() : rounded};
  }

  friend constexpr bool operator==(const threshold&, const threshold&) = default;
};

}  // namespace semfocus
