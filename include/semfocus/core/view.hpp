// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <type_traits>
#include <utility>

#include "semfocus/config.hpp"
#include "semfocus/core/error.hpp"
#include "semfocus/core/shape.hpp"

namespace semfocus {

/// \brief Element strides of the three outer axes of a [batch, heads, seq, dim] view; the dim
/// axis always has stride 1 (rows are contiguous).
struct tensor_strides {
  index_t batch = 0;
  index_t heads = 0;
  index_t seq = 0;
  friend constexpr bool operator==(const tensor_strides&, const tensor_strides&) = default;
};

/// \brief Strides of the dense row-major layout of `s`.
constexpr tensor_strides row_major_strides(const tensor_shape& s) noexcept {
  return {s.heads * s.seq * s.dim, s.seq * s.dim, s.dim};
}

/// \brief A matrix type with contiguous rows that a view can wrap without a copy (an Eigen
/// row-major Matrix, Map, Ref or Block; anything with the same members).
template <class M>
concept row_major_matrix = requires {
  requires bool(std::remove_cvref_t<M>::IsRowMajor);
}
&&requires(M& m) {
  {m.data()};
  requires std::is_pointer_v<decltype(m.data())>;
  { m.rows() } -> std::convertible_to<index_t>;
  { m.cols() } -> std::convertible_to<index_t>;
  { m.outerStride() } -> std::convertible_to<index_t>;
  { m.innerStride() } -> std::convertible_to<index_t>;
};

/// \brief Non-owning view of a rank-4 tensor [batch, heads, seq, dim] with contiguous rows and
/// arbitrary non-negative outer strides (so both [B, H, S, D] and [B, S, H, D] storage work).
///
/// Shaped like a small std::mdspan: a pointer, extents and strides, no ownership, O(1) copies.
/// `tensor_view<const T>` is a read-only view; a `tensor_view<T>` converts to it implicitly.
/// Construction from a raw pointer cannot check the buffer; construction from a std::span
/// checks that the span covers every addressed element and throws semfocus::invalid_argument
/// otherwise.
template <class T>
class tensor_view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;

  /// \brief An empty view (null data, all extents 0).
  constexpr tensor_view() noexcept = default;

  /// \brief Dense row-major view of `shape.size()` elements at `data`.
  constexpr tensor_view(T* data, const tensor_shape& shape) noexcept
      : data_(data), shape_(shape), strides_(row_major_strides(shape)) {}

  /// \brief Strided view; element (b, h, i, c) is data[b*s.batch + h*s.heads + i*s.seq + c].
  constexpr tensor_view(T* data, const tensor_shape& shape, const tensor_strides& s) noexcept
      : data_(data), shape_(shape), strides_(s) {}

  /// \brief Dense row-major view over `buffer`. \throws invalid_argument if the buffer holds
  /// fewer than shape.size() elements.
  tensor_view(std::span<T> buffer, const tensor_shape& shape)
      : tensor_view(buffer, shape, row_major_strides(shape)) {}

  /// \brief Strided view over `buffer`. \throws invalid_argument if a stride is negative or
  /// the buffer is shorter than the largest addressed offset + 1.
  tensor_view(std::span<T> buffer, const tensor_shape& shape, const tensor_strides& s)
      : data_(buffer.data()), shape_(shape), strides_(s) {
    detail::require(s.batch >= 0 && s.heads >= 0 && s.seq >= 0,
                    "semfocus::tensor_view: strides must be >= 0, got {", s.batch, ", ", s.heads,
                    ", ", s.seq, "}");
    detail::require(extents_fit(), "semfocus::tensor_view: shape ", shape,
                    " must have extents >= 0 whose element count fits in index_t");
    detail::require(static_cast<index_t>(buffer.size()) >= required_size(),
                    "semfocus::tensor_view: buffer too small: it has ", buffer.size(),
                    " elements, shape ", shape, " needs at least ", required_size());
  }

  /// \brief Read-only view of a writable one.
  template <class U>
  requires(std::is_same_v<const U, T> &&
           !std::is_same_v<U, T>) constexpr tensor_view(const tensor_view<U>& other) noexcept
      : data_(other.data()), shape_(other.shape()), strides_(other.strides()) {}

  /// \brief View of a row-major matrix (rows = seq, cols = dim) as [1, 1, rows, cols], no copy.
  /// \throws invalid_argument if its inner stride is not 1.
  template <row_major_matrix M>
  requires std::is_convertible_v<decltype(std::declval<M&>().data()), T*> tensor_view(
      M&& m)  // NOLINT(google-explicit-constructor): a view, as std::span
      : data_(m.data()),
        shape_{1, 1, static_cast<index_t>(m.rows()), static_cast<index_t>(m.cols())},
        strides_{0, 0, static_cast<index_t>(m.outerStride())} {
    detail::require(m.innerStride() == 1,
                    "semfocus::tensor_view: matrix inner stride must be 1, got ", m.innerStride());
    strides_.heads = strides_.seq * shape_.seq;
    strides_.batch = strides_.heads;
  }

