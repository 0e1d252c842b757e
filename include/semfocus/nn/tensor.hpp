// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "semfocus/detail/eigen.hpp"

#include "semfocus/config.hpp"
#include "semfocus/core/error.hpp"

// The vocabulary of the nn module: activations are row-major matrices, a batch of `batch`
// sequences of length n stored as [batch * n, width] with sequence b in rows [b n, (b + 1) n);
// trainable tensors are `parameter`s (name, value, gradient) that every layer lists by pointer.
// Eigen's own threading is never enabled; layers that use threads split their work into fixed
// chunks (parallel.hpp), so a run is a deterministic function of its seed, whatever the thread
// count.
namespace semfocus::nn {

/// \brief Dense row-major matrix of T (float to train, double for gradient checks).
template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// \brief A trainable tensor: its name (as "blocks.0.attn.wq.weight"), its value and the gradient
/// of the loss with respect to it (same shape). Biases are [1, out] matrices, so optimisers and
/// clipping treat every parameter alike. Layers accumulate (+=) into `grad`; zero it first.
template <class T>
struct parameter {
  std::string name;
  matrix<T> value;
  matrix<T> grad;

  parameter() = default;
  /// \brief A rows x cols parameter with value and gradient 0.
  parameter(std::string name_, index_t rows, index_t cols)
      : name(std::move(name_)),
        value(matrix<T>::Zero(rows, cols)),
        grad(matrix<T>::Zero(rows, cols)) {}

  /// \brief Number of scalars.
  index_t size() const noexcept { return value.size(); }
};

/// \brief Non-owning list of a model's parameters, in a fixed order (construction order). The
/// pointers are valid while the owning layer or model is alive and not moved.
template <class T>
using parameter_list = std::vector<parameter<T>*>;

/// \brief Sets every gradient in the list to 0; O(total size).
template <class T>
void zero_grad(const parameter_list<T>& params) {
  for (parameter<T>* p : params) p->grad.setZero();
}

/// \brief Total number of scalars in the list.
template <class T>
index_t parameter_count(const parameter_list<T>& params) {
  index_t n = 0;
  for (const parameter<T>* p : params) n += p->size();
  return n;
}

/// \brief Euclidean norm of all gradients concatenated, sqrt(sum_p ||grad_p||_F^2), accumulated
/// in double in list order; O(total size).
template <class T>
double grad_norm(const parameter_list<T>& params) {
  double sum = 0;
  for (const parameter<T>* p : params)
    for (index_t x = 0; x < p->grad.size(); ++x) {
      const double g = static_cast<double>(p->grad.data()[x]);
      sum += g * g;
    }
  return std::sqrt(sum);
}

namespace detail {

/// \brief Throws invalid_argument unless m is rows x cols (rows or cols < 0: not checked).
template <class M>
void require_shape(const char* fn, const char* name, const M& m, index_t rows, index_t cols) {
  semfocus::detail::require((rows < 0 || m.rows() == rows) && (cols < 0 || m.cols() == cols), fn,
                            ": ", name, " must be [", rows, ", ", cols, "], got [", m.rows(), ", ",
                            m.cols(), "]");
}

}  // namespace detail
}  // namespace semfocus::nn
