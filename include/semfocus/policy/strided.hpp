// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Sparse-Transformer strided mask (Child et al. 2019, non-causal form): row i at position
/// p = hs.position(i) (= i when n_q = n_k) keeps key j when (p - j) mod stride == 0, and also every
/// key with |p - j| <= local (a local window of 2 local + 1 keys; local = 0 adds nothing).
/// Requires stride >= 1 and local >= 0. About n_k / stride + 2 local keys per row.
struct strided {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  index_t stride = 1;
  index_t local = 0;

  /// \throws invalid_argument if stride < 1 or local < 0.
  explicit strided(index_t stride_, index_t local_ = 0) : stride(stride_), local(local_) {
    validate(attention_shape{});
  }

  /// \throws invalid_argument if stride < 1 or local < 0.
  void validate(const attention_shape&) const {
    detail::require(stride >= 1, "semfocus::strided: stride must be >= 1, got ", stride);
    detail::require(local >= 0, "semfocus::strided: local must be >= 0, got ", local);
  }

  /// \brief Whether key j of row i is kept; O(1).
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    const index_t diff = hs.position(i) - j;
    return diff % stride == 0 || (diff <= local && -diff <= local);
  }

  /// \brief Coverage of a tile; O(1). Over the tile, p - j ranges over the integers [lo, hi]: kept
  /// everywhere when the range lies in [-local, local] (or stride = 1), nowhere when it holds no
  /// multiple of stride and misses [-local, local], else reported partial.
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile& t) const noexcept {
    const index_t lo = hs.position(t.i0) - (t.j1 - 1), hi = hs.position(t.i1 - 1) - t.j0;
    if (stride == 1 || (lo >= -local && hi <= local)) return tile_kind::all_kept;
    const index_t floor_hi = hi >= 0 ? hi / stride : -((-hi + stride - 1) / stride);
    const bool has_multiple = floor_hi * stride >= lo;
    const bool meets_window = hi >= -local && lo <= local;
    return has_multiple || meets_window ? tile_kind::partial : tile_kind::none_kept;
  }

  friend constexpr bool operator==(const strided&, const strided&) = default;
};

}  // namespace semfocus
