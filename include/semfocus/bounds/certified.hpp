// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "semfocus/bounds/lipschitz.hpp"

// Certified (closed-form) Lipschitz bounds of the attention map on a ball, for every policy
// class, and the radius within which an input-dependent selection cannot change.
//
// Derivation (per head; rows i, kept sets K_i constant; the formulas of lipschitz.hpp):
//  (V)  dO_i = sum_j P_ij dv_j. By Jensen (P_i sums to 1 or 0),
//       ||dO||^2 <= sum_i sum_j P_ij ||dv_j||^2 <= max_j (sum_i P_ij) ||dV||^2, and
//       sum_i P_ij <= beta_j, the sink count of key j:        L_V = sqrt(max_j beta_j).
//  (Q)  dO_i = scale C_i dq_i with C_i = sum_j P_ij (v_j - O_i)(k_j - m_i)^T, m_i the mean of the
//       kept keys. By Cauchy-Schwarz ||C_i||_2 <= sqrt(sum_j P_ij ||v_j - O_i||^2)
//       sqrt(sum_j P_ij ||k_j - m_i||^2) <= RV_i RK_i, with RK_i = max_{j in K_i} ||k_j - m_i|| and
//       RV_i likewise for the values (a weighted variance is at most the squared radius about
//       any fixed centre):                                    L_Q = scale max_i RK_i RV_i.
//  (K)  dO_i = scale sum_j P_ij (v_j - O_i) (q_i . dk_j), so by Cauchy-Schwarz
//       ||dO||^2 <= scale^2 sum_i RV_i^2 ||q_i||^2 sum_j P_ij ||dk_j||^2 and with P_ij <= [j in
//       K_i]: L_K = scale sqrt(max_j sum_{i : j in K_i} RV_i^2 ||q_i||^2).
//  Jointly ||[J_Q J_K J_V]||^2 <= ||J_Q||^2 + ||J_K||^2 + ||J_V||^2 (the Gram matrix is the sum).
// On a ball of radius r about the point (perturbation Frobenius norm <= r), each q_i moves by
// at most g_q r, each key by g_k r and each value by g_v r, so ||q_i||, RK_i and RV_i (about the
// centres of the point) grow by at most those amounts; the bounds above with the grown values
// bound ||J|| everywhere on the ball, hence are Lipschitz constants there (the ball is convex).
// A policy that keeps a tight set (small RK, RV, beta) gets a small bound: this is where
// semantic focus enters. Fixed masks never change their kept sets (radius +inf); an
// input-dependent policy keeps its kept sets while every score moves by less than its
// selection margin (selection.hpp), which with |ds_ij| <= scale ((g_q ||k_j|| + g_k ||q_i||) r
// + g_q g_k r^2) gives its selection radius.
namespace semfocus::bounds {

/// \brief A Lipschitz bound and where it holds.
struct lipschitz_bound {
  /// Upper bound of ||F(x) - F(y)|| / ||x - y|| for x, y in the open ball of radius `radius`
  /// about the point (+inf where no finite bound exists, e.g. a joint bound on an infinite ball).
  double value = 0;
  /// The radius the bound holds in: the requested one, capped at selection_radius.
  double radius = 0;
  /// Radius within which no kept set can change: +inf for input-agnostic policies or for
  /// perturbations of V alone, finite (possibly 0) for top-k, threshold and other input-dependent
  /// policies whenever some key is unkept, which are therefore never reported as globally
  /// Lipschitz in Q or K.
  double selection_radius = 0;
  /// True when `value` holds for every perturbation of the arguments (radius +inf).
  bool global = false;
  /// The three terms of the bound at `radius`: with respect to Q, K and V (see above); for a
  /// layer bound, the largest head's terms already multiplied by the projection norms.
  std::array<double, 3> terms{};
};

namespace detail {

/// \brief a b, except that a quantity that is exactly 0 stays 0 against an infinite one (a zero
/// query that is not perturbed has no influence however far the values move).
inline double product(double a, double b) { return a == 0 || b == 0 ? 0.0 : a * b; }

/// \brief What the closed-form bounds need from one head at the point.
struct head_geometry {
  head_selection sel;
  std::vector<double> rk, rv, qnorm, margin;  // per row
  double kmax = 0;                            // max_j ||k_j|| over all keys of the head

  /// \brief (L_Q, L_K, L_V) on the ball of radius r with growth rates g = (g_q, g_k, g_v).
  std::array<double, 3> terms(double scale, std::array<double, 3> g, double r) const {
    const index_t nq = sel.slice.n_q, nk = sel.slice.n_k;
    for (double& x : g) x = x > 0 ? x * r : 0.0;  // the growth g r (0 when g = 0, even at r = inf)
    double lq = 0;
    std::vector<double> col(std::size_t(nk), 0.0);
    std::vector<index_t> beta(std::size_t(nk), 0);
    for (index_t i = 0; i < nq; ++i) {
      const double rki = rk[std::size_t(i)] + g[1], rvi = rv[std::size_t(i)] + g[2];
      const double qi = qnorm[std::size_t(i)] + g[0];
      const auto kept = sel.kept_row(i);
      bool any = false;
      for (index_t j = 0; j < nk; ++j)
        if (kept[std::size_t(j)]) {
          col[std::size_t(j)] += product(rvi * rvi, qi * qi);
          ++beta[std::size_t(j)];
          any = true;
        }
      if (any) lq = std::max(lq, product(rki, rvi));
    }
    const double ck = nk ? *std::max_element(col.begin(), col.end()) : 0.0;
    const index_t bmax = nk ? *std::max_element(beta.begin(), beta.end()) : 0;
    return {std::abs(scale) * lq, std::abs(scale) * std::sqrt(ck), std::sqrt(double(bmax))};
  }

