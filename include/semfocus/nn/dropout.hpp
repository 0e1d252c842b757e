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
/// same bits for every thread count): element i of x (row-major) takes the 32-bit word i of the
/// stream w_j = mix(key + (j + 1) 0x9e3779b97f4a7c15), j = 0, 1, ... (mix: splitmix64's
/// finaliser; the low word of w_j first, then its high word) and is kept iff word <
/// floor((1 - p) 2^32), so P(keep) = 1 - p to within 2^-32 and one seeded generator gives the
/// same mask on every platform.
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
  /// (evaluation). Remembers the mask (or its absence) for backward. O(size).
  void forward(matrix<T>& x, rng* gen) {
    active_ = gen != nullptr && p_ > 0;
    if (!active_) return;
    const std::uint64_t key = gen->bits();
    const auto keep_below = static_cast<std::uint64_t>(std::ldexp(1.0 - p_, 32));
    const T scale = static_cast<T>(1.0 / (1.0 - p_));
    scale_.resize(x.rows(), x.cols());
    const index_t cols = x.cols();
    detail::for_chunks(x.rows(), detail::row_chunk, threads_, [&](index_t r0, index_t r1) {
      // Elements [i0, i1): an odd first element alone, then whole words (a loop the compiler
      // vectorises), then an even last element alone.
      T* s = scale_.data();
      const index_t i0 = r0 * cols, i1 = r1 * cols;
      const auto keep = [&](std::uint64_t half) { return half < keep_below ? scale : T(0); };
      index_t i = i0;
      if ((i & 1) != 0) s[i++] = keep(stream_word(key, std::uint64_t(i0) >> 1) >> 32);
      for (; i + 1 < i1; i += 2) {
        const std::uint64_t w = stream_word(key, std::uint64_t(i) >> 1);
        s[i] = keep(w & 0xffffffffu);
        s[i + 1] = keep(w >> 32);
      }
      if (i < i1) s[i] = keep(stream_word(key, std::uint64_t(i) >> 1) & 0xffffffffu);
      x.middleRows(r0, r1 - r0).array() *= scale_.middleRows(r0, r1 - r0).array();
    });
  }

  /// \brief Word j of the mask stream of `key` (see the class comment). O(1).
  static std::uint64_t stream_word(std::uint64_t key, std::uint64_t j) noexcept {
    std::uint64_t z = key + (j + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  /// \brief In place: dy <- dy * m / (1 - p) with the last forward's mask (unchanged when that
  /// forward drew none). O(size). \throws invalid_argument if dy's shape is not the last forward's.
  void backward(matrix<T>& dy) const {
    if (!active_) return;
    semfocus::detail::require(dy.rows() == scale_.rows() && dy.cols() == scale_.cols(),
                              "semfocus::nn::dropout::backward: dy must be ", scale_.rows(), " x ",
                              scale_.cols(), " (the last forward's shape), got ", dy.rows(), " x ",
                              dy.cols());
    detail::for_chunks(dy.rows(), detail::row_chunk, threads_, [&](index_t r0, index_t r1) {
      dy.middleRows(r0, r1 - r0).array() *= scale_.middleRows(r0, r1 - r0).array();
    });
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
  double p_;
  int threads_ = 1;
  bool active_ = false;
  matrix<T> scale_;  // m / (1 - p) of the last active forward
};

}  // namespace semfocus::nn
