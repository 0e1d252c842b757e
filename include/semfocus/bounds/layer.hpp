// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "semfocus/detail/eigen.hpp"

#include "semfocus/bounds/certified.hpp"

// Lipschitz constants of a multi-head attention layer with respect to its input X (one sequence,
// [n, d_model]) for given projection weights: head h computes Q_h = X Wq_h^T + bq_h,
// K_h = X Wk_h^T + bk_h, V_h = X Wv_h^T + bv_h (Wq_h the rows [h d, (h + 1) d) of Wq), and the
// layer returns the heads' outputs side by side, G(X) = [O_1 | ... | O_H] ([n, heads d_v]; the
// output projection, if any, multiplies every constant by its spectral norm). By the chain rule
// J_G = J_F [A_q; A_k; A_v] with A_x dX = dX Wx^T, so per head
//   ||J_h|| <= ||Wq_h|| L_Q + ||Wk_h|| L_K + ||Wv_h|| L_V     (triangle inequality)
// with the terms of certified.hpp grown on the ball by g_x = ||Wx_h||_2 (a perturbation of X of
// norm r moves Q_h by at most ||Wq_h|| r), and ||J_G||^2 <= sum_h ||J_h||^2 (stacked outputs).
namespace semfocus::bounds {

namespace detail {

/// \brief The projections of one sequence, stored [n, heads d] row-major and viewed as
/// [1, heads, n, d].
struct projected {
  using matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  matrix q, k, v;
  index_t heads = 1;

