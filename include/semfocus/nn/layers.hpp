// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <string>
#include <utility>

#include "semfocus/nn/init.hpp"
#include "semfocus/nn/layer_norm.hpp"
#include "semfocus/nn/parallel.hpp"
#include "semfocus/nn/tensor.hpp"

// The layers of the paper's model. Each layer's forward caches what its backward needs (so one
// forward must precede each backward, and a layer object serves one use in a network); backward
// returns dL/d(input) and accumulates (+=) dL/d(parameter) into the parameters' `grad`.
// Activations are [rows, width] matrices (see tensor.hpp); all costs are per call. Layers with a
// thread count (set_threads) split their work into fixed chunks (parallel.hpp): the same bits
// for every thread count.
namespace semfocus::nn {

/// \brief Affine map y = x W^T + b, W [out, in], b [1, out] (PyTorch's nn.Linear).
template <class T>
class linear {
 public:
  parameter<T> weight;  ///< [out, in]
  parameter<T> bias;    ///< [1, out]

  linear() = default;
  /// \brief Zero-initialised parameters named prefix + ".weight" / ".bias" (see init.hpp).
  /// \throws invalid_argument if in < 1 or out < 1.
  linear(index_t in, index_t out, const std::string& prefix)
      : weight(prefix + ".weight", out, in), bias(prefix + ".bias", 1, out) {
    semfocus::detail::require(in >= 1 && out >= 1,
                              "semfocus::nn::linear: in and out must be >= 1, got ", in, " and ",
                              out);
  }

  /// \brief in (the weight's columns) and out (its rows).
  index_t in_features() const noexcept { return weight.value.cols(); }
  index_t out_features() const noexcept { return weight.value.rows(); }

  /// \brief y = x W^T + b for x [m, in] -> [m, out]; caches x (moved in when passed an rvalue).
  /// Each chunk of rows [r0, r1) of y is followed, in the same task, by epilogue(y, r0, r1)
  /// (detail::affine_forward: an element-wise or row-local pass fused into the GEMM's, e.g.
  /// dropout and the activation). O(m in out). \throws invalid_argument if x does not have `in`
  /// columns.
  template <class Epilogue = detail::no_epilogue>
  matrix<T> forward(matrix<T> x, Epilogue&& epilogue = {}) {
    detail::require_shape("semfocus::nn::linear::forward", "x", x, -1, in_features());
    x_ = std::move(x);
    matrix<T> y;
    detail::affine_forward(x_, weight.value, bias.value, y, threads_, epilogue);
    return y;
  }

  /// \brief Given dy [m, out]: W.grad += dy^T x, b.grad += column sums of dy; returns
  /// dx = dy W [m, in], each chunk of rows followed by epilogue(dx, r0, r1) as in forward.
  /// O(m in out). \throws invalid_argument if dy does not match the last forward's output.
  template <class Epilogue = detail::no_epilogue>
  matrix<T> backward(const matrix<T>& dy, Epilogue&& epilogue = {}) {
    detail::require_shape("semfocus::nn::linear::backward", "dy", dy, x_.rows(), out_features());
    matrix<T> dx;
    detail::affine_backward(dy, x_, weight.value, weight.grad, bias.grad, &dx, threads_, epilogue);
    return dx;
  }

  /// \brief Threads of forward and backward (n < 1 means 1); the results do not depend on it.
  void set_threads(int n) noexcept { threads_ = std::max(1, n); }
  /// \brief The thread count of forward and backward (>= 1).
  int threads() const noexcept { return threads_; }

  /// \brief Appends &weight, &bias.
  void append_parameters(parameter_list<T>& list) {
    list.push_back(&weight);
    list.push_back(&bias);
  }

  /// \brief PyTorch's default initialisation (init_linear_default).
  void reset_parameters(rng& gen) { init_linear_default(weight, bias, gen); }

