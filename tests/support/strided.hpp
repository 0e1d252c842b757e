// SPDX-License-Identifier: MIT
#pragma once

// Tensors stored in non-contiguous buffers, for the tests that pass strided views: a copy of a
// test tensor in [batch, seq, heads, dim] order or with gaps, whose gaps hold a fill value that
// the library must never read into a result (inputs) nor overwrite (outputs).

#include <cstring>
#include <span>
#include <vector>

#include <semfocus/semfocus.hpp>

#include "support/tensors.hpp"

namespace semfocus::test {

/// \brief A copy of a tensor in a strided buffer (see restride). Every element outside the view
/// (the gaps and the tail) holds `fill`.
template <class T>
struct strided_tensor {
  tensor_shape shape;
  tensor_strides strides;
  std::vector<T> buf;
  T fill;

  tensor_view<T> view() { return {std::span<T>(buf), shape, strides}; }
  tensor_view<const T> cview() const { return {std::span<const T>(buf), shape, strides}; }
  /// \brief Position of element (b, h, i, c) in buf.
  std::size_t offset(index_t b, index_t h, index_t i, index_t c) const {
    return std::size_t(b * strides.batch + h * strides.heads + i * strides.seq + c);
  }
  /// \brief The elements of the view as a contiguous [batch, heads, seq, dim] tensor.
  tensor<T> contiguous() const {
    tensor<T> t(shape);
    for (index_t b = 0; b < shape.batch; ++b)
      for (index_t h = 0; h < shape.heads; ++h)
        for (index_t i = 0; i < shape.seq; ++i)
          for (index_t c = 0; c < shape.dim; ++c) t(b, h, i, c) = buf[offset(b, h, i, c)];
    return t;
  }
  /// \brief Whether every element outside the view still holds `fill` (bitwise).
  bool gaps_untouched() const {
    std::vector<bool> in_view(buf.size(), false);
    for (index_t b = 0; b < shape.batch; ++b)
      for (index_t h = 0; h < shape.heads; ++h)
        for (index_t i = 0; i < shape.seq; ++i)
          for (index_t c = 0; c < shape.dim; ++c) in_view[offset(b, h, i, c)] = true;
    for (std::size_t x = 0; x < buf.size(); ++x)
      if (!in_view[x] && std::memcmp(&buf[x], &fill, sizeof(T)) != 0) return false;
    return true;
  }
};

/// \brief How restride stores a tensor: row-major [batch, heads, seq, dim] (no gaps), [batch,
/// seq, heads, dim] through strides (no gaps), or padded (gaps after every row, head and batch).
enum class layout { contiguous, bshd, padded };

/// \brief The gaps of layout::padded, in elements: after every row (>= 1 leaves a gap between
/// rows), after every head, after every batch, and after the last element.
struct padding {
  index_t seq = 3;
  index_t heads = 5;
  index_t batch = 7;
  index_t tail = 11;
};

/// \brief A copy of `t` stored in layout `l` (with gaps `pad` when padded), gaps filled with
/// `fill`. O(buffer size).
template <class T>
strided_tensor<T> restride(const tensor<T>& t, layout l, T fill, const padding& pad = {}) {
  const tensor_shape& s = t.shape;
  strided_tensor<T> r{s, {}, {}, fill};
  if (l == layout::contiguous) {
    r.strides = row_major_strides(s);
  } else if (l == layout::bshd) {
    r.strides = {s.seq * s.heads * s.dim, s.dim, s.heads * s.dim};
  } else {
    r.strides.seq = s.dim + pad.seq;
    r.strides.heads = s.seq * r.strides.seq + pad.heads;
    r.strides.batch = s.heads * r.strides.heads + pad.batch;
  }
  const index_t needed = tensor_view<const T>(nullptr, s, r.strides).required_size();
  r.buf.assign(std::size_t(needed + (l == layout::padded ? pad.tail : 0)), fill);
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.seq; ++i)
        for (index_t c = 0; c < s.dim; ++c) r.buf[r.offset(b, h, i, c)] = t(b, h, i, c);
  return r;
}

}  // namespace semfocus::test
