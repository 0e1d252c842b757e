// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "semfocus/backend/dispatch.hpp"
#include "semfocus/backend/reference/backward.hpp"
#include "semfocus/backend/reference/forward.hpp"
#include "semfocus/bounds/norms.hpp"
#include "semfocus/bounds/selection.hpp"
#include "semfocus/core/softmax.hpp"

// Lipschitz constants of the attention map F(Q, K, V) = O, O_i = sum_{j in K_i} P_ij v_j with
// P_i = softmax over the kept set K_i of s_ij = scale q_i . k_j, in the Euclidean (Frobenius) norm
// of the flattened tensors. The kept sets are held constant (as the backward does), which is
// exact while no score crosses a selection boundary: input-dependent policies are only locally
// Lipschitz, and every bound here comes with the radius where it holds.
//
// Jacobian of one row (forward mode; dP_ij = P_ij (ds_ij - sum_l P_il ds_il) for j in K_i):
//   ds_ij = scale (dq_i . k_j + q_i . dk_j)
//   dO_i  = sum_{j in K_i} P_ij (ds_ij - sbar_i) v_j + sum_{j in K_i} P_ij dv_j,
//   sbar_i = sum_j P_ij ds_ij.
// Equivalently dO_i = scale C_i dq_i + scale sum_j P_ij (v_j - O_i) q_i . dk_j + sum_j P_ij dv_j,
// C_i = sum_j P_ij (v_j - O_i)(k_j - c)^T (any c): the softmax Jacobian diag(P) - P P^T turns the
// coupling of Q with K and V into a covariance over the kept set.
namespace semfocus::bounds {

/// \brief Which arguments of F a derivative or bound is taken with respect to (a bit set).
enum class wrt : unsigned { q = 1, k = 2, v = 4, qkv = 7 };
constexpr wrt operator|(wrt a, wrt b) noexcept { return wrt(unsigned(a) | unsigned(b)); }
/// \brief Whether set `s` contains argument `x`.
constexpr bool contains(wrt s, wrt x) noexcept { return (unsigned(s) & unsigned(x)) != 0; }

namespace detail {

/// \brief Throws unless every element of the view is finite (the bounds need finite data).
template <class T>
void require_finite(const char* fn, const char* name, const tensor_view<const T>& t) {
  for (index_t b = 0; b < t.batch(); ++b)
    for (index_t h = 0; h < t.heads(); ++h)
      for (index_t i = 0; i < t.seq(); ++i)
        for (index_t c = 0; c < t.dim(); ++c)
          semfocus::detail::require(std::isfinite(double(t(b, h, i, c))), fn, ": ", name,
                                    " must be finite, got ", t(b, h, i, c), " at (", b, ", ", h,
                                    ", ", i, ", ", c, ")");
}

/// \brief The checks of every Lipschitz entry point: shapes (as forward), finite Q, K, V, a
/// non-empty argument set and a policy that accepts the shape. Returns the shape.
template <class Policy>
attention_shape check_point(const char* fn, const Policy& p, const tensor_view<const double>& q,
                            const tensor_view<const double>& k, const tensor_view<const double>& v,
                            wrt args) {
  const attention_shape s = semfocus::detail::check_inputs(fn, q, k, v);
  require_finite(fn, "q", q);
  require_finite(fn, "k", k);
  require_finite(fn, "v", v);
  semfocus::detail::require(unsigned(args) != 0 && unsigned(args) <= 7, fn,
                            ": args must be a non-empty subset of wrt::qkv, got ", unsigned(args));
  validate_policy(p, s);
  return s;
}

/// \brief P_i over the kept set of row i (0 off it; all 0 for an empty row), lse in double as
/// the reference forward computes it.
inline void row_probabilities(std::span<const double> s, std::span<const unsigned char> kept,
                              std::vector<double>& p) {
  online_softmax<double> acc;
  for (std::size_t j = 0; j < s.size(); ++j)
    if (kept[j]) acc.add(s[j]);
  const double lse = acc.lse();
  p.assign(s.size(), 0.0);
  for (std::size_t j = 0; j < s.size(); ++j)
    if (kept[j]) p[j] = softmax_probability(s[j], lse);
}

inline double norm(const double* x, index_t n) {
  double a = 0;
  for (index_t c = 0; c < n; ++c) a += x[c] * x[c];
  return std::sqrt(a);
}

/// \brief Max distance of the kept rows of `t` (head b, h) to their plain mean: the radius R of
/// the kept set about a fixed centre, so sum_j P_ij ||t_j - m_i||^2 <= R^2 for any weights P_i.
inline double kept_radius(const tensor_view<const double>& t, index_t b, index_t h,
                          std::span<const unsigned char> kept, std::vector<double>& centre) {
  centre.assign(std::size_t(t.dim()), 0.0);
  index_t n = 0;
  for (std::size_t j = 0; j < kept.size(); ++j)
    if (kept[j]) {
      const double* r = t.row(b, h, index_t(j));
      for (index_t c = 0; c < t.dim(); ++c) centre[std::size_t(c)] += r[c];
      ++n;
    }
  if (n == 0) return 0;
  for (double& c : centre) c /= double(n);
  double radius = 0;
  for (std::size_t j = 0; j < kept.size(); ++j)
    if (kept[j]) {
      const double* r = t.row(b, h, index_t(j));
      double a = 0;
      for (index_t c = 0; c < t.dim(); ++c)
        a += (r[c] - centre[std::size_t(c)]) * (r[c] - centre[std::size_t(c)]);
      radius = std::max(radius, std::sqrt(a));
    }
  return radius;
}

}  // namespace detail

namespace detail {

/// \brief What the Jacobian at a point depends on besides the inputs: the kept sets and the
/// probabilities P of every head (prob[x][i n_k + j] = P_ij, indexed as head_selection::kept),
/// computed once so that repeated products (power iteration) do not select again.
struct linearisation {
  attention_shape shape{};
  double scale = 0;
  std::vector<head_selection> heads;      // [batch heads]
  std::vector<std::vector<double>> prob;  // [batch heads][n_q n_k]
};

/// \brief The linearisation of F at (Q, K) for shape s and scale; O(batch heads n_q n_k d).
template <class Policy>
linearisation linearise(const Policy& p, const tensor_view<const double>& q,
                        const tensor_view<const double>& k, const attention_shape& s,
                        double scale) {
  linearisation lin{s, scale, {}, {}};
  std::vector<double> row;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      const head_selection& sel = lin.heads.emplace_back(select_head(p, q, k, b, h, scale));
      std::vector<double>& prob = lin.prob.emplace_back();
      prob.reserve(sel.scores.size());
      for (index_t i = 0; i < s.n_q; ++i) {
        row_probabilities(sel.score_row(i), sel.kept_row(i), row);
        prob.insert(prob.end(), row.begin(), row.end());
      }
    }
  return lin;
}

/// \brief d_out = J [dq, dk, dv] at the linearised point (arguments already checked);
/// O(batch heads n_q n_k (d + d_v)).
inline void apply_jvp(const linearisation& lin, const tensor_view<const double>& q,
                      const tensor_view<const double>& k, const tensor_view<const double>& v,
                      const tensor_view<const double>& dq, const tensor_view<const double>& dk,
                      const tensor_view<const double>& dv, const tensor_view<double>& d_out) {
  const attention_shape& s = lin.shape;
  std::vector<double> ds(std::size_t(s.n_k)), o(std::size_t(s.d_v));
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      const auto x = std::size_t(b * s.heads + h);
      const head_selection& sel = lin.heads[x];
      for (index_t i = 0; i < s.n_q; ++i) {
        const auto kept = sel.kept_row(i);
        const double* prob = lin.prob[x].data() + std::size_t(i * s.n_k);
        const double* qi = q.row(b, h, i);
        const double* dqi = dq.row(b, h, i);
        double sbar = 0;
        for (index_t j = 0; j < s.n_k; ++j) {
          if (!kept[std::size_t(j)]) continue;
          const double* kj = k.row(b, h, j);
          const double* dkj = dk.row(b, h, j);
          double a = 0;
          for (index_t c = 0; c < s.d; ++c) a += dqi[c] * kj[c] + qi[c] * dkj[c];
          ds[std::size_t(j)] = lin.scale * a;
          sbar += prob[j] * ds[std::size_t(j)];
        }
        std::fill(o.begin(), o.end(), 0.0);
        for (index_t j = 0; j < s.n_k; ++j) {
          if (!kept[std::size_t(j)]) continue;
          const double pj = prob[j], w = pj * (ds[std::size_t(j)] - sbar);
          const double* vj = v.row(b, h, j);
          const double* dvj = dv.row(b, h, j);
          for (index_t c = 0; c < s.d_v; ++c) o[std::size_t(c)] += w * vj[c] + pj * dvj[c];
        }
        double* out = d_out.row(b, h, i);
        for (index_t c = 0; c < s.d_v; ++c) out[c] = o[std::size_t(c)];
      }
    }
}

}  // namespace detail