 private:
  matrix<T> x_;
  int threads_ = 1;
};

/// \brief The MLP nonlinearities of the paper.
enum class activation { relu, gelu, mish };

/// \brief Name of an activation ("relu", "gelu", "mish").
inline const char* to_string(activation a) noexcept {
  switch (a) {
    case activation::relu:
      return "relu";
    case activation::gelu:
      return "gelu";
    case activation::mish:
      return "mish";
  }
  return "?";
}

namespace detail {
template <class T>
T softplus(T x) noexcept {  // log(1 + e^x) without overflow
  return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
}
template <class T>
T sigmoid(T x) noexcept {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}
}  // namespace detail

/// \brief f(x): relu = max(x, 0); gelu = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (exact, as
/// torch's default); mish = x tanh(softplus(x)).
template <class T>
T activate(activation a, T x) noexcept {
  switch (a) {
    case activation::relu:
      return x > 0 ? x : T(0);
    case activation::gelu:
      return T(0.5) * x * (T(1) + std::erf(x * (T(1) / std::numbers::sqrt2_v<T>)));
    case activation::mish:
      return x * std::tanh(detail::softplus(x));
  }
  return x;
}

/// \brief f'(x): relu = [x > 0] (0 at 0, as PyTorch); gelu = Phi(x) + x phi(x);
/// mish = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x) with sp = softplus(x).
template <class T>
T activate_derivative(activation a, T x) noexcept {
  switch (a) {
    case activation::relu:
      return x > 0 ? T(1) : T(0);
    case activation::gelu: {
      const T cdf = T(0.5) * (T(1) + std::erf(x * (T(1) / std::numbers::sqrt2_v<T>)));
      const T pdf = std::exp(T(-0.5) * x * x) * std::numbers::inv_sqrtpi_v<T> *
                    (T(1) / std::numbers::sqrt2_v<T>);
      return cdf + x * pdf;
    }
    case activation::mish: {
      const T t = std::tanh(detail::softplus(x));
      return t + x * (T(1) - t * t) * detail::sigmoid(x);
    }
  }
  return T(1);
}

/// \brief Elementwise activation layer; caches its input.
template <class T>
class activation_layer {
 public:
  /// \brief A layer applying `a`.
  explicit activation_layer(activation a = activation::relu) : kind_(a) {}
  /// \brief The activation it applies.
  activation kind() const noexcept { return kind_; }

  /// \brief y = f(x) elementwise; caches x (moved in when passed an rvalue). O(size).
  matrix<T> forward(matrix<T> x) {
    x_ = std::move(x);
    matrix<T> y(x_.rows(), x_.cols());
    detail::for_chunks(x_.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { forward_rows(x_, y, r0, r1); });
    return y;
  }

  /// \brief Rows [r0, r1) of y = f(x) (y already x's shape), for a pass fused into another
  /// layer's (linear::forward's epilogue); relu runs as a vectorised select (the same values as
  /// activate: x where x > 0, else +0). Pair with keep_input(x). O((r1 - r0) width); checks
  /// nothing.
  void forward_rows(const matrix<T>& x, matrix<T>& y, index_t r0, index_t r1) const {
    const auto xc = x.middleRows(r0, r1 - r0).array();
    auto yc = y.middleRows(r0, r1 - r0).array();
    if (kind_ == activation::relu)
      yc = (xc > T(0)).select(xc, T(0));
    else
      yc = xc.unaryExpr([a = kind_](T v) { return activate(a, v); });
  }

  /// \brief Caches x as the input of the last forward (after forward_rows over all of x). O(1).
  void keep_input(matrix<T> x) noexcept { x_ = std::move(x); }

  /// \brief dx = dy * f'(x) elementwise; O(size). \throws invalid_argument if dy does not match.
  matrix<T> backward(const matrix<T>& dy) const {
    require_input_shape(dy);
    matrix<T> dx = dy;
    detail::for_chunks(dy.rows(), detail::row_chunk, threads_,
                       [&](index_t r0, index_t r1) { backward_rows(dx, r0, r1); });
    return dx;
  }

  /// \brief In place on rows [r0, r1) of g: g <- g * f'(x) with x the cached input (relu: g where
  /// x > 0, else 0, as activate_derivative), for a pass fused into another layer's. Check g's
  /// shape once with require_input_shape. O((r1 - r0) width).
  void backward_rows(matrix<T>& g, index_t r0, index_t r1) const {
    const auto xc = x_.middleRows(r0, r1 - r0).array();
    auto gc = g.middleRows(r0, r1 - r0).array();
    if (kind_ == activation::relu)
      gc = (xc > T(0)).select(gc, T(0));
    else
      gc = gc * xc.unaryExpr([a = kind_](T v) { return activate_derivative(a, v); });
  }

