// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(SEMFOCUS_HAS_XSIMD)
#include "semfocus/detail/xsimd.hpp"
#endif
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
/// and a matrix of more than 2^32 elements repeats its mask with period 2^32. With a row offset
/// o (set_row_offset), element (r, c) of a [rows, cols] input takes word (r + o) cols + c: the
/// rows of a larger input that starts o rows earlier (a batch split into groups of sequences,
/// each group given the whole batch's mask by drawing the same key).
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
    if (!draw(gen, x.rows(), x.cols())) return;
    detail::for_chunks(x.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { apply_rows(x, x, r0, r1); });
  }

  /// \brief forward's first half, for a pass fused into another layer's: draws the key of a mask
  /// for a [rows, cols] input (when `gen` is not null and p > 0) and remembers it; returns whether
  /// a mask was drawn. Then apply_rows over all rows of that input is forward. O(1).
  bool draw(rng* gen, index_t rows, index_t cols) {
    active_ = gen != nullptr && p_ > 0;
    if (active_) {
      key_ = gen->bits();
      rows_ = rows;
      cols_ = cols;
    }
    return active_;
  }

  /// \brief Rows [r0, r1) of out <- in * m / (1 - p) with the mask of the last draw (in and out
  /// may be the same matrix; out is left unchanged when no mask was drawn, so pass in == out
  /// then, or copy). in and out have the drawn shape. O((r1 - r0) cols); checks nothing.
  void apply_rows(const matrix<T>& in, matrix<T>& out, index_t r0, index_t r1) const noexcept {
    if (!active_) return;
    apply_range(in.data(), out.data(), r0 * cols_, r1 * cols_, row_offset_ * cols_, key_,
                keep_below(), scale());
  }

  /// \brief The rows o >= 0 of the larger input this one continues (see the class comment; 0 by
  /// default); applies to the masks of later calls. \throws invalid_argument if o < 0.
  void set_row_offset(index_t o) {
    semfocus::detail::require(o >= 0, "semfocus::nn::dropout::set_row_offset: o must be >= 0, got ",
                              o);
    row_offset_ = o;
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
    require_drawn_shape(dy);
    detail::for_chunks(dy.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { apply_rows(dy, dy, r0, r1); });
  }

  /// \brief The same as a value: dy itself when the last forward drew no mask, else `scratch`
  /// set to dy * m / (1 - p) (no copy in evaluation or for p = 0). \throws as above.
  const matrix<T>& backward(const matrix<T>& dy, matrix<T>& scratch) const {
    if (!active_) return dy;
    require_drawn_shape(dy);
    scratch.resize(dy.rows(), dy.cols());
    detail::for_chunks(dy.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { apply_rows(dy, scratch, r0, r1); });
    return scratch;
  }

  /// \brief \throws invalid_argument if a mask was drawn and g does not have its shape.
  void require_drawn_shape(const matrix<T>& g) const {
    semfocus::detail::require(!active_ || (g.rows() == rows_ && g.cols() == cols_),
                              "semfocus::nn::dropout::backward: dy must be ", rows_, " x ", cols_,
                              " (the last forward's shape), got ", g.rows(), " x ", g.cols());
  }

  /// \brief Whether the last forward drew a mask.
  bool active() const noexcept { return active_; }

 private:
  template <class U>  // std::uint32_t or a batch of them
  static U fmix32(U h) noexcept {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
  }

  std::uint32_t keep_below() const noexcept {
    return static_cast<std::uint32_t>(std::ldexp(1.0 - p_, 32));
  }
  T scale() const noexcept { return static_cast<T>(1.0 / (1.0 - p_)); }

  // Elements [i0, i1) of out <- in * mask, element i taking word i + shift (pointers by value,
  // so the loop vectorises; in may be out). For float with xsimd on AVX-512, whole vectors of 16
  // words (the compiler's own loop stops at 256 bits there: 0.50 -> 0.31 ns per element; on AVX2
  // it beats xsimd's unsigned compare), the same values: the factor's bits are selected, scale's
  // or +0's, and multiplied once, as below.
  static void apply_range(const T* in, T* out, index_t i0, index_t i1, index_t shift,
                          std::uint64_t key, std::uint32_t keep_below, T scale) noexcept {
    index_t i = i0;
#if defined(SEMFOCUS_HAS_XSIMD)
    if constexpr (std::is_same_v<T, float> && xsimd::batch<std::uint32_t>::size >= 16) {
      using words = xsimd::batch<std::uint32_t>;
      using values = xsimd::batch<float>;
      constexpr auto width = static_cast<index_t>(words::size);
      static_assert(words::size == values::size, "one word per float lane");
      alignas(64) std::uint32_t lane[width];
      for (index_t l = 0; l < width; ++l) lane[l] = static_cast<std::uint32_t>(l);
      const words iota = words::load_aligned(lane), below(keep_below);
      const words lo(static_cast<std::uint32_t>(key)), hi(static_cast<std::uint32_t>(key >> 32));
      std::uint32_t scale_bits;
      std::memcpy(&scale_bits, &scale, sizeof scale_bits);
      const words kept(scale_bits), dropped(std::uint32_t(0));
      for (; i + width <= i1; i += width) {
        const words w =
            fmix32(hi ^ fmix32(lo + (words(static_cast<std::uint32_t>(i + shift)) + iota)));
        const values factor = xsimd::bitwise_cast<values>(xsimd::select(w < below, kept, dropped));
        (values::load_unaligned(in + i) * factor).store_unaligned(out + i);
      }
    }
#endif
    for (; i < i1; ++i) out[i] = in[i] * (word(key, i + shift) < keep_below ? scale : T(0));
  }

  double p_;
  int threads_ = 1;
  bool active_ = false;
  std::uint64_t key_ = 0;  // of the last active forward
  index_t rows_ = 0, cols_ = 0;
  index_t row_offset_ = 0;
};

}  // namespace semfocus::nn
