// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "semfocus/nn/parallel.hpp"
#include "semfocus/nn/tensor.hpp"

namespace semfocus::nn {
namespace detail {

/// Lanes of the fixed-order row reductions (lane_sum): a constant, not the vector width, so that
/// a row's sums have the same bits on every ISA; the compiler vectorises the lane loops.
inline constexpr index_t lanes = 16;

/// Four lanes of T in one GNU vector (SSE / AVX registers), for lane_total.
template <class T>
struct lane_quarter {};
template <>
struct lane_quarter<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct lane_quarter<double> {
  typedef double type __attribute__((vector_size(32)));
};

/// \brief Sum of lanes partial sums, in the fixed tree ((0 + 8) + (4 + 12)) + ((2 + 10) + ...):
/// acc[l] += acc[l + h] for h = 8, 4, 2, 1. For float and double as quarters q_i = acc[4i, 4i + 4):
/// s = (q_0 + q_2) + (q_1 + q_3), then (s_0 + s_2) + (s_1 + s_3), the same sums in registers no
/// wider than the lane loops' (a 64-byte reload of 32-byte stores stalls store forwarding).
template <class T>
SEMFOCUS_FORCEINLINE T lane_total(T (&acc)[lanes]) noexcept {
  static_assert(lanes == 16, "the tree below is written for 16 lanes");
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    using quarter = typename lane_quarter<T>::type;
    quarter q[4];
    std::memcpy(q, acc, sizeof q);
    const quarter s = (q[0] + q[2]) + (q[1] + q[3]);
    return (s[0] + s[2]) + (s[1] + s[3]);
  } else {
#pragma GCC unroll 8
    for (index_t half = lanes / 2; half >= 1; half /= 2)
#pragma GCC unroll 8
      for (index_t l = 0; l < half; ++l) acc[l] += acc[l + half];
    return acc[0];
  }
}

/// \brief sum_c f(c) for c in [0, w): lane l adds f(l), f(l + lanes), ... over the whole blocks
/// of `lanes`, the lanes are added by lane_total, then the tail c >= w - w % lanes in order.
template <class T, class F>
SEMFOCUS_FORCEINLINE T lane_sum(index_t w, F&& f) noexcept {
  T acc[lanes] = {};
  index_t c = 0;
  for (; c + lanes <= w; c += lanes)
#pragma GCC unroll 16
    for (index_t l = 0; l < lanes; ++l) acc[l] += f(c + l);
  T s = lane_total(acc);
  for (; c < w; ++c) s += f(c);
  return s;
}

}  // namespace detail

/// \brief LayerNorm over each row without affine parameters: y = (x - mean) / sqrt(var + eps)
/// with the biased variance var = mean((x - mean)^2), as torch.nn.LayerNorm(elementwise_affine
/// = False). With eps = 0 the output rows have norm exactly sqrt(width) (up to rounding). The row
/// sums run in detail::lane_sum's fixed order (the same bits for every ISA and thread count).
///
/// Constant rows: the centred row is taken as exactly 0, so y = 0. With eps > 0 the derivative is
/// the usual one (dx = (dy - mean(dy)) / sqrt(eps)); with eps = 0 (var + eps = 0, where the map
/// is not differentiable) the output is 0 and the gradient is defined as 0 -- never NaN (also
/// for a row whose variance underflows to 0).
template <class T>
class layer_norm {
 public:
  /// \throws invalid_argument if eps < 0 or is not finite.
  explicit layer_norm(double eps = 1e-5) : eps_(eps) {
    semfocus::detail::require(std::isfinite(eps) && eps >= 0,
                              "semfocus::nn::layer_norm: eps must be finite and >= 0, got ", eps);
  }

  /// \brief The eps added to the variance.
  double eps() const noexcept { return eps_; }

