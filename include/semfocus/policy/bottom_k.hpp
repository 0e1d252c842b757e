// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/detail/rank_select.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Bottom-k (in the paper's code, not its experiments): row i keeps its k smallest scaled
/// scores, ties broken by (score ascending, index ascending), so exactly k keys are kept unless the
/// row has fewer than k non-NaN scores (then all of them). NaN is never kept. Row statistic: the
/// k-th smallest score and the index of the last kept tie (detail::rank_cut), found exactly in
/// O(n_k) by radix selection. Requires 1 <= k <= n_k.
struct bottom_k {
  static constexpr locality locality_kind = locality::row;

  index_t k = 1;

  /// \throws invalid_argument if k < 1.
  explicit bottom_k(index_t k_) : k(k_) {
    detail::require(k >= 1, "semfocus::bottom_k: k must be >= 1, got ", k);
  }

  /// \throws invalid_argument unless 1 <= k <= n_k.
  void validate(const attention_shape& s) const {
    detail::require(k >= 1 && k <= s.n_k,
                    "semfocus::bottom_k: k must be in [1, n_k] with n_k = ", s.n_k, ", got ", k);
  }

  /// \brief The cut of row i from its n_k scores.
  template <class T>
  SEMFOCUS_HD detail::rank_cut<T, false> row_statistic(const head_slice& hs, index_t,
                                                       const T* scores) const noexcept {
    return detail::select_rank<false>(scores, hs.n_k, k);
  }
};

}  // namespace semfocus
