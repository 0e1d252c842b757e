// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "semfocus/nn/init.hpp"
#include "semfocus/nn/parallel.hpp"
#include "semfocus/nn/tensor.hpp"

namespace semfocus::nn {

/// \brief Inverted dropout (torch.nn.Dropout): in training y = x * m / (1 - p) with
/// m_i ~ Bernoulli(1 - p) independent per element; the identity otherwise (and for p = 0).
///
/// A call draws one 64-bit key from the generator; the mask is a function of that key alone,
/// counter-based so that any part of it can be computed on its own (in parallel chunks, with the
/// same bits for every thread count, and again in backward instead of being stored): element i
/// of x (row-major) is kept iff word(key, i) < floor((1 - p) 2^32), where
/// word(key, i) = fmix32(k_hi ^ fmix32(k_lo + i mod 2^32)) with k_lo, k_hi the key's low and high
/// halves and fmix32 MurmurHash3's finaliser (a bijection of 32-bit words with full avalanche).
/// So P(keep) = 1 - p to within 2^-32, one seeded generator gives the same mask on every platform,
/// and a matrix of more than 2^32 elements repeats its mask with period 2^32.
template <class T>
class dropout {
 public:
  /// \brief Drop probability p. \throws invalid_argument unless 0 <= p < 1.
  explicit dropout(double p = 0) : p_(p) {
    semfocus::detail::require(std::isfinite(p) && p >= 0 && p < 1,
                              "semfocus::nn::dropout: p must be in [0, 1), got ", p);
  }

  /// \brief The drop probability.
  double p() const noexcept { return p_; }

  /// \brief Threads of forward and backward (n < 1 means 1); the results do not depend on it.
  void set_threads(int n) noexcept { threads_ = std::max(1, n); }

  /// \brief In place: x <- x * m / (1 - p) with a fresh mask (one key drawn from `gen`) when
  /// `gen` is not null and p > 0 (training); otherwise x is unchanged and nothing is drawn
  /// (evaluation). Remembers the key and shape (or that no mask was drawn) for backward. O(size).
  void forward(matrix<T>& x, rng* gen) {
    active_ = gen != nullptr && p_ > 0;
    if (!active_) return;
    key_ = gen->bits();
    rows_ = x.rows();
    cols_ = x.cols();
    apply(x);
  }

  /// \brief Word i of the mask of `key` (see the class comment). O(1).
  static std::uint32_t word(std::uint64_t key, index_t i) noexcept {
    const auto lo = static_cast<std::uint32_t>(key), hi = static_cast<std::uint32_t>(key >> 32);
    return fmix32(hi ^ fmix32(lo + static_cast<std::uint32_t>(i)));
  }

  /// \brief In place: dy <- dy * m / (1 - p) with the last forward's mask (unchanged when that
  /// forward drew none). O(size). \throws invalid_argument if dy's shape is not the last forward's.
  void backward(matrix<T>& dy) const {
    if (!active_) return;
    semfocus::detail::require(dy.rows() == rows_ && dy.cols() == cols_,
                              "semfocus::nn::dropout::backward: dy must be ", rows_, " x ", cols_,
                              " (the last forward's shape), got ", dy.rows(), " x ", dy.cols());
    apply(dy);
  }

  /// \brief The same as a value: dy itself when the last forward drew no mask, else `scratch`
  /// set to dy * m / (1 - p) (no copy in evaluation or for p = 0). \throws as above.
  const matrix<T>& backward(const matrix<T>& dy, matrix<T>& scratch) const {
    if (!active_) return dy;
    scratch = dy;
    backward(scratch);
    return scratch;
  }

  /// \brief Whether the last forward drew a mask.
  bool active() const noexcept { return active_; }

 private:
  static std::uint32_t fmix32(std::uint32_t h) noexcept {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
  }

  // v <- v * m / (1 - p) with the mask of key_, row_chunk rows at a time.
  void apply(matrix<T>& v) const {
    const auto keep_below = static_cast<std::uint32_t>(std::ldexp(1.0 - p_, 32));
    const T scale = static_cast<T>(1.0 / (1.0 - p_));
    const index_t cols = v.cols();
    detail::for_chunks(v.rows(), detail::row_chunk, threads_, [&](index_t r0, index_t r1) {
      apply_range(v.data(), r0 * cols, r1 * cols, key_, keep_below, scale);
    });
  }

  // Elements [i0, i1) of v (by value: no aliasing, so the loop vectorises).
  static void apply_range(T* v, index_t i0, index_t i1, std::uint64_t key, std::uint32_t keep_below,
                          T scale) noexcept {
    for (index_t i = i0; i < i1; ++i) v[i] *= word(key, i) < keep_below ? scale : T(0);
  }

  double p_;
  int threads_ = 1;
  bool active_ = false;
  std::uint64_t key_ = 0;  // of the last active forward
  index_t rows_ = 0, cols_ = 0;
};

}  // namespace semfocus::nn