  /// \brief Normalises each row of x [m, w] -> [m, w]; caches y and 1/sqrt(var + eps). O(m w).
  /// \throws invalid_argument if x has no columns.
  matrix<T> forward(const matrix<T>& x) {
    prepare("semfocus::nn::layer_norm::forward", x);
    detail::for_chunks(x.rows(), detail::row_chunk, threads_, [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; ++r) normalise_row(&x(r, 0), r);
    });
    return y_;
  }

  /// \brief The residual sum and its LayerNorm in one pass: h = x + a, returns LN(h) (as
  /// forward(h), the same bits). h is resized to x's shape. O(m w). \throws invalid_argument if
  /// x has no columns or a does not match x.
  matrix<T> forward_sum(const matrix<T>& x, const matrix<T>& a, matrix<T>& h) {
    constexpr const char* fn = "semfocus::nn::layer_norm::forward_sum";
    detail::require_shape(fn, "a", a, x.rows(), x.cols());
    prepare_sum(fn, x, h);
    detail::for_chunks(x.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { forward_sum_rows(x, a, h, r0, r1); });
    return y_;
  }

  /// \brief forward_sum in parts, for a pass fused into the one that makes `a` (the epilogue of
  /// its GEMM): prepare_sum(fn, x, h) checks x as forward_sum (naming `fn`) and sizes h and the
  /// cache; forward_sum_rows then does rows [r0, r1) (a has x's shape; checks nothing); after
  /// all rows, output() is forward_sum's result. O(m w) in all.
  void prepare_sum(const char* fn, const matrix<T>& x, matrix<T>& h) {
    prepare(fn, x);
    h.resize(x.rows(), x.cols());
  }
  void forward_sum_rows(const matrix<T>& x, const matrix<T>& a, matrix<T>& h, index_t r0,
                        index_t r1) {
    const index_t w = x.cols();
    for (index_t r = r0; r < r1; ++r) {
      T* hr = &h(r, 0);
      for (index_t c = 0; c < w; ++c) hr[c] = x(r, c) + a(r, c);
      normalise_row(hr, r);
    }
  }

  /// \brief The last forward's output [m, w]. O(1).
  const matrix<T>& output() const noexcept { return y_; }

  /// \brief dx = rstd (dy - mean(dy) - y mean(dy * y)) per row (rstd = 1/sqrt(var + eps), 0 for a
  /// constant row when eps = 0). O(m w). \throws invalid_argument if dy does not match.
  matrix<T> backward(const matrix<T>& dy) const {
    return backward_impl("semfocus::nn::layer_norm::backward", dy, nullptr);
  }

  /// \brief skip + backward(dy) in one pass (the gradient of a residual stream that feeds this
  /// LayerNorm), equal to the sum of the two up to that sum's rounding (it may be fused into an
  /// fma). O(m w). \throws invalid_argument if dy or skip does not match the last forward's shape.
  matrix<T> backward_sum(const matrix<T>& dy, const matrix<T>& skip) const {
    constexpr const char* fn = "semfocus::nn::layer_norm::backward_sum";
    detail::require_shape(fn, "skip", skip, y_.rows(), y_.cols());
    return backward_impl(fn, dy, &skip);
  }

  /// \brief Rows [r0, r1) of backward(dy) (skip null) or backward_sum(dy, *skip) into dx, for a
  /// pass fused into the one that makes dy; dx may be dy. dy, *skip and dx have the last
  /// forward's shape (checks nothing). O((r1 - r0) w).
  void backward_rows(const matrix<T>& dy, const matrix<T>* skip, matrix<T>& dx, index_t r0,
                     index_t r1) const {
    const index_t w = dy.cols();
    const T inv_w = T(1) / static_cast<T>(w);
    for (index_t r = r0; r < r1; ++r) {
      const T* g = &dy(r, 0);
      const T* y = &y_(r, 0);
      const T mean_dy = detail::lane_sum<T>(w, [g](index_t c) { return g[c]; }) * inv_w;
      const T mean_dyy = detail::lane_sum<T>(w, [g, y](index_t c) { return g[c] * y[c]; }) * inv_w;
      const T rstd = rstd_[r];
      T* out = &dx(r, 0);
      if (skip == nullptr)
        for (index_t c = 0; c < w; ++c) out[c] = rstd * ((g[c] - mean_dy) - y[c] * mean_dyy);
      else
        for (index_t c = 0; c < w; ++c)
          out[c] = (*skip)(r, c) + rstd * ((g[c] - mean_dy) - y[c] * mean_dyy);
    }
  }

  /// \brief Threads of forward and backward (n < 1 means 1); the results do not depend on it.
  void set_threads(int n) noexcept { threads_ = std::max(1, n); }

 private:
  void prepare(const char* fn, const matrix<T>& x) {
    semfocus::detail::require(x.cols() >= 1, fn, ": x must have >= 1 column");
    y_.resize(x.rows(), x.cols());
    rstd_.resize(x.rows());
  }

  // y_ and rstd_ of row r from its values x[0, w).
  void normalise_row(const T* x, index_t r) {
    const index_t w = y_.cols();
    T* y = &y_(r, 0);
    int varies = 0;  // an integer or-reduction, which vectorises (a NaN varies)
    for (index_t c = 1; c < w; ++c) varies |= x[c] != x[0] ? 1 : 0;
    if (varies == 0) {  // constant: centred row exactly 0
      std::fill(y, y + w, T(0));
      rstd_[r] = eps_ > 0 ? static_cast<T>(1.0 / std::sqrt(eps_)) : T(0);
      return;
    }
    const T inv_w = T(1) / static_cast<T>(w);
    const T mean = detail::lane_sum<T>(w, [x](index_t c) { return x[c]; }) * inv_w;
    const T var = detail::lane_sum<T>(w,
                                      [x, mean](index_t c) {
                                        const T d = x[c] - mean;
                                        return d * d;
                                      }) *
                  inv_w;
    if (!(var + static_cast<T>(eps_) > 0)) {  // variance underflowed to 0 with eps = 0
      std::fill(y, y + w, T(0));
      rstd_[r] = T(0);
      return;
    }
    const T rstd = T(1) / std::sqrt(var + static_cast<T>(eps_));
    rstd_[r] = rstd;
    for (index_t c = 0; c < w; ++c) y[c] = (x[c] - mean) * rstd;
  }

  matrix<T> backward_impl(const char* fn, const matrix<T>& dy, const matrix<T>* skip) const {
    detail::require_shape(fn, "dy", dy, y_.rows(), y_.cols());
    matrix<T> dx(dy.rows(), dy.cols());
    detail::for_chunks(dy.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { backward_rows(dy, skip, dx, r0, r1); });
    return dx;
  }

  double eps_;
  int threads_ = 1;
  matrix<T> y_;
  Eigen::Matrix<T, Eigen::Dynamic, 1> rstd_;
};

}  // namespace semfocus::nn
