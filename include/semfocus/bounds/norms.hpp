// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

#include "semfocus/detail/eigen.hpp"

#include "semfocus/config.hpp"
#include "semfocus/core/error.hpp"

// Spectral norms by power iteration, and the weight-norm quantities of an attention layer that
// the paper's bounds use (PAPER.md, "Theory quantities").
namespace semfocus::bounds {

/// \brief Stopping rule of a power iteration.
struct power_settings {
  double tolerance = 1e-10;   // stop when |sigma_t - sigma_{t-1}| <= tolerance * sigma_t
  int max_iterations = 2000;  // and give up (converged = false) after this many
  std::uint64_t seed = 2025;  // of the Gaussian start vector
};

/// \brief Result of a power iteration: sigma = ||A v|| for the final unit v, a lower bound of
/// ||A||_2 that converges to it (linearly, at rate (sigma_2 / sigma_1)^2). When the two largest
/// singular values nearly tie, convergence is slow: the value stays a lower bound but may be
/// further than the tolerance from sigma_1 (measured: 1.6e-6 relative after 2000 iterations for
/// sigma_1 = 0.663939, sigma_2 = 0.663301); raise max_iterations for more.
struct power_result {
  double value = 0;
  int iterations = 0;
  bool converged = false;
  Eigen::VectorXd vector;  // the final unit right singular vector estimate
};

/// \brief ||A||_2 of a linear map given as callables: apply(x) = A x (x of size n) and
/// apply_t(y) = A^T y. Iterates v <- A^T A v / ||A^T A v|| from a seeded Gaussian v and reports
/// sigma = ||A v||. A zero map gives 0 after one iteration. Time: iterations x (one apply and one
/// apply_t). \throws invalid_argument if n < 1 or the settings are not positive.
template <class Apply, class ApplyT>
power_result power_iteration(Apply&& apply, ApplyT&& apply_t, index_t n,
                             const power_settings& settings = {}) {
  semfocus::detail::require(n >= 1, "semfocus::bounds::power_iteration: n must be >= 1, got ", n);
  semfocus::detail::require(
      settings.tolerance > 0 && settings.max_iterations >= 1,
      "semfocus::bounds::power_iteration: tolerance must be > 0 and max_iterations "
      ">= 1, got ",
      settings.tolerance, " and ", settings.max_iterations);
  std::mt19937_64 rng(settings.seed);
  std::normal_distribution<double> normal;
  Eigen::VectorXd v(n);
  for (index_t x = 0; x < n; ++x) v[x] = normal(rng);
  v.normalize();
  power_result r;
  double previous = -1;
  for (r.iterations = 1; r.iterations <= settings.max_iterations; ++r.iterations) {
    const Eigen::VectorXd av = apply(v);
    r.value = av.norm();
    r.vector = v;
    if (r.value == 0 || std::abs(r.value - previous) <= settings.tolerance * r.value) {
      r.converged = true;
      break;
    }
    previous = r.value;
    Eigen::VectorXd w = apply_t(av);
    const double wn = w.norm();
    if (wn == 0) {  // v in the null space: A v = 0 was handled above, so this is rounding
      r.converged = true;
      break;
    }
    v = w / wn;
  }
  if (r.iterations > settings.max_iterations) r.iterations = settings.max_iterations;
  return r;
}

/// \brief ||A||_2 (largest singular value) of a dense matrix by power iteration on A^T A.
/// O(iterations rows cols). \throws invalid_argument if A is empty.
inline power_result spectral_norm(const Eigen::Ref<const Eigen::MatrixXd>& a,
                                  const power_settings& settings = {}) {
  semfocus::detail::require(a.size() > 0, "semfocus::bounds::spectral_norm: the matrix is empty (",
                            a.rows(), " x ", a.cols(), ")");
  return power_iteration(
      [&](const Eigen::VectorXd& x) -> Eigen::VectorXd { return a * x; },
      [&](const Eigen::VectorXd& y) -> Eigen::VectorXd { return a.transpose() * y; }, a.cols(),
      settings);
}

/// \brief [W | b]: the weights of y = W x + b with the bias as one more column, so that
/// y = [W | b] [x; 1]. W is [out, in] (PyTorch's layout), b has `out` entries.
/// \throws invalid_argument if b.size() != W.rows().
inline Eigen::MatrixXd augmented(const Eigen::Ref<const Eigen::MatrixXd>& w,
                                 const Eigen::Ref<const Eigen::VectorXd>& b) {
  semfocus::detail::require(b.size() == w.rows(), "semfocus::bounds::augmented: bias must have ",
                            w.rows(), " entries (the rows of W), got ", b.size());
  Eigen::MatrixXd out(w.rows(), w.cols() + 1);
  out << w, b;
  return out;
}

/// \brief One head's projections and the layer's MLP, all in PyTorch's layout (W [out, in]):
/// q = wq x + bq, k = wk x + bk, v = wv x + bv (each [d_head, d_model]) and the MLP
/// w1 [d_mlp, d_model], w2 [d_model, d_mlp]. Leave w1, w2 empty for a layer without MLP.
struct layer_weights {
  Eigen::MatrixXd wq, wk, wv, w1, w2;
  Eigen::VectorXd bq, bk, bv, b1, b2;
};

/// \brief The weight-norm quantities of the paper (PAPER.md, "Theory quantities"):
///  - gamma = scale ||Wq~^T Wk~||_2 with Wq~ = [Wq | bq], Wk~ = [Wk | bk], so that every score
///    s_ij = scale q_i . k_j = x~_i^T (scale Wq~^T Wk~) x~_j obeys |s_ij| <= gamma ||x~_i||
///    ||x~_j|| (x~ = [x; 1]); with scale = 1/sqrt(d) this is the paper's Gamma;
///  - upsilon = ||[Wv | bv]||_2, the Lipschitz constant of the value map x~ -> v;
///  - b1, b2 = ||[W1 | b1]||_2, ||[W2 | b2]||_2 of the two MLP layers (the paper's B);
///  - xi, the bound on ||x~|| it was given, and worst_case_dispersion = 2 gamma xi^2: every row's
///    dispersion max_j s_ij - min_j s_ij <= 2 max |s_ij| <= 2 gamma xi^2 without looking at data.
/// Each norm is a power_result (value, iterations, converged).
struct layer_norms {
  power_result gamma, upsilon, b1, b2;
  double xi = 0;
  double worst_case_dispersion = 0;
};

/// \brief Bound on ||[x; 1]|| for the output x of a LayerNorm without affine parameters over
/// d_model features: ||x||^2 = d_model var / (var + eps) <= d_model, so xi = sqrt(d_model + 1).
/// (The paper's Xi = sqrt(d) ignores the bias coordinate.)
inline double layernorm_xi(index_t d_model) {
  semfocus::detail::require(d_model >= 1,
                            "semfocus::bounds::layernorm_xi: d_model must be >= 1, got ", d_model);
  return std::sqrt(double(d_model) + 1.0);
}

/// \brief The quantities of layer_norms for one head's weights, score scale `scale` (the
/// attention's, 1/sqrt(d_head) by default) and token bound `xi` (e.g. layernorm_xi(d_model)).
/// Cost O(iterations d_model^2) for gamma (the product is formed once, (d_model + 1)^2).
/// \throws invalid_argument on inconsistent shapes, a non-finite scale or xi < 0.
inline layer_norms attention_layer_norms(const layer_weights& w, double scale, double xi,
                                         const power_settings& settings = {}) {
  constexpr const char* fn = "semfocus::bounds::attention_layer_norms";
  semfocus::detail::require(std::isfinite(scale), fn, ": scale must be finite, got ", scale);
  semfocus::detail::require(std::isfinite(xi) && xi >= 0, fn, ": xi must be finite and >= 0, got ",
                            xi);
  semfocus::detail::require(
      w.wq.size() > 0 && w.wq.rows() == w.wk.rows() && w.wq.cols() == w.wk.cols(), fn,
      ": wq and wk must be non-empty with the same shape, got ", w.wq.rows(), " x ", w.wq.cols(),
      " and ", w.wk.rows(), " x ", w.wk.cols());
  semfocus::detail::require(w.wv.cols() == w.wq.cols(), fn, ": wv must have ", w.wq.cols(),
                            " columns (d_model), got ", w.wv.cols());
  layer_norms out;
  const Eigen::MatrixXd m = scale * augmented(w.wq, w.bq).transpose() * augmented(w.wk, w.bk);
  out.gamma = spectral_norm(m, settings);
  out.upsilon = spectral_norm(augmented(w.wv, w.bv), settings);
  if (w.w1.size() > 0) out.b1 = spectral_norm(augmented(w.w1, w.b1), settings);
  if (w.w2.size() > 0) out.b2 = spectral_norm(augmented(w.w2, w.b2), settings);
  out.xi = xi;
  out.worst_case_dispersion = 2 * out.gamma.value * xi * xi;
  return out;
}

}  // namespace semfocus::bounds
