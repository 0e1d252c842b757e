// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Full softmax attention: every key is kept. With `is_causal = true`, row i keeps keys
/// j <= hs.position(i) = i + n_k - n_q: the queries are the last n_q positions (bottom-right
/// alignment, as FlashAttention >= 2.1; for n_q = n_k this is the usual j <= i). Rows with no such
/// key (the first n_q - n_k when n_q > n_k) are empty: output 0, log-sum-exp -inf.
struct dense {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  bool is_causal = false;

  /// \brief Whether key j of row i is kept; O(1).
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    return !is_causal || j <= hs.position(i);
  }

  /// \brief Exact coverage of a tile (see policy/concepts.hpp); O(1).
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile& t) const noexcept {
    if (!is_causal || t.j1 - 1 <= hs.position(t.i0)) return tile_kind::all_kept;
    if (t.j0 > hs.position(t.i1 - 1)) return tile_kind::none_kept;
    return tile_kind::partial;
  }

  friend constexpr bool operator==(const dense&, const dense&) = default;
};

/// \brief Causal softmax attention: dense with `is_causal = true` (see dense).
struct causal : dense {
  constexpr causal() noexcept : dense{true} {}
};

}  // namespace semfocus