  /// \brief \throws invalid_argument unless g has the cached input's shape.
  void require_input_shape(const matrix<T>& g) const {
    detail::require_shape("semfocus::nn::activation_layer::backward", "dy", g, x_.rows(),
                          x_.cols());
  }

  /// \brief Threads of forward and backward (n < 1 means 1); the results do not depend on it.
  void set_threads(int n) noexcept { threads_ = std::max(1, n); }

 private:
  activation kind_;
  int threads_ = 1;
  matrix<T> x_;
};

/// \brief Token embedding scaled by sqrt(d) plus sinusoidal positions (Vaswani et al. 2017):
/// y[b n + i] = sqrt(d) E[token(b, i)] + PE[i] with PE[i, 2c] = sin(i w_c),
/// PE[i, 2c + 1] = cos(i w_c), w_c = 10000^(-2c / d) (computed in double).
template <class T>
class embedding {
 public:
  parameter<T> weight;  ///< [vocab, d]

  embedding() = default;
  /// \brief Zero weights named prefix + ".weight". \throws invalid_argument if vocab or d < 1.
  embedding(index_t vocab, index_t d, const std::string& prefix)
      : weight(prefix + ".weight", vocab, d) {
    semfocus::detail::require(vocab >= 1 && d >= 1,
                              "semfocus::nn::embedding: vocab and d must be >= 1, got ", vocab,
                              " and ", d);
  }

  /// \brief The vocabulary size and the width d.
  index_t vocab() const noexcept { return weight.value.rows(); }
  index_t dim() const noexcept { return weight.value.cols(); }

  /// \brief The sinusoidal position table [n, d]; O(n d).
  static matrix<T> positions(index_t n, index_t d) {
    matrix<T> pe(n, d);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < d; ++c) {
        const double w =
            std::pow(10000.0, -static_cast<double>(c - c % 2) / static_cast<double>(d));
        const double a = static_cast<double>(i) * w;
        pe(i, c) = static_cast<T>(c % 2 == 0 ? std::sin(a) : std::cos(a));
      }
    return pe;
  }

  /// \brief tokens: batch * n ids, sequence b at [b n, (b + 1) n) -> [batch n, d]; O(batch n d).
  /// \throws invalid_argument if tokens.size() != batch n or an id is outside [0, vocab).
  matrix<T> forward(std::span<const int> tokens, index_t batch, index_t n) {
    constexpr const char* fn = "semfocus::nn::embedding::forward";
    semfocus::detail::require(
        batch >= 1 && n >= 1 && static_cast<index_t>(tokens.size()) == batch * n, fn,
        ": need batch, n >= 1 and batch * n = ", batch * n, " tokens, got ", tokens.size());
    if (pe_.rows() != n || pe_.cols() != dim()) pe_ = positions(n, dim());
    tokens_.assign(tokens.begin(), tokens.end());
    const T scale = static_cast<T>(std::sqrt(static_cast<double>(dim())));
    matrix<T> y(batch * n, dim());
    for (index_t r = 0; r < batch * n; ++r) {
      const int t = tokens_[static_cast<std::size_t>(r)];
      semfocus::detail::require(t >= 0 && t < vocab(), fn, ": token ", t, " at ", r,
                                " outside [0, ", vocab(), ")");
      y.row(r) = scale * weight.value.row(t) + pe_.row(r % n);
    }
    return y;
  }

  /// \brief weight.grad[token] += sqrt(d) dy[row] for every row; O(batch n d). \throws
  /// invalid_argument if dy does not match the last forward.
  void backward(const matrix<T>& dy) {
    detail::require_shape("semfocus::nn::embedding::backward", "dy", dy,
                          static_cast<index_t>(tokens_.size()), dim());
    const T scale = static_cast<T>(std::sqrt(static_cast<double>(dim())));
    for (index_t r = 0; r < dy.rows(); ++r)
      weight.grad.row(tokens_[static_cast<std::size_t>(r)]) += scale * dy.row(r);
  }

  /// \brief Appends &weight.
  void append_parameters(parameter_list<T>& list) { list.push_back(&weight); }