  /// \name Accessors: the pointer, extents and strides; O(1).
  /// \{
  SEMFOCUS_HD constexpr T* data() const noexcept { return data_; }
  SEMFOCUS_HD constexpr const tensor_shape& shape() const noexcept { return shape_; }
  SEMFOCUS_HD constexpr const tensor_strides& strides() const noexcept { return strides_; }
  SEMFOCUS_HD constexpr index_t batch() const noexcept { return shape_.batch; }
  SEMFOCUS_HD constexpr index_t heads() const noexcept { return shape_.heads; }
  SEMFOCUS_HD constexpr index_t seq() const noexcept { return shape_.seq; }
  SEMFOCUS_HD constexpr index_t dim() const noexcept { return shape_.dim; }
  SEMFOCUS_HD constexpr index_t size() const noexcept { return shape_.size(); }
  SEMFOCUS_HD constexpr bool empty() const noexcept { return size() == 0; }
  /// \}

  /// \brief Pointer to row (b, h, i): `dim()` contiguous elements.
  SEMFOCUS_HD constexpr T* row(index_t b, index_t h, index_t i) const noexcept {
    return data_ + b * strides_.batch + h * strides_.heads + i * strides_.seq;
  }
  /// \brief Element (b, h, i, c); no bounds check.
  SEMFOCUS_HD constexpr T& operator()(index_t b, index_t h, index_t i, index_t c) const noexcept {
    return row(b, h, i)[c];
  }

  /// \brief True when the extents are >= 0 and size() and required_size() are computable without
  /// overflowing index_t (checked by every entry point before they are used).
  constexpr bool extents_fit() const noexcept {
    index_t count = 1, span = shape_.dim, term = 0;
    for (const index_t e : {shape_.batch, shape_.heads, shape_.seq, shape_.dim})
      if (e < 0 || __builtin_mul_overflow(count, e, &count)) return false;
    if (count == 0) return true;
    const index_t axes[3][2] = {
        {strides_.batch, shape_.batch}, {strides_.heads, shape_.heads}, {strides_.seq, shape_.seq}};
    for (const auto& a : axes)
      if (__builtin_mul_overflow(a[0], a[1] - 1, &term) ||
          __builtin_add_overflow(span, term, &span))
        return false;
    return true;
  }

  /// \brief One past the largest element offset this view addresses (0 when empty).
  constexpr index_t required_size() const noexcept {
    if (empty()) return 0;
    return (shape_.batch - 1) * strides_.batch + (shape_.heads - 1) * strides_.heads +
           (shape_.seq - 1) * strides_.seq + shape_.dim;
  }

  /// \brief Same pointer, shape and strides (not an element comparison).
  friend constexpr bool operator==(const tensor_view&, const tensor_view&) = default;

  /// \brief True when no two index tuples address the same element (a sufficient test: each
  /// axis, taken in order of increasing stride, steps past everything the smaller axes span).
  constexpr bool is_non_overlapping() const noexcept {
    if (empty()) return true;
    struct axis {
      index_t stride, extent;
    };
    axis a[3] = {
        {strides_.seq, shape_.seq}, {strides_.heads, shape_.heads}, {strides_.batch, shape_.batch}};
    for (int x = 0; x < 3; ++x)  // insertion sort by stride
      for (int y = x; y > 0 && a[y].stride < a[y - 1].stride; --y) std::swap(a[y], a[y - 1]);
    index_t span = shape_.dim;  // elements [0, span) reached by the axes seen so far
    for (const axis& ax : a) {
      if (ax.extent == 1) continue;
      if (ax.stride < span) return false;
      span = ax.stride * (ax.extent - 1) + span;
    }
    return true;
  }

 private:
  T* data_ = nullptr;
  tensor_shape shape_{};
  tensor_strides strides_{};
};

template <row_major_matrix M>
tensor_view(M&&) -> tensor_view<std::remove_pointer_t<decltype(std::declval<M&>().data())>>;

/// \brief A view of a row-major matrix (see the tensor_view constructor), deducing the type.
template <row_major_matrix M>
auto view(M&& m) {
  return tensor_view<std::remove_pointer_t<decltype(m.data())>>(std::forward<M>(m));
}

}  // namespace semfocus
