// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief The paper's block-local mask: the key sequence is cut into contiguous blocks of k (the
/// last one shorter when k does not divide n_k, as padding to a multiple of k would give); row i
/// at position p = hs.position(i) (= i when n_q = n_k) keeps the keys of its own block,
/// j / k == p / k. Rows at negative positions (the first n_q - n_k when n_q > n_k) are empty.
/// Requires k >= 1.
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

  /// \brief Whether key j of row i is kept; O(1).
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    const index_t p = hs.position(i);
    return p >= 0 && p / k == j / k;
  }

  /// \brief Exact coverage of a tile: compares the blocks of its rows and of its keys; O(1).
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile& t) const noexcept {
    const index_t p0 = hs.position(t.i0), p1 = hs.position(t.i1 - 1);
    if (p1 < 0) return tile_kind::none_kept;
    const index_t rb0 = p0 < 0 ? -1 : p0 / k, rb1 = p1 / k;  // row blocks (-1: empty rows)
    const index_t kb0 = t.j0 / k, kb1 = (t.j1 - 1) / k;      // key blocks
    if (kb1 < rb0 || kb0 > rb1) return tile_kind::none_kept;
    if (rb0 == rb1 && kb0 == kb1 && kb0 == rb0) return tile_kind::all_kept;
    return tile_kind::partial;
  }

  friend constexpr bool operator==(const block_local&, const block_local&) = default;
};

}  // namespace semfocus
