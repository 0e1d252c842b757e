// SPDX-License-Identifier: MIT
#pragma once

#include <type_traits>

#include "semfocus/core/error.hpp"
#include "semfocus/core/view.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief A user-supplied boolean mask: key j of row i in slice (b, h) is kept when
/// mask(b', h', i, j) != 0, where the mask view is [mb, mh, n_q, n_k] with mb in {1, batch} and
/// mh in {1, heads} (an extent of 1 broadcasts, as PyTorch's attn_mask). Elem is bool or an
/// integer type. The policy holds a view: the mask memory must outlive every call using it,
/// and for a GPU backend it must be device memory.
template <class Elem = bool>
struct explicit_mask {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  tensor_view<const Elem> mask;

  /// \brief Views `m`; checked against the problem by validate() at every call.
  explicit explicit_mask(tensor_view<const Elem> m) noexcept : mask(m) {}

  /// \throws invalid_argument on null data, negative strides or a mask shape other than
  /// [1 or batch, 1 or heads, n_q, n_k].
  void validate(const attention_shape& s) const {
    const tensor_shape& m = mask.shape();
    detail::require(m.seq == s.n_q && m.dim == s.n_k,
                    "semfocus::explicit_mask: mask must have n_q x n_k = ", s.n_q, " x ", s.n_k,
                    " in its last two axes, got shape ", m);
    detail::require(m.batch == 1 || m.batch == s.batch,
                    "semfocus::explicit_mask: mask batch must be 1 or ", s.batch, ", got ",
                    m.batch);
    detail::require(m.heads == 1 || m.heads == s.heads,
                    "semfocus::explicit_mask: mask heads must be 1 or ", s.heads, ", got ",
                    m.heads);
    detail::require(mask.empty() || mask.data() != nullptr,
                    "semfocus::explicit_mask: mask data is null");
    const tensor_strides& st = mask.strides();
    detail::require(st.batch >= 0 && st.heads >= 0 && st.seq >= 0,
                    "semfocus::explicit_mask: mask strides must be >= 0");
  }

  /// \brief Whether key j of row i is kept: one load; O(1).
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    const index_t b = mask.batch() == 1 ? 0 : hs.batch;
    const index_t h = mask.heads() == 1 ? 0 : hs.head;
    return mask(b, h, i, j) != Elem{};
  }

  /// \brief Equal when they view the same memory the same way.
  friend constexpr bool operator==(const explicit_mask&, const explicit_mask&) = default;
};

template <class Elem>
explicit_mask(tensor_view<Elem>) -> explicit_mask<std::remove_const_t<Elem>>;

}  // namespace semfocus
