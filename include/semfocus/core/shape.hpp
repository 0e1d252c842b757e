// SPDX-License-Identifier: MIT
#pragma once

#include <ostream>

#include "semfocus/config.hpp"

namespace semfocus {

/// \brief Extents of a rank-4 tensor laid out as [batch, heads, seq, dim].
struct tensor_shape {
  index_t batch = 0;
  index_t heads = 0;
  index_t seq = 0;
  index_t dim = 0;

  /// \brief Number of elements, batch * heads * seq * dim.
  SEMFOCUS_HD constexpr index_t size() const noexcept { return batch * heads * seq * dim; }
  friend constexpr bool operator==(const tensor_shape&, const tensor_shape&) = default;
  friend std::ostream& operator<<(std::ostream& os, const tensor_shape& s) {
    return os << '[' << s.batch << ", " << s.heads << ", " << s.seq << ", " << s.dim << ']';
  }
};

/// \brief The whole problem: Q [batch, heads, n_q, d], K [batch, heads, n_k, d],
/// V [batch, heads, n_k, d_v], O [batch, heads, n_q, d_v].
struct attention_shape {
  index_t batch = 0;
  index_t heads = 0;
  index_t n_q = 0;
  index_t n_k = 0;
  index_t d = 0;
  index_t d_v = 0;

  /// \brief The shapes of Q, K, V and O (also dQ, dK, dV and dO).
  SEMFOCUS_HD constexpr tensor_shape q() const noexcept { return {batch, heads, n_q, d}; }
  SEMFOCUS_HD constexpr tensor_shape k() const noexcept { return {batch, heads, n_k, d}; }
  SEMFOCUS_HD constexpr tensor_shape v() const noexcept { return {batch, heads, n_k, d_v}; }
  SEMFOCUS_HD constexpr tensor_shape out() const noexcept { return {batch, heads, n_q, d_v}; }
  /// \brief Number of score rows, batch * heads * n_q (the length of the log-sum-exp).
  SEMFOCUS_HD constexpr index_t rows() const noexcept { return batch * heads * n_q; }
  friend constexpr bool operator==(const attention_shape&, const attention_shape&) = default;
  friend std::ostream& operator<<(std::ostream& os, const attention_shape& s) {
    return os << "{batch " << s.batch << ", heads " << s.heads << ", n_q " << s.n_q << ", n_k "
              << s.n_k << ", d " << s.d << ", d_v " << s.d_v << '}';
  }
};

/// \brief What a policy is told about the score matrix it selects from: the (batch, head) it
/// belongs to and its extents n_q x n_k. Trivially copyable; passed by value to kernels.
struct head_slice {
  index_t batch = 0;
  index_t head = 0;
  index_t n_q = 0;
  index_t n_k = 0;

  /// \brief Key position of query i for positional masks: i + n_k - n_q, i.e. the queries are the
  /// last n_q positions of the key sequence (bottom-right alignment, as FlashAttention >= 2.1);
  /// i itself when n_q = n_k. Negative for the first n_q - n_k queries when n_q > n_k.
  SEMFOCUS_HD constexpr index_t position(index_t i) const noexcept { return i + n_k - n_q; }
};

/// \brief A rectangle of the score matrix: rows [i0, i1), keys [j0, j1).
struct tile {
  index_t i0 = 0;
  index_t i1 = 0;
  index_t j0 = 0;
  index_t j1 = 0;
};

}  // namespace semfocus
