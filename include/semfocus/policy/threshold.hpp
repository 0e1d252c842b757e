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
  SEMFOCUS_HD constexpr bool keep(index_t, T s) const noexcept { return s >= floor; }
};

/// \brief Threshold relative to the row maximum (our definition; not in the paper's code): row i
/// keeps key j when s_ij >= max_j s_ij - tau, comparing scaled scores in the score type T. The
/// kept set is never empty (the max is kept) unless the row is all NaN, and its dispersion
/// (max - min over kept scores) is at most tau by construction. Row statistic: the floor
/// max - tau (score_floor). Requires a finite tau >= 0.
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

  template <class T>
  SEMFOCUS_HD score_floor<T> row_statistic(const head_slice& hs, index_t,
                                           const T* scores) const noexcept {
    T max = -detail::infinity<T>();
    for (index_t j = 0; j < hs.n_k; ++j)
      if (scores[j] > max) max = scores[j];
    return {max - T(tau)};
  }
};

}  // namespace semfocus