  static tensor_view<double> view(matrix& m, index_t heads) {
    const index_t d = m.cols() / heads;
    return {m.data(), {1, heads, index_t(m.rows()), d}, {m.size(), d, index_t(m.cols())}};
  }
  static tensor_view<const double> view(const matrix& m, index_t heads) {
    const index_t d = m.cols() / heads;
    return {m.data(), {1, heads, index_t(m.rows()), d}, {m.size(), d, index_t(m.cols())}};
  }
};

inline projected project(const char* fn, const Eigen::Ref<const Eigen::MatrixXd>& x,
                         const layer_weights& w, index_t heads) {
  using semfocus::detail::require;
  require(heads >= 1, fn, ": heads must be >= 1, got ", heads);
  require(x.size() > 0 && x.allFinite(), fn, ": x must be a non-empty finite [n, d_model] matrix");
  const auto check = [&](const char* name, const Eigen::MatrixXd& m, const Eigen::VectorXd& b) {
    require(m.cols() == x.cols(), fn, ": ", name, " must have ", x.cols(),
            " columns (d_model), got ", m.cols());
    require(m.rows() >= heads && m.rows() % heads == 0, fn, ": ", name,
            " must have a positive multiple of heads = ", heads, " rows, got ", m.rows());
    require(b.size() == m.rows(), fn, ": the bias of ", name, " must have ", m.rows(),
            " entries, got ", b.size());
    require(m.allFinite() && b.allFinite(), fn, ": ", name, " and its bias must be finite");
  };
  check("wq", w.wq, w.bq);
  check("wk", w.wk, w.bk);
  check("wv", w.wv, w.bv);
  require(w.wq.rows() == w.wk.rows(), fn, ": wq and wk must have the same rows, got ", w.wq.rows(),
          " and ", w.wk.rows());
  projected p;
  p.heads = heads;
  p.q = (x * w.wq.transpose()).rowwise() + w.bq.transpose();
  p.k = (x * w.wk.transpose()).rowwise() + w.bk.transpose();
  p.v = (x * w.wv.transpose()).rowwise() + w.bv.transpose();
  return p;
}

/// \brief ||rows [h rows/heads, (h + 1) rows/heads) of w||_2 by a dense SVD (exact up to
/// rounding, so that certified bounds stay certified).
inline double head_norm(const Eigen::MatrixXd& w, index_t heads, index_t h) {
  const index_t d = w.rows() / heads;
  const Eigen::MatrixXd block = w.middleRows(h * d, d);
  return Eigen::JacobiSVD<Eigen::MatrixXd>(block).singularValues()(0);
}

}  // namespace detail

/// \brief The local Lipschitz constant of the layer map G at X: ||J_G||_2 by power iteration
/// (attention_jvp composed with the projections as J, semfocus::backward then the transposed
/// projections as J^T). Shapes: x [n, d_model]; w.wq, w.wk [heads d, d_model], w.wv
/// [heads d_v, d_model] with their biases (w.w1, w.w2 are not used). The score scale defaults to
/// 1/sqrt(d). Time per iteration O(heads n^2 (d + d_v) + n d_model heads (d + d_v)).
/// \throws invalid_argument on inconsistent shapes, non-finite x or weights, or a policy that
/// rejects the shape.
template <class Policy>
requires attention_policy<Policy, double> power_result local_lipschitz_input(
    const Policy& p, const Eigen::Ref<const Eigen::MatrixXd>& x, const layer_weights& w,
    index_t heads, const attention_options& options = {}, const power_settings& settings = {}) {
  constexpr const char* fn = "semfocus::bounds::local_lipschitz_input";
  using M = detail::projected::matrix;
  const detail::projected pr = detail::project(fn, x, w, heads);
  const auto q = detail::projected::view(pr.q, heads), k = detail::projected::view(pr.k, heads),
             v = detail::projected::view(pr.v, heads);
  const attention_shape s = semfocus::detail::check_inputs(fn, q, k, v);
  validate_policy(p, s);
  M out(pr.v.rows(), pr.v.cols()), d_out(out.rows(), out.cols()), dq(pr.q.rows(), pr.q.cols()),
      dk(pr.k.rows(), pr.k.cols()), dv(pr.v.rows(), pr.v.cols());
  auto record = forward(exec::reference, p, q, k, v, detail::projected::view(out, heads), options);
  const detail::linearisation lin =
      detail::linearise(p, q, k, s, semfocus::detail::resolve_scale(fn, options, s.d));
  const index_t n = x.rows(), dm = x.cols();
  auto apply = [&](const Eigen::VectorXd& t) -> Eigen::VectorXd {
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
        dx(t.data(), n, dm);
    dq = dx * w.wq.transpose();
    dk = dx * w.wk.transpose();
    dv = dx * w.wv.transpose();
    detail::apply_jvp(lin, q, k, v, detail::projected::view(std::as_const(dq), heads),
                      detail::projected::view(std::as_const(dk), heads),
                      detail::projected::view(std::as_const(dv), heads),
                      detail::projected::view(d_out, heads));
    return Eigen::Map<const Eigen::VectorXd>(d_out.data(), d_out.size());
  };
  auto apply_t = [&](const Eigen::VectorXd& u) -> Eigen::VectorXd {
    d_out = Eigen::Map<const M>(u.data(), out.rows(), out.cols());
    backward(exec::reference, p, q, k, v, detail::projected::view(std::as_const(out), heads),
             detail::projected::view(std::as_const(d_out), heads), record,
             detail::projected::view(dq, heads), detail::projected::view(dk, heads),
             detail::projected::view(dv, heads));
    const M dx = dq * w.wq + dk * w.wk + dv * w.wv;
    return Eigen::Map<const Eigen::VectorXd>(dx.data(), dx.size());
  };
  return power_iteration(apply, apply_t, n * dm, settings);
}

/// \brief Certified upper bound of the Lipschitz constant of the layer map G with respect to X on
/// the open ball of radius min(radius, selection radius) about X (see the header comment). The
/// selection radius is the smallest over heads of certified.hpp's radius with g = (||Wq_h||,
/// ||Wk_h||): +inf for input-agnostic policies. Since Q and K both move with X, the bound grows
/// with the radius and is global only when the radius is infinite and the weights make it
/// finite (never, unless Wq or Wk is 0). Always >= local_lipschitz_input at X.
/// Time O(heads n^2 (d + d_v) + heads d^2 d_model). \throws as local_lipschitz_input, or when
/// radius is negative or NaN.
template <class Policy>
requires attention_policy<Policy, double> lipschitz_bound certified_lipschitz_input(
    const Policy& p, const Eigen::Ref<const Eigen::MatrixXd>& x, const layer_weights& w,
    index_t heads, double radius, const attention_options& options = {}) {
  constexpr const char* fn = "semfocus::bounds::certified_lipschitz_input";
  semfocus::detail::require(radius >= 0, fn, ": radius must be >= 0, got ", radius);
  const detail::projected pr = detail::project(fn, x, w, heads);
  const auto q = detail::projected::view(pr.q, heads), k = detail::projected::view(pr.k, heads),
             v = detail::projected::view(pr.v, heads);
  const attention_shape s = semfocus::detail::check_inputs(fn, q, k, v);
  validate_policy(p, s);
  const double scale = semfocus::detail::resolve_scale(fn, options, s.d);
  lipschitz_bound out;
  out.selection_radius = std::numeric_limits<double>::infinity();
  std::vector<detail::head_geometry> geo;
  std::vector<std::array<double, 3>> gains;
  for (index_t h = 0; h < heads; ++h) {
    geo.push_back(detail::geometry(p, q, k, v, 0, h, scale));
    gains.push_back({detail::head_norm(w.wq, heads, h), detail::head_norm(w.wk, heads, h),
                     detail::head_norm(w.wv, heads, h)});
    out.selection_radius = std::min(out.selection_radius, geo.back().radius(scale, gains.back()));
  }
  out.radius = std::min(radius, out.selection_radius);
  double sum = 0, largest = -1;
  for (std::size_t h = 0; h < geo.size(); ++h) {
    const std::array<double, 3> t = geo[h].terms(scale, gains[h], out.radius);
    std::array<double, 3> scaled{};
    double lh = 0;
    for (std::size_t a = 0; a < 3; ++a) {
      scaled[a] = detail::product(gains[h][a], t[a]);
      lh += scaled[a];
    }
    sum += lh * lh;
    if (lh > largest) {
      largest = lh;
      out.terms = scaled;
    }
  }
  out.value = std::sqrt(sum);
  out.global = std::isinf(out.radius) && std::isfinite(out.value);
  return out;
}

}  // namespace semfocus::bounds