/// \brief Jacobian-vector product of the attention map: d_out = dF(Q, K, V)[dQ, dK, dV], by the
/// forward-mode formula above, in double, with the reference backend's kept sets. Shapes as
/// forward: dq like q, dk like k, dv like v, d_out like the output. The transpose (the
/// vector-Jacobian product) is semfocus::backward. Time O(batch heads n_q n_k (d + d_v)).
/// \throws invalid_argument on mismatched shapes, null data, a d_out that overlaps an input, a
/// non-finite scale or a policy that rejects the shape.
template <class Policy>
requires attention_policy<Policy, double>
void attention_jvp(const Policy& p, tensor_view<const double> q, tensor_view<const double> k,
                   tensor_view<const double> v, tensor_view<const double> dq,
                   tensor_view<const double> dk, tensor_view<const double> dv,
                   tensor_view<double> d_out, const attention_options& options = {}) {
  constexpr const char* fn = "semfocus::bounds::attention_jvp";
  const attention_shape s = semfocus::detail::check_inputs(fn, q, k, v);
  semfocus::detail::check_view(fn, "dq", dq, s.q(), false);
  semfocus::detail::check_view(fn, "dk", dk, s.k(), false);
  semfocus::detail::check_view(fn, "dv", dv, s.v(), false);
  semfocus::detail::check_view(fn, "d_out", d_out, s.out(), true);
  const char* names[] = {"q", "k", "v", "dq", "dk", "dv"};
  const tensor_view<const double> ins[] = {q, k, v, dq, dk, dv};
  for (int x = 0; x < 6; ++x)
    semfocus::detail::check_disjoint(fn, "d_out", d_out, names[x], ins[x]);
  validate_policy(p, s);
  const double scale = semfocus::detail::resolve_scale(fn, options, s.d);
  detail::apply_jvp(detail::linearise(p, q, k, s, scale), q, k, v, dq, dk, dv, d_out);
}

