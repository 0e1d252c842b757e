// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>

#include "semfocus/nn/init.hpp"
#include "semfocus/nn/tensor.hpp"

namespace semfocus::nn {

/// \brief Inverted dropout (torch.nn.Dropout): in training y = x * m / (1 - p) with
/// m_i ~ Bernoulli(1 - p) independent per element; the identity otherwise (and for p = 0).
///
/// The mask is a function of the generator's state alone: element i of x (row-major) takes the
/// 32-bit word i of the draws (low word of a 64-bit draw first, then its high word) and is kept
/// iff word < floor((1 - p) 2^32), so P(keep) = 1 - p to within 2^-32 and one seeded generator
/// gives the same mask on every platform. A call draws ceil(size / 2) values.
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

  /// \brief In place: x <- x * m / (1 - p) with a fresh mask drawn from `gen` when `gen` is not
  /// null and p > 0 (training); otherwise x is unchanged and no value is drawn (evaluation).
  /// Remembers the mask (or its absence) for backward. O(size).
  void forward(matrix<T>& x, rng* gen) {
    active_ = gen != nullptr && p_ > 0;
    if (!active_) return;
    const auto keep_below = static_cast<std::uint64_t>(std::ldexp(1.0 - p_, 32));
    const T scale = static_cast<T>(1.0 / (1.0 - p_));
    scale_.resize(x.rows(), x.cols());
    T* s = scale_.data();
    const index_t size = x.size();
    std::uint64_t word = 0;
    for (index_t i = 0; i < size; ++i) {
      word = (i & 1) != 0 ? word >> 32 : gen->bits();
      s[i] = (word & 0xffffffffu) < keep_below ? scale : T(0);
    }
    x.array() *= scale_.array();
  }

  /// \brief In place: dy <- dy * m / (1 - p) with the last forward's mask (unchanged when that
  /// forward drew none). O(size). \throws invalid_argument if dy's shape is not the last forward's.
  void backward(matrix<T>& dy) const {
    if (!active_) return;
    semfocus::detail::require(dy.rows() == scale_.rows() && dy.cols() == scale_.cols(),
                              "semfocus::nn::dropout::backward: dy must be ", scale_.rows(), " x ",
                              scale_.cols(), " (the last forward's shape), got ", dy.rows(), " x ",
                              dy.cols());
    dy.array() *= scale_.array();
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
  bool active_ = false;
  matrix<T> scale_;  // m / (1 - p) of the last active forward
};

}  // namespace semfocus::nn
