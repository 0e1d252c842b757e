// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief The paper's banded mask: row i at position p = hs.position(i) (= i when n_q = n_k;
/// bottom-right aligned otherwise) keeps exactly k consecutive keys, the window [p - l, p + u]
/// with l = floor((k - 1) / 2), u = k - 1 - l, shifted (not truncated) at the edges: it starts at
/// start(i) = clamp(p - l, 0, n_k - k) and keeps [start(i), start(i) + k). Requires 1 <= k <= n_k.
struct banded {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  index_t k = 1;

  /// \throws invalid_argument if k < 1.
  explicit banded(index_t k_) : k(k_) {
    detail::require(k >= 1, "semfocus::banded: k must be >= 1, got ", k);
  }

  /// \throws invalid_argument unless 1 <= k <= n_k.
  void validate(const attention_shape& s) const {
    detail::require(k >= 1 && k <= s.n_k,
                    "semfocus::banded: k must be in [1, n_k] with n_k = ", s.n_k, ", got ", k);
  }

  /// \brief First kept key of row i; nondecreasing in i.
  SEMFOCUS_HD constexpr index_t start(const head_slice& hs, index_t i) const noexcept {
    const index_t lo = hs.position(i) - (k - 1) / 2;
    const index_t hi = hs.n_k - k;
    return lo < 0 ? 0 : (lo > hi ? hi : lo);
  }

  /// \brief Whether key j of row i is kept; O(1).
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    const index_t b = start(hs, i);
    return j >= b && j < b + k;
  }

  /// \brief Exact coverage of a tile. Windows are monotone in i: rows [i0, i1) together keep
  /// [start(i0), start(i1-1)+k) and all of them keep [start(i1-1), start(i0)+k).
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile& t) const noexcept {
    const index_t first = start(hs, t.i0), last = start(hs, t.i1 - 1);
    if (t.j1 <= first || t.j0 >= last + k) return tile_kind::none_kept;
    if (t.j0 >= last && t.j1 <= first + k) return tile_kind::all_kept;
    return tile_kind::partial;
  }

  friend constexpr bool operator==(const banded&, const banded&) = default;
};

}  // namespace semfocus
