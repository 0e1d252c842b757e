// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/detail/rank_select.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Row predicate of a rank selection: the k-th score in the order (score by `Largest`, then
/// index ascending) and the index of the last kept tie. keep(j, s) is true exactly for the k best
/// non-NaN scores of the row it was computed from (all non-NaN ones if there are fewer than k);
/// NaN compares false and is never kept.
template <class T, bool Largest>
struct rank_cut {
  T value;
  index_t last;

  /// \brief Whether key j with score s is among the k best; O(1).
  SEMFOCUS_HD constexpr bool keep(index_t j, T s) const noexcept {
    const bool better = Largest ? s > value : s < value;
    return better || (s == value && j <= last);
  }
};

/// \brief Keeps the k best scores of each row: the largest (top_k) or the smallest (bottom_k),
/// ties broken by index ascending, so exactly k keys are kept unless the row has fewer than k
/// non-NaN scores (then all of them). NaN is never kept. Row statistic: rank_cut, found exactly
/// in O(n_k) by radix selection (detail/rank_select.hpp). Requires 1 <= k <= n_k.
template <bool Largest>
struct rank_k {
  static constexpr locality locality_kind = locality::row;
  static constexpr const char* name = Largest ? "semfocus::top_k" : "semfocus::bottom_k";

  index_t k = 1;

  /// \throws invalid_argument if k < 1.
  explicit rank_k(index_t k_) : k(k_) {
    detail::require(k >= 1, name, ": k must be >= 1, got ", k);
  }

  /// \throws invalid_argument unless 1 <= k <= n_k (and n_k < 2^32, the selection's counters).
  void validate(const attention_shape& s) const {
    detail::require(k >= 1 && k <= s.n_k, name, ": k must be in [1, n_k] with n_k = ", s.n_k,
                    ", got ", k);
    detail::require(s.n_k < (index_t(1) << 32), name, ": n_k must be < 2^32, got ", s.n_k);
  }

  /// \brief The cut of row i from its n_k scores; O(n_k sizeof(T)), no allocation.
  template <class T>
  SEMFOCUS_HD rank_cut<T, Largest> row_statistic(const head_slice& hs, index_t,
                                                 const T* scores) const noexcept {
    const auto cut = detail::select_rank<Largest>(scores, hs.n_k, k);
    return {cut.value, cut.last};
  }

  friend constexpr bool operator==(const rank_k&, const rank_k&) = default;
};

}  // namespace semfocus