  /// \brief Radius within which no kept set of this head changes, with growth rates g.
  double radius(double scale, std::array<double, 3> g) const {
    double r = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < margin.size(); ++i)
      r = std::min(r, radius_for_margin(margin[i], std::abs(scale), g[0] * kmax + g[1] * qnorm[i],
                                        g[0] * g[1]));
    return r;
  }
};

template <class Policy>
head_geometry geometry(const Policy& p, const tensor_view<const double>& q,
                       const tensor_view<const double>& k, const tensor_view<const double>& v,
                       index_t b, index_t h, double scale) {
  head_geometry g;
  g.sel = select_head(p, q, k, b, h, scale);
  const auto nq = std::size_t(q.seq());
  g.rk.resize(nq);
  g.rv.resize(nq);
  g.qnorm.resize(nq);
  g.margin.resize(nq);
  std::vector<double> centre;
  for (index_t j = 0; j < k.seq(); ++j) g.kmax = std::max(g.kmax, norm(k.row(b, h, j), k.dim()));
  for (index_t i = 0; i < q.seq(); ++i) {
    const auto kept = g.sel.kept_row(i);
    g.rk[std::size_t(i)] = kept_radius(k, b, h, kept, centre);
    g.rv[std::size_t(i)] = kept_radius(v, b, h, kept, centre);
    g.qnorm[std::size_t(i)] = norm(q.row(b, h, i), q.dim());
    g.margin[std::size_t(i)] = selection_margin(p, g.sel.slice, i, g.sel.score_row(i), kept);
  }
  return g;
}

}  // namespace detail

/// \brief Radius (Frobenius norm of the perturbation of the arguments `args`) within which no
/// kept set of `p` can change at (Q, K): +inf for input-agnostic policies or args = wrt::v;
/// otherwise the smallest over rows of radius_for_margin(margin_i, scale, g_q max_j ||k_j|| +
/// g_k ||q_i||, g_q g_k), g_x = 1 when x is perturbed, else 0. Time O(batch heads n_q n_k d).
/// \throws invalid_argument as local_lipschitz.
template <class Policy>
requires attention_policy<Policy, double>
double selection_radius(const Policy& p, tensor_view<const double> q, tensor_view<const double> k,
                        tensor_view<const double> v, wrt args = wrt::qkv,
                        const attention_options& options = {}) {
  return certified_lipschitz(p, q, k, v, args, 0.0, options).selection_radius;
}

/// \brief Certified upper bound of the Lipschitz constant of F with respect to `args` on the
/// open ball of radius min(radius, selection radius) about (Q, K, V), by the closed forms above:
/// per head sqrt(sum over args of L_x^2), the largest over heads and batches (they are
/// independent blocks). With respect to a single argument (V, Q or K alone) the bound does not
/// depend on the radius, so it is global (`global` true, `radius` +inf) whenever the selection
/// radius is infinite: for any policy with respect to V, and for input-agnostic policies (or a
/// top-k that keeps every key) with respect to Q or K. Always
/// >= local_lipschitz at the point. Time O(batch heads n_q n_k (d + d_v)).
/// \throws invalid_argument as local_lipschitz, or when radius is negative or NaN.
template <class Policy>
requires attention_policy<Policy, double> lipschitz_bound certified_lipschitz(
    const Policy& p, tensor_view<const double> q, tensor_view<const double> k,
    tensor_view<const double> v, wrt args, double radius, const attention_options& options = {}) {
  constexpr const char* fn = "semfocus::bounds::certified_lipschitz";
  const attention_shape s = detail::check_point(fn, p, q, k, v, args);
  semfocus::detail::require(radius >= 0, fn, ": radius must be >= 0, got ", radius);
  const double scale = semfocus::detail::resolve_scale(fn, options, s.d);
  const std::array<double, 3> g = {contains(args, wrt::q) ? 1.0 : 0.0,
                                   contains(args, wrt::k) ? 1.0 : 0.0,
                                   contains(args, wrt::v) ? 1.0 : 0.0};
  lipschitz_bound out;
  out.selection_radius = std::numeric_limits<double>::infinity();
  std::vector<detail::head_geometry> heads;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      heads.push_back(detail::geometry(p, q, k, v, b, h, scale));
      out.selection_radius = std::min(out.selection_radius, heads.back().radius(scale, g));
    }
  // The terms that grow with r: L_Q with K or V perturbed, L_K with Q or V perturbed.
  const bool grows = (g[0] > 0 && (g[1] > 0 || g[2] > 0)) || (g[1] > 0 && (g[0] > 0 || g[2] > 0));
  out.global = std::isinf(out.selection_radius) && !grows;
  out.radius = out.global ? out.selection_radius : std::min(radius, out.selection_radius);
  for (const detail::head_geometry& hg : heads) {
    const std::array<double, 3> t = hg.terms(scale, g, out.global ? 0.0 : out.radius);
    double sq = 0;
    for (std::size_t x = 0; x < 3; ++x)
      if (g[x] > 0) sq += t[x] * t[x];
    if (!(std::sqrt(sq) < out.value)) {  // NaN would propagate, never be skipped
      out.value = std::sqrt(sq);
      for (std::size_t x = 0; x < 3; ++x) out.terms[x] = g[x] > 0 ? t[x] : 0.0;
    }
  }
  return out;
}

}  // namespace semfocus::bounds
