// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief The paper's block-local mask: the sequence is cut into contiguous blocks of k
/// (the last one shorter when k does not divide n, as padding to a multiple of k would give);
/// row i keeps the keys of its own block, j / k == i / k. Rows whose block has no key
/// (i >= n_k rounded up to a multiple of k, only when n_q > n_k) are empty. Requires k >= 1.
struct block_local {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  index_t k = 1;

  /// \throws invalid_argument if k < 1.
  explicit block_local(index_t k_) : k(k_) {
    detail::require(k >= 1, "semfocus::block_local: k must be >= 1, got ", k);
  }

  /// \throws invalid_argument if k < 1.
  void validate(const attention_shape&) const {
    detail::require(k >= 1, "semfocus::block_local: k must be >= 1, got ", k);
  }

  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice&, index_t i, index_t j, T) const noexcept {
    return i / k == j / k;
  }

  SEMFOCUS_HD constexpr tile_kind classify(const head_slice&, const tile& t) const noexcept {
    const index_t rb0 = t.i0 / k, rb1 = (t.i1 - 1) / k;  // row blocks
    const index_t kb0 = t.j0 / k, kb1 = (t.j1 - 1) / k;  // key blocks
    if (kb1 < rb0 || kb0 > rb1) return tile_kind::none_kept;
    if (rb0 == rb1 && kb0 == kb1 && kb0 == rb0) return tile_kind::all_kept;
    return tile_kind::partial;
  }
};

}  // namespace semfocus
