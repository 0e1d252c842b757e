// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Absolute threshold (our definition): key j is kept when its scaled score
/// s_ij >= tau, compared in the score type T. Input-dependent but elementwise, so it fits a
/// single streaming pass. A row may keep nothing: its output is 0 and its log-sum-exp -inf.
/// NaN is never kept. Requires a finite tau.
struct absolute_threshold {
  static constexpr locality locality_kind = locality::elementwise;

  double tau = 0;

  /// \throws invalid_argument unless tau is finite.
  explicit absolute_threshold(double tau_) : tau(tau_) { validate(attention_shape{}); }

  /// \throws invalid_argument unless tau is finite.
  void validate(const attention_shape&) const {
    detail::require(std::isfinite(tau), "semfocus::absolute_threshold: tau must be finite, got ",
                    tau);
  }

  /// \brief Whether key j of row i is kept: s >= T(tau); O(1).
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice&, index_t, index_t, T s) const noexcept {
    return s >= T(tau);
  }

  friend constexpr bool operator==(const absolute_threshold&, const absolute_threshold&) = default;
};

}  // namespace semfocus