/// \brief The local Lipschitz constant of F at (Q, K, V) with respect to the arguments `args`:
/// ||J||_2 of the Jacobian restricted to them, by power iteration on J^T J with attention_jvp as
/// J and semfocus::backward (reference backend) as J^T. A lower bound of ||J||_2 that converges to
/// it; it is the Lipschitz constant only in the limit of small perturbations (and, for
/// input-dependent policies, within selection_radius). Time per iteration: one jvp and one
/// backward, O(batch heads n_q n_k (d + d_v)).
/// \throws invalid_argument as attention_jvp, or when an input is not finite.
template <class Policy>
requires attention_policy<Policy, double> power_result
local_lipschitz(const Policy& p, tensor_view<const double> q, tensor_view<const double> k,
                tensor_view<const double> v, wrt args = wrt::qkv,
                const attention_options& options = {}, const power_settings& settings = {}) {
  constexpr const char* fn = "semfocus::bounds::local_lipschitz";
  const attention_shape s = detail::check_point(fn, p, q, k, v, args);
  const std::array<tensor_shape, 3> shapes = {s.q(), s.k(), s.v()};
  const std::array<wrt, 3> names = {wrt::q, wrt::k, wrt::v};
  std::array<std::vector<double>, 3> tangent, grad;
  index_t n = 0;
  for (std::size_t a = 0; a < 3; ++a) {
    tangent[a].assign(std::size_t(shapes[a].size()), 0.0);
    grad[a].assign(std::size_t(shapes[a].size()), 0.0);
    if (contains(args, names[a])) n += shapes[a].size();
  }
  std::vector<double> out(std::size_t(s.out().size())), d_out(out.size());
  auto record =
      forward(exec::reference, p, q, k, v, tensor_view<double>(out.data(), s.out()), options);
  const detail::linearisation lin =
      detail::linearise(p, q, k, s, semfocus::detail::resolve_scale(fn, options, s.d));
  auto apply = [&](const Eigen::VectorXd& x) -> Eigen::VectorXd {
    index_t at = 0;
    for (std::size_t a = 0; a < 3; ++a)
      if (contains(args, names[a]))
        for (double& t : tangent[a]) t = x[at++];
    detail::apply_jvp(lin, q, k, v, tensor_view<const double>(tangent[0].data(), shapes[0]),
                      tensor_view<const double>(tangent[1].data(), shapes[1]),
                      tensor_view<const double>(tangent[2].data(), shapes[2]),
                      tensor_view<double>(d_out.data(), s.out()));
    return Eigen::Map<const Eigen::VectorXd>(d_out.data(), index_t(d_out.size()));
  };
  auto apply_t = [&](const Eigen::VectorXd& y) -> Eigen::VectorXd {
    std::copy(y.data(), y.data() + y.size(), d_out.begin());
    backward(exec::reference, p, q, k, v, tensor_view<const double>(out.data(), s.out()),
             tensor_view<const double>(d_out.data(), s.out()), record,
             tensor_view<double>(grad[0].data(), shapes[0]),
             tensor_view<double>(grad[1].data(), shapes[1]),
             tensor_view<double>(grad[2].data(), shapes[2]));
    Eigen::VectorXd x(n);
    index_t at = 0;
    for (std::size_t a = 0; a < 3; ++a)
      if (contains(args, names[a]))
        for (const double g : grad[a]) x[at++] = g;
    return x;
  };
  if (n == 0 || s.out().size() == 0) return {};
  return power_iteration(apply, apply_t, n, settings);
}

}  // namespace semfocus::bounds