 private:
  std::vector<int> tokens_;
  matrix<T> pe_;
};

/// \brief Mean over the n positions of each sequence: [batch n, w] -> [batch, w].
template <class T>
class mean_pool {
 public:
  /// \brief y[b] = (1/n) sum_i x[b n + i]; O(batch n w). \throws invalid_argument unless
  /// batch >= 1 divides x.rows().
  matrix<T> forward(const matrix<T>& x, index_t batch) {
    semfocus::detail::require(batch >= 1 && x.rows() >= batch && x.rows() % batch == 0,
                              "semfocus::nn::mean_pool::forward: batch = ", batch,
                              " must divide the ", x.rows(), " rows of x");
    n_ = x.rows() / batch;
    batch_ = batch;
    matrix<T> y(batch, x.cols());
    for (index_t b = 0; b < batch; ++b)
      y.row(b) = x.middleRows(b * n_, n_).colwise().sum() / static_cast<T>(n_);
    return y;
  }

  /// \brief dx[b n + i] = dy[b] / n; O(batch n w). \throws invalid_argument unless dy has the
  /// last forward's batch rows.
  matrix<T> backward(const matrix<T>& dy) const {
    semfocus::detail::require(n_ >= 1 && dy.rows() == batch_,
                              "semfocus::nn::mean_pool::backward: dy must have the ", batch_,
                              " rows of the last forward's output, got ", dy.rows());
    matrix<T> dx(dy.rows() * n_, dy.cols());
    for (index_t b = 0; b < dy.rows(); ++b)
      dx.middleRows(b * n_, n_).rowwise() = dy.row(b) / static_cast<T>(n_);
    return dx;
  }

 private:
  index_t n_ = 0, batch_ = 0;
};

/// \brief A loss and its gradient with respect to the logits.
template <class T>
struct loss_result {
  T loss{};
  matrix<T> dlogits;
};

/// \brief Cross-entropy of logits [batch, classes] against labels in [0, classes), averaged over
/// the batch: L = (1/B) sum_b (logsumexp(z_b) - z_b[y_b]), with the log-sum-exp shifted by the row
/// maximum; dL/dz_b = (softmax(z_b) - onehot(y_b)) / B. The row reductions run in double.
/// With mean_over = M > 0, B is M instead: these rows' share of the mean over M sequences (a part
/// of a batch split into groups; the parts' losses and gradients then add up to the batch's).
/// O(batch classes). \throws invalid_argument if labels.size() != batch, a label is out of range
/// or 0 < mean_over < batch.
template <class T>
loss_result<T> cross_entropy(const matrix<T>& logits, std::span<const int> labels,
                             index_t mean_over = 0) {
  constexpr const char* fn = "semfocus::nn::cross_entropy";
  const index_t batch = logits.rows(), classes = logits.cols();
  semfocus::detail::require(
      batch >= 1 && classes >= 1 && static_cast<index_t>(labels.size()) == batch, fn,
      ": need one label per logits row (", batch, "), got ", labels.size());
  semfocus::detail::require(mean_over == 0 || mean_over >= batch, fn,
                            ": mean_over must be 0 or >= ", batch, " (the rows), got ", mean_over);
  const double divisor = static_cast<double>(mean_over > 0 ? mean_over : batch);
  loss_result<T> r{T(0), matrix<T>(batch, classes)};
  double total = 0;
  for (index_t b = 0; b < batch; ++b) {
    const int y = labels[static_cast<std::size_t>(b)];
    semfocus::detail::require(y >= 0 && y < classes, fn, ": label ", y, " of row ", b,
                              " outside [0, ", classes, ")");
    const double m = static_cast<double>(logits.row(b).maxCoeff());
    double sum = 0;
    for (index_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(logits(b, c)) - m);
    const double lse = m + std::log(sum);
    total += lse - static_cast<double>(logits(b, y));
    for (index_t c = 0; c < classes; ++c) {
      const double p = std::exp(static_cast<double>(logits(b, c)) - lse);
      r.dlogits(b, c) = static_cast<T>((p - (c == y ? 1.0 : 0.0)) / divisor);
    }
  }
  r.loss = static_cast<T>(total / divisor);
  return r;
}

}  // namespace semfocus::nn
