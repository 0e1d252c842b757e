// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Sparse-Transformer strided mask (Child et al. 2019, non-causal form): row i keeps key j
/// when (i - j) mod stride == 0, and also every key with |i - j| <= local (a local window of
/// 2 local + 1 keys; local = 0 adds nothing since j = i is already kept when i < n_k).
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

  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice&, index_t i, index_t j, T) const noexcept {
    const index_t diff = i - j;
    return diff % stride == 0 || (diff <= local && -diff <= local);
  }

  /// \brief Over the tile, i - j ranges over the integers [lo, hi]; it is kept everywhere when
  /// the whole range lies in [-local, local] (or stride = 1), nowhere when the range holds no
  /// multiple of stride and misses [-local, local].
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice&, const tile& t) const noexcept {
    const index_t lo = t.i0 - (t.j1 - 1), hi = (t.i1 - 1) - t.j0;
    if (stride == 1 || (lo >= -local && hi <= local)) return tile_kind::all_kept;
    const index_t floor_hi = hi >= 0 ? hi / stride : -((-hi + stride - 1) / stride);
    const bool has_multiple = floor_hi * stride >= lo;
    const bool meets_window = hi >= -local && lo <= local;
    return has_multiple || meets_window ? tile_kind::partial : tile_kind::none_kept;
  }
};

}  // namespace semfocus
