// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <concepts>

#include "semfocus/backend/simd/parallel.hpp"
#include "semfocus/nn/tensor.hpp"

// The nn layers' threading. Work is cut into fixed chunks that depend only on the shapes, never
// on the thread count: rows of an activation [rows, width] in chunks of row_chunk, columns of a
// weight gradient in chunks of col_chunk. Every chunk is computed by the same code on the same
// operands wherever it runs and no two chunks write the same element, so a layer's results are
// bit-identical for 1, 2 or any number of threads. The threads are the SIMD backend's pool (the
// attention's); with one thread the chunks run in increasing order on the caller.
namespace semfocus::nn {

/// \brief The thread count a model's layers use (>= 1): exec.resolved_threads() for an executor
/// that has one (exec::simd_t), else 1 (exec::reference_t, ...). O(1).
template <class Exec>
int threads_of(const Exec& exec) noexcept {
  if constexpr (requires {
                  { exec.resolved_threads() } -> std::convertible_to<int>;
                }) {
    return std::max(1, static_cast<int>(exec.resolved_threads()));
  } else {
    return 1;
  }
}

namespace detail {

/// Rows per chunk of a row-parallel pass: 128 rows of width <= 192 floats keep a chunk's GEMM
/// operands (at most 96 KB of rows plus the weights) in L2, and the paper's batches (25 x 40 rows
/// training, 250 x 40 evaluating) split into 8 and 79 chunks, enough to balance two threads.
inline constexpr index_t row_chunk = 128;
/// Columns per chunk of a weight gradient dW = dY^T X computed one column block of X at a time.
inline constexpr index_t col_chunk = 32;

/// \brief Calls fn(begin, end) for every chunk [c chunk, min(size, (c + 1) chunk)) of [0, size),
/// c = 0, 1, ..., on up to `threads` threads; rethrows the first exception of fn. fn must only
/// write what its chunk owns.
template <class F>
void for_chunks(index_t size, index_t chunk, int threads, F&& fn) {
  const index_t n = (size + chunk - 1) / chunk;
  auto body = [&fn, size, chunk](index_t c, int) {
    fn(c * chunk, std::min(size, (c + 1) * chunk));
  };
  if (threads <= 1 || n <= 1) {
    for (index_t c = 0; c < n; ++c) body(c, 0);
    return;
  }
  backend::simd::thread_pool::instance().run(n, threads, body);
}

/// \brief y = x W^T + b for x [m, in], W [out, in], b [1, out]: y resized to [m, out], computed
/// row_chunk rows at a time. O(m in out).
template <class T>
void affine_forward(const matrix<T>& x, const matrix<T>& w, const matrix<T>& b, matrix<T>& y,
                    int threads) {
  y.resize(x.rows(), w.rows());
  for_chunks(x.rows(), row_chunk, threads, [&](index_t r0, index_t r1) {
    auto yc = y.middleRows(r0, r1 - r0);
    yc.noalias() = x.middleRows(r0, r1 - r0) * w.transpose();
    yc.rowwise() += b.row(0);
  });
}

/// \brief The gradients of y = x W^T + b given dy [m, out]: dW += dy^T x (col_chunk columns of
/// dW at a time, each summed over the m rows in order), db += the column sums of dy, and, when dx
/// is not null, dx = dy W [m, in] (row_chunk rows at a time). O(m in out).
template <class T>
void affine_backward(const matrix<T>& dy, const matrix<T>& x, const matrix<T>& w, matrix<T>& dw,
                     matrix<T>& db, matrix<T>* dx, int threads) {
  for_chunks(x.cols(), col_chunk, threads, [&](index_t c0, index_t c1) {
    dw.middleCols(c0, c1 - c0).noalias() += dy.transpose() * x.middleCols(c0, c1 - c0);
  });
  db += dy.colwise().sum();
  if (dx == nullptr) return;
  dx->resize(dy.rows(), w.cols());
  for_chunks(dy.rows(), row_chunk, threads, [&](index_t r0, index_t r1) {
    dx->middleRows(r0, r1 - r0).noalias() = dy.middleRows(r0, r1 - r0) * w;
  });
}

}  // namespace detail
}  // namespace semfocus::nn
