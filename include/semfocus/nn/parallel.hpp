// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <vector>

#include "semfocus/backend/simd/parallel.hpp"
#include "semfocus/nn/tensor.hpp"
#if defined(SEMFOCUS_HAS_XSIMD)
#include "semfocus/backend/simd/kernels.hpp"
#include "semfocus/core/view.hpp"
#endif

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

#if defined(SEMFOCUS_HAS_XSIMD)
/// The SIMD backend's GEMM kernels (one fma chain per output entry, so a chunk's bits do not
/// depend on how the other chunks run).
template <class T>
using gemm_kernels = backend::simd::kernels<T>;

/// \brief Scratch buffer `which` (0-2) of the calling thread with room for `size` T (grows, never
/// shrinks): the packed GEMM operands, filled before a parallel pass and only read during it.
template <class T>
T* pack_buffer(int which, index_t size) {
  thread_local std::vector<T> buffers[3];
  std::vector<T>& b = buffers[which];
  if (b.size() < static_cast<std::size_t>(size)) b.resize(static_cast<std::size_t>(size));
  return b.data();
}

/// \brief The rows of m as a {1, 1, rows, cols} view (the kernels' packing input).
template <class T>
tensor_view<const T> rows_view(const matrix<T>& m) noexcept {
  return {m.data(), {1, 1, m.rows(), m.cols()}, {m.rows() * m.cols(), m.cols(), m.cols()}};
}
#endif

/// The epilogue that does nothing (affine_forward, affine_backward).
struct no_epilogue {
  template <class T>
  void operator()(matrix<T>&, index_t, index_t) const noexcept {}
};

/// \brief y = x W^T + b for x [m, in], W [out, in], b [1, out]: y resized to [m, out], computed
/// row_chunk rows at a time: with xsimd and out a multiple of the vector width, by the SIMD
/// backend's GEMM kernel on W^T packed once; otherwise by Eigen. Then, in the same task (the
/// chunk still in cache, no further pass over the pool), epilogue(y, r0, r1), which may read
/// and write rows [r0, r1) of y and of other row-aligned matrices only. O(m in out).
template <class T, class Epilogue = no_epilogue>
void affine_forward(const matrix<T>& x, const matrix<T>& w, const matrix<T>& b, matrix<T>& y,
                    int threads, Epilogue&& epilogue = {}) {
  const index_t out = w.rows();
  y.resize(x.rows(), out);
#if defined(SEMFOCUS_HAS_XSIMD)
  using k = gemm_kernels<T>;
  if (const index_t in = w.cols(); out % k::width == 0) {
    const index_t blk = k::round_up(out, k::nr);
    T* packed = pack_buffer<T>(0, blk * in);
    k::pack_b_transposed(rows_view(w), 0, 0, 0, out, packed, blk);
    for_chunks(x.rows(), row_chunk, threads, [&](index_t r0, index_t r1) {
      k::template gemm<false>(r1 - r0, out, in, x.data() + r0 * in, in, 1, packed, in * k::nr,
                              y.data() + r0 * out, out, b.data());  // + b at the store
      epilogue(y, r0, r1);
    });
    return;
  }
#endif
  for_chunks(x.rows(), row_chunk, threads, [&](index_t r0, index_t r1) {
    auto yc = y.middleRows(r0, r1 - r0);
    yc.noalias() = x.middleRows(r0, r1 - r0) * w.transpose();
    yc.rowwise() += b.row(0);
    epilogue(y, r0, r1);
  });
}

/// \brief The gradients of y = x W^T + b given dy [m, out]: dW += dy^T x (col_chunk columns of
/// dW at a time, each entry summed over the m rows in order), db += the column sums of dy, and,
/// when dx is not null, dx = dy W [m, in] (row_chunk rows at a time), each chunk followed in its
/// task by epilogue(*dx, r0, r1) (as in affine_forward). With xsimd and in a multiple of the
/// vector width, the GEMMs run on the SIMD backend's kernel (x and W packed); otherwise on
/// Eigen. O(m in out).
template <class T, class Epilogue = no_epilogue>
void affine_backward(const matrix<T>& dy, const matrix<T>& x, const matrix<T>& w, matrix<T>& dw,
                     matrix<T>& db, matrix<T>* dx, int threads, Epilogue&& epilogue = {}) {
  const index_t m = x.rows(), in = x.cols();
  db += dy.colwise().sum();
  if (dx != nullptr) dx->resize(m, in);
#if defined(SEMFOCUS_HAS_XSIMD)
  using k = gemm_kernels<T>;
  const index_t out = dy.cols();
  static_assert(col_chunk % k::nr == 0, "a column chunk holds whole packed panels");
  if (in % k::width == 0) {
    // Each column chunk packs its own panels of x; dy is read in place (A(i, p) = dy(p, i)).
    T* xp = pack_buffer<T>(1, k::panels_size(m, in));
    for_chunks(in, col_chunk, threads, [&](index_t c0, index_t c1) {
      T* panels = xp + c0 / k::nr * m * k::nr;
      const tensor_view<const T> cols{x.data() + c0, {1, 1, m, c1 - c0}, {m * in, in, in}};
      k::pack_b_rows(cols, 0, 0, 0, m, m, panels);
      k::template gemm<true>(out, c1 - c0, m, dy.data(), 1, out, panels, m * k::nr, dw.data() + c0,
                             in);
    });
    if (dx == nullptr) return;
    T* wp = pack_buffer<T>(2, k::panels_size(out, in));
    k::pack_b_rows(rows_view(w), 0, 0, 0, out, out, wp);
    for_chunks(m, row_chunk, threads, [&](index_t r0, index_t r1) {
      k::template gemm<false>(r1 - r0, in, out, dy.data() + r0 * out, out, 1, wp, out * k::nr,
                              dx->data() + r0 * in, in);
      epilogue(*dx, r0, r1);
    });
    return;
  }
#endif
  for_chunks(in, col_chunk, threads, [&](index_t c0, index_t c1) {
    dw.middleCols(c0, c1 - c0).noalias() += dy.transpose() * x.middleCols(c0, c1 - c0);
  });
  if (dx == nullptr) return;
  for_chunks(m, row_chunk, threads, [&](index_t r0, index_t r1) {
    dx->middleRows(r0, r1 - r0).noalias() = dy.middleRows(r0, r1 - r0) * w;
    epilogue(*dx, r0, r1);
  });
}

}  // namespace detail
}  // namespace semfocus::nn
