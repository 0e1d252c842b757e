// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Full softmax attention: every key is kept. With `causal = true`, row i keeps keys
/// j <= i + (n_k - n_q): the queries are aligned with the last n_q keys (bottom-right, as
/// FlashAttention >= 2.1; for n_q = n_k this is the usual j <= i). Rows with no such key
/// (n_q > n_k) are empty: output 0, log-sum-exp -inf.
struct dense {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  bool causal = false;

  /// \brief Largest kept key of row i when causal (may be < 0: empty row).
  SEMFOCUS_HD constexpr index_t last_key(const head_slice& hs, index_t i) const noexcept {
    return i + (hs.n_k - hs.n_q);
  }

  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    return !causal || j <= last_key(hs, i);
  }

  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile& t) const noexcept {
    if (!causal || t.j1 - 1 <= last_key(hs, t.i0)) return tile_kind::all_kept;
    if (t.j0 > last_key(hs, t.i1 - 1)) return tile_kind::none_kept;
    return tile_kind::partial;
  }
};

/// \brief Causal softmax attention: dense with `causal = true` (see dense).
struct causal : dense {
  constexpr causal() noexcept : dense{true} {}
};

}  // namespace semfocus
