// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "semfocus/nn/tensor.hpp"

// Optimisers over a parameter_list (tensor.hpp), following PyTorch's update rules, gradient
// clipping by global norm and per-epoch learning-rate decay. Hyper-parameters are doubles; the
// updates run in T. All costs are O(total parameter count) per call.
namespace semfocus::nn {

/// \brief Plain stochastic gradient descent: p <- p - lr grad (torch.optim.SGD without momentum
/// or weight decay).
template <class T>
class sgd {
 public:
  double lr;  ///< learning rate (decays may change it between steps)

  /// \throws invalid_argument if lr is negative or not finite.
  explicit sgd(double lr_) : lr(lr_) {
    semfocus::detail::require(std::isfinite(lr) && lr >= 0,
                              "semfocus::nn::sgd: lr must be finite and >= 0, got ", lr);
  }

  /// \brief One update of every parameter from its grad.
  void step(const parameter_list<T>& params) const {
    const T rate = static_cast<T>(lr);
    for (parameter<T>* p : params) p->value -= rate * p->grad;
  }
};

/// \brief Adam (Kingma and Ba 2015) as torch.optim.Adam with its defaults: with g the gradient and
/// t the step count (from 1),
///   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,
///   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
/// The moments are kept per parameter, in list order: pass the same list (same order and shapes)
/// to every step.
template <class T>
class adam {
 public:
  double lr;
  double beta1, beta2, eps;

  /// \throws invalid_argument unless lr >= 0, 0 <= beta1, beta2 < 1 and eps >= 0 (all finite).
  explicit adam(double lr_, double beta1_ = 0.9, double beta2_ = 0.999, double eps_ = 1e-8)
      : lr(lr_), beta1(beta1_), beta2(beta2_), eps(eps_) {
    semfocus::detail::require(
        std::isfinite(lr) && lr >= 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 &&
            std::isfinite(eps) && eps >= 0,
        "semfocus::nn::adam: need lr >= 0, betas in [0, 1), eps >= 0, got lr ", lr, ", betas ",
        beta1, ", ", beta2, ", eps ", eps);
  }

  /// \brief Steps taken so far (t of the last step).
  long steps() const noexcept { return t_; }

  /// \brief One update of every parameter (moments created as 0 on the first call).
  /// \throws invalid_argument if the list's length or a shape differs from the first call's.
  void step(const parameter_list<T>& params) {
    if (t_ == 0) {
      m_.clear();
      v_.clear();
      for (const parameter<T>* p : params) {
        m_.push_back(matrix<T>::Zero(p->value.rows(), p->value.cols()));
        v_.push_back(matrix<T>::Zero(p->value.rows(), p->value.cols()));
      }
    }
    semfocus::detail::require(params.size() == m_.size(), "semfocus::nn::adam::step: expected ",
                              m_.size(), " parameters (as the first step), got ", params.size());
    for (std::size_t x = 0; x < params.size(); ++x)
      detail::require_shape("semfocus::nn::adam::step", params[x]->name.c_str(), params[x]->grad,
                            m_[x].rows(), m_[x].cols());
    ++t_;
    const double c1 = 1 - std::pow(beta1, static_cast<double>(t_));
    const double c2 = 1 - std::pow(beta2, static_cast<double>(t_));
    const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
    const T step_size = static_cast<T>(lr / c1), root_c2 = static_cast<T>(std::sqrt(c2));
    const T e = static_cast<T>(eps);
    for (std::size_t x = 0; x < params.size(); ++x) {
      parameter<T>& p = *params[x];
      m_[x] = b1 * m_[x] + (T(1) - b1) * p.grad;
      v_[x] = b2 * v_[x] + (T(1) - b2) * p.grad.cwiseProduct(p.grad);
      p.value.array() -= step_size * m_[x].array() / (v_[x].array().sqrt() / root_c2 + e);
    }
  }

  /// \brief The first and second moments, one matrix per parameter in list order (empty before
  /// the first step): with steps(), what a checkpoint must keep to continue bit for bit.
  const std::vector<matrix<T>>& first_moments() const noexcept { return m_; }
  const std::vector<matrix<T>>& second_moments() const noexcept { return v_; }

  /// \brief Continues from a saved state: steps() becomes t and the moments m and v (as
  /// first_moments() / second_moments() returned them). \throws invalid_argument if t < 0, m and
  /// v differ in count or shapes, or t > 0 with no moments or t = 0 with some.
  void set_state(long t, std::vector<matrix<T>> m, std::vector<matrix<T>> v) {
    bool same = m.size() == v.size() && t >= 0 && (t == 0) == m.empty();
    for (std::size_t x = 0; same && x < m.size(); ++x)
      same = m[x].rows() == v[x].rows() && m[x].cols() == v[x].cols();
    semfocus::detail::require(same,
                              "semfocus::nn::adam::set_state: need t >= 0 and moments m, v of "
                              "equal count and shapes (none exactly when t = 0), got t = ",
                              t, ", ", m.size(), " and ", v.size(), " moments");
    t_ = t;
    m_ = std::move(m);
    v_ = std::move(v);
  }

  /// \brief Forgets the moments and the step count.
  void reset() noexcept {
    t_ = 0;
    m_.clear();
    v_.clear();
  }

 private:
  long t_ = 0;
  std::vector<matrix<T>> m_, v_;
};

/// \brief Clips gradients by their global norm, as torch.nn.utils.clip_grad_norm_: with
/// norm = grad_norm(params) (all gradients as one vector, accumulated in double), every gradient
/// is multiplied by c = max_norm / (norm + 1e-6) when c < 1 (i.e. norm > max_norm - 1e-6).
/// Returns the norm before clipping; a non-finite norm is returned and nothing is scaled.
/// \throws invalid_argument if max_norm is not finite and > 0.
template <class T>
double clip_grad_norm(const parameter_list<T>& params, double max_norm) {
  semfocus::detail::require(std::isfinite(max_norm) && max_norm > 0,
                            "semfocus::nn::clip_grad_norm: max_norm must be finite and > 0, got ",
                            max_norm);
  const double norm = grad_norm(params);
  const double c = max_norm / (norm + 1e-6);
  if (std::isfinite(norm) && c < 1) {
    const T scale = static_cast<T>(c);
    for (parameter<T>* p : params) p->grad *= scale;
  }
  return norm;
}

/// \brief Multiplicative per-epoch decay of an optimiser's learning rate (torch's ExponentialLR):
/// epoch_end(opt) sets opt.lr <- gamma opt.lr, so after e epochs lr = lr_0 gamma^e (by repeated
/// multiplication, as torch).
class lr_decay {
 public:
  double gamma;

  /// \throws invalid_argument unless gamma is finite and > 0.
  explicit lr_decay(double gamma_) : gamma(gamma_) {
    semfocus::detail::require(std::isfinite(gamma) && gamma > 0,
                              "semfocus::nn::lr_decay: gamma must be finite and > 0, got ", gamma);
  }

  /// \brief Call once at the end of each epoch; Opt has a double member `lr` (sgd, adam).
  template <class Opt>
  void epoch_end(Opt& opt) const noexcept {
    opt.lr *= gamma;
  }
};

}  // namespace semfocus::nn
