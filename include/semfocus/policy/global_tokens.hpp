// SPDX-License-Identifier: MIT
#pragma once

#include <sstream>

#include "semfocus/core/error.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief A fixed mask plus G global tokens at the end of the sequence (the paper's "+G"):
/// the last G query rows keep every key, every row keeps the last G keys, and the other
/// (n_q - G) x (n_k - G) block follows `inner` applied to that block's own extents (so
/// banded(k) + G keeps exactly k + G keys in each non-global row; positions keep the bottom-right
/// alignment of head_slice::position). Requires G >= 0,
/// G <= n_q and G <= n_k, and whatever `inner` requires of the reduced shape.
template <fixed_mask Mask>
struct with_global {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  Mask inner;
  index_t g = 0;

  /// \throws invalid_argument if g < 0.
  with_global(const Mask& m, index_t g_) : inner(m), g(g_) {
    detail::require(g >= 0, "semfocus::with_global: the number of global tokens must be >= 0, got ",
                    g);
  }

  /// \throws invalid_argument unless 0 <= g <= min(n_q, n_k), or if inner rejects the shape
  /// without the global tokens.
  void validate(const attention_shape& s) const {
    detail::require(
        g >= 0 && g <= s.n_q && g <= s.n_k,
        "semfocus::with_global: the number of global tokens must be in [0, min(n_q, n_k)] = [0, ",
        s.n_q < s.n_k ? s.n_q : s.n_k, "], got ", g);
    attention_shape reduced = s;
    reduced.n_q -= g;
    reduced.n_k -= g;
    try {
      validate_policy(inner, reduced);
    } catch (const invalid_argument& e) {
      std::ostringstream os;
      os << "semfocus::with_global: the inner mask applies to the (n_q - G) x (n_k - G) = "
         << reduced.n_q << " x " << reduced.n_k << " block (G = " << g << "): " << e.what();
      throw invalid_argument(os.str());
    }
  }

  /// \brief The slice seen by the inner mask: the non-global block.
  SEMFOCUS_HD constexpr head_slice inner_slice(const head_slice& hs) const noexcept {
    return {hs.batch, hs.head, hs.n_q - g, hs.n_k - g};
  }

  /// \brief Whether key j of row i is kept; O(1) plus the inner mask's cost.
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T s) const noexcept {
    const head_slice in = inner_slice(hs);
    return i >= in.n_q || j >= in.n_k || inner.keep(in, i, j, s);
  }

  /// \brief Coverage of a tile: all kept in the global rows or columns, else the inner mask's
  /// answer on the clipped tile (partial if the tile also reaches a global row or column).
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile& t) const noexcept {
    const head_slice in = inner_slice(hs);
    if (t.i0 >= in.n_q || t.j0 >= in.n_k) return tile_kind::all_kept;
    const tile clipped{t.i0, t.i1 < in.n_q ? t.i1 : in.n_q, t.j0, t.j1 < in.n_k ? t.j1 : in.n_k};
    const tile_kind k = classify_tile(inner, in, clipped);
    const bool touches_global = t.i1 > in.n_q || t.j1 > in.n_k;
    if (!touches_global || k == tile_kind::all_kept) return k;
    return tile_kind::partial;
  }

  friend constexpr bool operator==(const with_global&, const with_global&) = default;
};

/// \brief `mask` with `g` global tokens appended (see with_global).
template <fixed_mask Mask>
with_global<Mask> global_tokens(const Mask& mask, index_t g) {
  return with_global<Mask>(mask, g);
}

}  // namespace semfocus
