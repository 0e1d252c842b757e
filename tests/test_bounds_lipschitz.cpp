// SPDX-License-Identifier: MIT
// The Lipschitz part of the bounds module: the Jacobian-vector product of the attention map
// F(Q, K, V) = O (lipschitz.hpp) against finite differences and as the transpose of backward; the
// local Lipschitz constant by power iteration against the SVD of a Jacobian built here by finite
// differences; the certified closed-form bounds (certified.hpp) against the local constant and
// against measured ratios ||F(x) - F(y)|| / ||x - y|| on the ball they report; the selection
// radius (selection.hpp) against perturbations that must not change a kept set and against the
// documented formula; semantic focus in numbers; the layer versions (layer.hpp); the errors.
//
// Finite differences only see the Jacobian with constant kept sets where no score crosses a
// selection boundary during a step, so every problem used with them is drawn from a seed and
// rejected (the next seed is tried) unless each row's scores, computed here in long double, are
// at least a margin (1e-3 or more) from changing the row's selection; a step of 1e-6 moves a
// score by a few 1e-6 at most.
#include <doctest/doctest.h>

#include <semfocus/bounds/bounds.hpp>
#include <semfocus/semfocus.hpp>

#include <semfocus/detail/eigen.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/margins.hpp"
#include "support/tensors.hpp"

using namespace semfocus;
using namespace semfocus::test;
using semfocus::bounds::wrt;

namespace {

constexpr double fd_step = 1e-6;
constexpr double inf = std::numeric_limits<double>::infinity();

/// A row policy defined here, outside the library, with the optional `selection_margin` member
/// of selection.hpp: user::above_mean (keep the scores >= the row mean) with a certified margin.
/// When every score moves by less than eps the mean moves by less than eps, so each score's
/// distance to the mean changes by less than 2 eps: half the smallest distance is a margin.
struct above_mean_certified : user::above_mean {
  double selection_margin(const head_slice&, index_t, std::span<const double> scores,
                          std::span<const unsigned char>) const {
    return mean_gap(std::vector<double>(scores.begin(), scores.end())) / 2;
  }
};

/// Every argument set the tests take derivatives with respect to.
constexpr wrt arg_sets[] = {wrt::q, wrt::k, wrt::v, wrt::q | wrt::v, wrt::qkv};

std::string name_of(wrt args) {
  std::string s;
  for (const auto& [a, n] :
       {std::pair{wrt::q, "q"}, std::pair{wrt::k, "k"}, std::pair{wrt::v, "v"}})
    if (bounds::contains(args, a)) s += s.empty() ? n : std::string("|") + n;
  return s.empty() ? "none" : s;
}

index_t at_most(index_t k, index_t n) { return k < n ? k : n; }

double effective_scale(const attention_shape& s, const attention_options& opt) {
  return opt.scale ? *opt.scale : 1.0 / std::sqrt(double(s.d));
}

// Row margins computed in the test: the distance of a row of scaled scores from the boundary of
// its selection (+inf for a fixed mask).

double no_margin(const std::vector<double>&) { return unbounded; }

/// threshold: every score other than the (unique) max at least the margin from max - tau, and the
/// max ahead of the second score by the margin.
double threshold_gap(const std::vector<double>& s, double tau) {
  const auto top = std::max_element(s.begin(), s.end());
  double m = unbounded;
  for (auto it = s.begin(); it != s.end(); ++it)
    if (it != top) m = std::min({m, std::abs(*it - (*top - tau)), *top - *it});
  return m;
}

/// Calls f(name, policy, row_margin) for every policy the tests cover, sized for shape s (n_k >= 4
/// and n_q >= 2 assumed); row_margin(scores) is the test's distance of a score row from the
/// policy's selection boundary.
template <class F>
void for_each_policy(const attention_shape& s, F&& f) {
  const index_t g = 1;  // one global token
  f("dense", dense{}, no_margin);
  f("causal", causal{}, no_margin);
  f("banded", banded(at_most(3, s.n_k)), no_margin);
  f("block_local", block_local(2), no_margin);
  f("strided", strided(2, 1), no_margin);
  f("with_global(banded)", global_tokens(banded(at_most(2, s.n_k - g)), g), no_margin);
  f("random_k", random_k(at_most(3, s.n_k - 1), 7), no_margin);
  const index_t kt = at_most(3, s.n_k - 1);
  f("top_k", top_k(kt), [kt](const std::vector<double>& r) { return rank_gap(r, kt, true); });
  f("bottom_k", bottom_k(2), [](const std::vector<double>& r) { return rank_gap(r, 2, false); });
  f("threshold", threshold(1.0),
    [](const std::vector<double>& r) { return threshold_gap(r, 1.0); });
  f("absolute_threshold", absolute_threshold(0.3),
    [](const std::vector<double>& r) { return absolute_gap(r, 0.3); });
  f("user::same_parity", user::same_parity{}, no_margin);
  f("user::above_mean", user::above_mean{}, mean_gap);
  f("above_mean_certified (user, with selection_margin)", above_mean_certified{}, mean_gap);
}

/// The smallest row margin over every score row of `pr`, scores computed here in long double.
template <class RowMargin>
double problem_margin(const problem<double>& pr, double scale, const RowMargin& row_margin) {
  double worst = unbounded;
  std::vector<double> row;
  for (index_t b = 0; b < pr.shape.batch; ++b)
    for (index_t h = 0; h < pr.shape.heads; ++h)
      for (index_t i = 0; i < pr.shape.n_q; ++i) {
        test_scores(pr, b, h, i, scale, row);
        worst = std::min(worst, row_margin(row));
      }
  return worst;
}

/// The first problem of shape s from seeds seed, seed + 1000, ... whose every row is at least
/// `min_margin` from its selection boundary; nullopt if none of 200 seeds qualifies.
template <class RowMargin>
std::optional<problem<double>> stable_problem(const attention_shape& s, double scale,
                                              std::uint64_t seed, const RowMargin& row_margin,
                                              double min_margin) {
  for (std::uint64_t attempt = 0; attempt < 200; ++attempt) {
    problem<double> pr(s, seed + 1000 * attempt);
    if (problem_margin(pr, scale, row_margin) >= min_margin) return pr;
  }
  return std::nullopt;
}

// Points and directions of (Q, K, V) space, flattened as [Q; K; V] (each contiguous row-major):
// the order of local_lipschitz's tangent vectors.

using vec = std::vector<double>;

double dot(const vec& a, const vec& b) {
  double s = 0;
  for (std::size_t x = 0; x < a.size(); ++x) s += a[x] * b[x];
  return s;
}
double norm(const vec& a) { return std::sqrt(dot(a, a)); }
double distance(const vec& a, const vec& b) {
  double s = 0;
  for (std::size_t x = 0; x < a.size(); ++x) s += (a[x] - b[x]) * (a[x] - b[x]);
  return std::sqrt(s);
}

vec flatten(const problem<double>& pr) {
  vec x(pr.q.data);
  x.insert(x.end(), pr.k.data.begin(), pr.k.data.end());
  x.insert(x.end(), pr.v.data.begin(), pr.v.data.end());
  return x;
}

/// The flat indices of [Q; K; V] that belong to the arguments `args`.
std::vector<std::size_t> arg_indices(const attention_shape& s, wrt args) {
  std::vector<std::size_t> out;
  std::size_t at = 0;
  for (const auto& [a, size] : {std::pair{wrt::q, s.q().size()}, std::pair{wrt::k, s.k().size()},
                                std::pair{wrt::v, s.v().size()}}) {
    for (std::size_t x = 0; x < std::size_t(size); ++x)
      if (bounds::contains(args, a)) out.push_back(at + x);
    at += std::size_t(size);
  }
  return out;
}

std::size_t flat_size(const attention_shape& s) {
  return std::size_t(s.q().size() + s.k().size() + s.v().size());
}

/// A Gaussian direction of unit norm supported on the arguments `args`.
vec random_direction(const attention_shape& s, wrt args, std::mt19937_64& gen) {
  std::normal_distribution<double> normal;
  vec u(flat_size(s), 0.0);
  for (const std::size_t x : arg_indices(s, args)) u[x] = normal(gen);
  const double n = norm(u);
  for (double& e : u) e /= n;
  return u;
}

/// A coordinate vector of the arguments `args` (as power_result::vector) placed in [Q; K; V].
vec embed(const attention_shape& s, wrt args, const Eigen::VectorXd& y) {
  vec u(flat_size(s), 0.0);
  const auto idx = arg_indices(s, args);
  for (std::size_t x = 0; x < idx.size(); ++x) u[idx[x]] = y[index_t(x)];
  return u;
}

/// pr with (Q, K, V) moved by t dx.
problem<double> moved(const problem<double>& pr, const vec& dx, double t) {
  problem<double> out = pr;
  std::size_t at = 0;
  for (tensor<double>* m : {&out.q, &out.k, &out.v})
    for (double& e : m->data) e += t * dx[at++];
  return out;
}

/// F(pr) through the public forward of the reference backend.
template <class Policy>
vec output(const Policy& p, const problem<double>& pr, const attention_options& opt) {
  tensor<double> out(pr.shape.out());
  forward(exec::reference, p, pr.q.cview(), pr.k.cview(), pr.v.cview(), out.view(), opt);
  return out.data;
}

/// J u by bounds::attention_jvp.
template <class Policy>
vec jvp(const Policy& p, const problem<double>& pr, const vec& u, const attention_options& opt) {
  const attention_shape& s = pr.shape;
  tensor<double> dq(s.q()), dk(s.k()), dv(s.v()), out(s.out(), std::nan(""));
  std::size_t at = 0;
  for (tensor<double>* m : {&dq, &dk, &dv})
    for (double& e : m->data) e = u[at++];
  bounds::attention_jvp(p, pr.q.cview(), pr.k.cview(), pr.v.cview(), dq.cview(), dk.cview(),
                        dv.cview(), out.view(), opt);
  return out.data;
}

/// J^T w by semfocus::backward (reference backend), flattened as [dQ; dK; dV].
template <class Policy>
vec vjp(const Policy& p, const problem<double>& pr, const vec& w, const attention_options& opt) {
  problem<double> work = pr;
  work.d_out.data = w;
  const auto r = run_reference(p, work, opt);
  vec g(r.dq.data);
  g.insert(g.end(), r.dk.data.begin(), r.dk.data.end());
  g.insert(g.end(), r.dv.data.begin(), r.dv.data.end());
  return g;
}

/// ||F(x + t u) - F(x)|| / ||t u||.
template <class Policy>
double step_ratio(const Policy& p, const problem<double>& pr, const vec& f0, const vec& u, double t,
                  const attention_options& opt) {
  return distance(output(p, moved(pr, u, t), opt), f0) / (std::abs(t) * norm(u));
}

/// The Jacobian of F with respect to `args`, column by column by central finite differences of
/// forward (independently of attention_jvp); columns in the order of arg_indices.
template <class Policy>
Eigen::MatrixXd fd_jacobian(const Policy& p, const problem<double>& pr, wrt args,
                            const attention_options& opt) {
  const auto idx = arg_indices(pr.shape, args);
  Eigen::MatrixXd j(pr.shape.out().size(), index_t(idx.size()));
  vec e(flat_size(pr.shape), 0.0);
  for (std::size_t c = 0; c < idx.size(); ++c) {
    e[idx[c]] = 1;
    const vec up = output(p, moved(pr, e, fd_step), opt);
    const vec down = output(p, moved(pr, e, -fd_step), opt);
    e[idx[c]] = 0;
    for (std::size_t r = 0; r < up.size(); ++r)
      j(index_t(r), index_t(c)) = (up[r] - down[r]) / (2 * fd_step);
  }
  return j;
}

double largest_singular_value(const Eigen::MatrixXd& j) {
  return Eigen::JacobiSVD<Eigen::MatrixXd>(j).singularValues()(0);
}

/// The kept masks of every (b, h) of pr, as the reference forward selects them.
template <class Policy>
std::vector<std::vector<unsigned char>> kept_sets(const Policy& p, const problem<double>& pr,
                                                  double scale) {
  std::vector<std::vector<unsigned char>> out;
  for (index_t b = 0; b < pr.shape.batch; ++b)
    for (index_t h = 0; h < pr.shape.heads; ++h)
      out.push_back(bounds::select_head(p, pr.q.cview(), pr.k.cview(), b, h, scale).kept);
  return out;
}

/// Power iteration converges at the rate (sigma_2 / sigma_1)^2, and with respect to Q alone the
/// singular values are those of the rows' blocks, so two rows may give sigma_2 / sigma_1 = 0.999
/// (it happens in these tests): room for the 10^4 iterations such a problem needs.
constexpr bounds::power_settings patient{.max_iterations = 100000};

template <class Policy>
bounds::power_result local(const Policy& p, const problem<double>& pr, wrt args,
                           const attention_options& opt = {},
                           const bounds::power_settings& settings = patient) {
  return bounds::local_lipschitz(p, pr.q.cview(), pr.k.cview(), pr.v.cview(), args, opt, settings);
}

template <class Policy>
bounds::lipschitz_bound certified(const Policy& p, const problem<double>& pr, wrt args,
                                  double radius, const attention_options& opt = {}) {
  return bounds::certified_lipschitz(p, pr.q.cview(), pr.k.cview(), pr.v.cview(), args, radius,
                                     opt);
}

template <class Policy>
double selection_radius(const Policy& p, const problem<double>& pr, wrt args,
                        const attention_options& opt = {}) {
  return bounds::selection_radius(p, pr.q.cview(), pr.k.cview(), pr.v.cview(), args, opt);
}

}  // namespace

TEST_CASE(
    "bounds: attention_jvp matches central finite differences and backward is its transpose") {
  struct jvp_case {
    attention_shape shape;
    attention_options opt;
    std::uint64_t seed;
  };
  const jvp_case cases[] = {
      {{2, 2, 5, 7, 3, 4}, {}, 11},              // batch 2, heads 2, n_q < n_k, d != d_v
      {{1, 2, 7, 5, 3, 2}, {}, 21},              // n_q > n_k: causal rows without keys
      {{1, 1, 6, 6, 4, 4}, {.scale = 0.7}, 31},  // a custom scale
  };
  for (const jvp_case& c : cases)
    for_each_policy(c.shape, [&](const char* name, const auto& p, const auto& row_margin) {
      const std::string policy = name;
      CAPTURE(policy);
      CAPTURE(c.shape);
      const auto pr =
          stable_problem(c.shape, effective_scale(c.shape, c.opt), c.seed, row_margin, 1e-3);
      REQUIRE(pr.has_value());
      std::mt19937_64 gen(c.seed + 5);
      std::normal_distribution<double> normal;
      for (const wrt args : arg_sets) {
        const std::string args_name = name_of(args);
        CAPTURE(args_name);
        const vec u = random_direction(c.shape, args, gen);
        const vec ju = jvp(p, *pr, u, c.opt);
        const vec up = output(p, moved(*pr, u, fd_step), c.opt);
        const vec down = output(p, moved(*pr, u, -fd_step), c.opt);
        double err = 0, size = 1;
        for (std::size_t x = 0; x < ju.size(); ++x) {
          const double fd = (up[x] - down[x]) / (2 * fd_step);
          err = std::max(err, std::abs(ju[x] - fd));
          size = std::max(size, std::abs(fd));
        }
        CAPTURE(err);
        CHECK(err <= 1e-7 * size);

        // <J u, w> = <u, J^T w> with J^T from semfocus::backward.
        vec w(ju.size());
        for (double& e : w) e = normal(gen);
        const vec jtw = vjp(p, *pr, w, c.opt);
        const double lhs = dot(ju, w), rhs = dot(u, jtw);
        CAPTURE(lhs);
        CAPTURE(rhs);
        CHECK(std::abs(lhs - rhs) <= 1e-12 * std::max(1.0, norm(ju) * norm(w)));
      }
    });
}

TEST_CASE(
    "bounds: local_lipschitz is the largest singular value of the finite-difference Jacobian") {
  struct svd_case {
    attention_shape shape;
    std::uint64_t seed;
  };
  const svd_case cases[] = {{{1, 1, 5, 6, 3, 2}, 101}, {{1, 2, 6, 6, 3, 3}, 202}};
  for (const svd_case& c : cases)
    for_each_policy(c.shape, [&](const char* name, const auto& p, const auto& row_margin) {
      const std::string policy = name;
      CAPTURE(policy);
      CAPTURE(c.shape);
      const auto pr =
          stable_problem(c.shape, effective_scale(c.shape, {}), c.seed, row_margin, 1e-3);
      REQUIRE(pr.has_value());
      for (const wrt args : arg_sets) {
        const std::string args_name = name_of(args);
        CAPTURE(args_name);
        const Eigen::MatrixXd j = fd_jacobian(p, *pr, args, {});
        const double sigma = largest_singular_value(j);
        const bounds::power_result r = local(p, *pr, args);
        CAPTURE(sigma);
        CAPTURE(r.value);
        CAPTURE(r.iterations);
        CHECK(r.converged);
        CHECK(sigma > 0);
        CHECK(std::abs(r.value - sigma) <= 1e-6 * sigma);
        // The reported vector is a unit vector that attains the value.
        REQUIRE(r.vector.size() == j.cols());
        CHECK(std::abs(r.vector.norm() - 1) <= 1e-12);
        CHECK(std::abs((j * r.vector).norm() - r.value) <= 1e-6 * sigma);
        // With the default settings (at most 2000 iterations), converged or not: a lower bound.
        const bounds::power_result quick = local(p, *pr, args, {}, {});
        CHECK(quick.value <= sigma * (1 + 1e-6));
        CHECK(quick.value >= 0.99 * sigma);
      }
    });
}

TEST_CASE(
    "bounds: certified_lipschitz bounds local_lipschitz, which bounds finite-difference ratios") {
  struct ratio_case {
    attention_shape shape;
    attention_options opt;
    std::uint64_t seed;
  };
  const ratio_case cases[] = {{{1, 2, 6, 7, 3, 4}, {}, 301},
                              {{2, 1, 5, 5, 2, 3}, {.scale = 0.8}, 401}};
  for (const ratio_case& c : cases)
    for_each_policy(c.shape, [&](const char* name, const auto& p, const auto& row_margin) {
      const std::string policy = name;
      CAPTURE(policy);
      CAPTURE(c.shape);
      const auto pr =
          stable_problem(c.shape, effective_scale(c.shape, c.opt), c.seed, row_margin, 1e-2);
      REQUIRE(pr.has_value());
      const vec x = flatten(*pr), f0 = output(p, *pr, c.opt);
      std::mt19937_64 gen(c.seed + 9);
      for (const wrt args : arg_sets) {
        const std::string args_name = name_of(args);
        CAPTURE(args_name);
        const bounds::power_result loc = local(p, *pr, args, c.opt);
        const bounds::lipschitz_bound cert = certified(p, *pr, args, 0.0, c.opt);
        CAPTURE(loc.value);
        CAPTURE(cert.value);
        CHECK(loc.converged);
        CHECK(cert.value >= loc.value);

        double args_norm = 0;
        for (const std::size_t i : arg_indices(c.shape, args)) args_norm += x[i] * x[i];
        const double e = 1e-6 * std::sqrt(args_norm);
        double worst = 0;
        for (int r = 0; r < 20; ++r)
          worst = std::max(worst,
                           step_ratio(p, *pr, f0, random_direction(c.shape, args, gen), e, c.opt));
        CAPTURE(worst);
        CHECK(worst <= loc.value * (1 + 1e-6));

        // The power iteration's vector attains the local constant (central differences).
        const vec top = embed(c.shape, args, loc.vector);
        const double attained =
            distance(output(p, moved(*pr, top, e), c.opt), output(p, moved(*pr, top, -e), c.opt)) /
            (2 * e);
        CAPTURE(attained);
        CHECK(std::abs(attained - loc.value) <= 1e-6 * loc.value);
      }
    });
}

TEST_CASE("bounds: certified_lipschitz holds on the ball it reports") {
  const attention_shape s{1, 2, 6, 7, 3, 4};
  const attention_options opt{};
  for_each_policy(s, [&](const char* name, const auto& p, const auto& row_margin) {
    const std::string policy = name;
    CAPTURE(policy);
    const auto pr = stable_problem(s, effective_scale(s, opt), 501, row_margin, 1e-2);
    REQUIRE(pr.has_value());
    const vec f0 = output(p, *pr, opt);
    std::mt19937_64 gen(502);
    std::uniform_real_distribution<double> unit;
    for (const wrt args : arg_sets) {
      const std::string args_name = name_of(args);
      CAPTURE(args_name);
      const double sel = selection_radius(p, *pr, args, opt);
      const double r = 0.5 * std::min(sel, 1.0);
      CAPTURE(sel);
      if (!(r > 0)) {  // only user::above_mean, which has no margin: nothing beyond the point
        CHECK(policy == "user::above_mean");
        continue;
      }
      const bounds::lipschitz_bound cert = certified(p, *pr, args, r, opt);
      CAPTURE(cert.value);
      CHECK(cert.radius == (cert.global ? inf : r));
      CHECK(cert.selection_radius == sel);
      CHECK(cert.value >= certified(p, *pr, args, 0.0, opt).value);
      CHECK(std::isfinite(cert.value));

      double worst = 0;
      // From the point, steps of several sizes: random directions and the steepest one.
      const vec top = embed(s, args, local(p, *pr, args, opt).vector);
      for (const double t : {r, 0.5 * r, 0.1 * r, 1e-3 * r}) {
        worst = std::max(worst, step_ratio(p, *pr, f0, top, t, opt));
        worst = std::max(worst, step_ratio(p, *pr, f0, top, -t, opt));
        for (int k = 0; k < 4; ++k)
          worst = std::max(worst, step_ratio(p, *pr, f0, random_direction(s, args, gen), t, opt));
      }
      // Between two points of the ball.
      for (int k = 0; k < 8; ++k) {
        const problem<double> a = moved(*pr, random_direction(s, args, gen), r * unit(gen));
        const problem<double> b = moved(*pr, random_direction(s, args, gen), r * unit(gen));
        worst = std::max(worst, distance(output(p, a, opt), output(p, b, opt)) /
                                    distance(flatten(a), flatten(b)));
      }
      CAPTURE(worst);
      CHECK(worst <= cert.value);
      // The local constant anywhere in the ball.
      for (int k = 0; k < 2; ++k) {
        const problem<double> a = moved(*pr, random_direction(s, args, gen), 0.999 * r);
        const double la = local(p, a, args, opt).value;
        CAPTURE(la);
        CHECK(la <= cert.value);
      }
    }
  });
}

TEST_CASE("bounds: a global bound holds for perturbations of any size") {
  const attention_shape s{1, 2, 6, 7, 3, 4};
  for_each_policy(s, [&](const char* name, const auto& p, const auto& row_margin) {
    const std::string policy = name;
    CAPTURE(policy);
    const auto pr = stable_problem(s, effective_scale(s, {}), 601, row_margin, 1e-2);
    REQUIRE(pr.has_value());
    const vec f0 = output(p, *pr, {});
    std::mt19937_64 gen(602);
    for (const wrt args : arg_sets) {
      const std::string args_name = name_of(args);
      CAPTURE(args_name);
      const bounds::lipschitz_bound cert = certified(p, *pr, args, 0.25);
      if (!cert.global) continue;
      CHECK(std::isfinite(cert.value));
      CHECK(cert.value == certified(p, *pr, args, 1e6).value);
      double worst = 0;
      for (const double t : {1.0, 10.0, 100.0})
        for (int k = 0; k < 4; ++k)
          worst = std::max(worst, step_ratio(p, *pr, f0, random_direction(s, args, gen), t, {}));
      CAPTURE(worst);
      CHECK(worst <= cert.value);
    }
  });
}

namespace {

/// The terms (L_Q, L_K, L_V) of certified.hpp's closed form for one head at radius r, with the
/// growth rates g = (g_q, g_k, g_v), computed here from the kept sets.
template <class Policy>
std::array<double, 3> documented_terms(const Policy& p, const problem<double>& pr, index_t b,
                                       index_t h, double scale, std::array<double, 3> g, double r) {
  const attention_shape& s = pr.shape;
  const auto sel = bounds::select_head(p, pr.q.cview(), pr.k.cview(), b, h, scale);
  // Largest distance of the kept rows of t to their plain mean.
  const auto spread = [&](const tensor<double>& t, std::span<const unsigned char> kept) {
    const index_t dim = t.shape.dim;
    std::vector<double> mean(std::size_t(dim), 0.0);
    double count = 0;
    for (index_t j = 0; j < s.n_k; ++j)
      if (kept[std::size_t(j)]) {
        count += 1;
        for (index_t c = 0; c < dim; ++c) mean[std::size_t(c)] += t(b, h, j, c);
      }
    double out = 0;
    for (index_t j = 0; j < s.n_k; ++j)
      if (kept[std::size_t(j)]) {
        double a = 0;
        for (index_t c = 0; c < dim; ++c) {
          const double x = t(b, h, j, c) - mean[std::size_t(c)] / count;
          a += x * x;
        }
        out = std::max(out, std::sqrt(a));
      }
    return out;
  };
  double lq = 0;
  std::vector<double> col(std::size_t(s.n_k), 0.0), beta(std::size_t(s.n_k), 0.0);
  for (index_t i = 0; i < s.n_q; ++i) {
    const auto kept = sel.kept_row(i);
    const double rk = spread(pr.k, kept) + g[1] * r, rv = spread(pr.v, kept) + g[2] * r;
    double qn = 0;
    for (index_t c = 0; c < s.d; ++c) qn += pr.q(b, h, i, c) * pr.q(b, h, i, c);
    qn = std::sqrt(qn) + g[0] * r;
    bool any = false;
    for (index_t j = 0; j < s.n_k; ++j)
      if (kept[std::size_t(j)]) {
        any = true;
        col[std::size_t(j)] += rv * rv * qn * qn;
        beta[std::size_t(j)] += 1;
      }
    if (any) lq = std::max(lq, rk * rv);
  }
  return {std::abs(scale) * lq,
          std::abs(scale) * std::sqrt(*std::max_element(col.begin(), col.end())),
          std::sqrt(*std::max_element(beta.begin(), beta.end()))};
}

}  // namespace

TEST_CASE("bounds: certified_lipschitz is the documented closed form") {
  const attention_shape s{2, 2, 5, 6, 3, 2};
  const attention_options opt{.scale = -0.6};  // a negative scale: |scale| in the bounds
  for_each_policy(s, [&](const char* name, const auto& p, const auto& row_margin) {
    const std::string policy = name;
    CAPTURE(policy);
    const auto pr = stable_problem(s, -0.6, 1900, row_margin, 1e-2);
    REQUIRE(pr.has_value());
    for (const wrt args : arg_sets) {
      const std::string args_name = name_of(args);
      CAPTURE(args_name);
      const std::array<double, 3> g = {bounds::contains(args, wrt::q) ? 1.0 : 0.0,
                                       bounds::contains(args, wrt::k) ? 1.0 : 0.0,
                                       bounds::contains(args, wrt::v) ? 1.0 : 0.0};
      const double sel = selection_radius(p, *pr, args, opt);
      for (const double requested : {0.0, 0.3}) {
        const bounds::lipschitz_bound cert = certified(p, *pr, args, requested, opt);
        const double r = cert.global ? 0.0 : std::min(requested, sel);
        double expected = 0;
        for (index_t b = 0; b < s.batch; ++b)
          for (index_t h = 0; h < s.heads; ++h) {
            const auto t = documented_terms(p, *pr, b, h, -0.6, g, r);
            expected = std::max(
                expected, std::sqrt(g[0] * t[0] * t[0] + g[1] * t[1] * t[1] + g[2] * t[2] * t[2]));
          }
        CAPTURE(requested);
        CAPTURE(expected);
        CAPTURE(cert.value);
        CHECK(std::abs(cert.value - expected) <= 1e-12 * expected);
        // The reported terms are those of the largest head, zero for the other arguments.
        double sq = 0;
        for (std::size_t x = 0; x < 3; ++x) {
          if (g[x] == 0) CHECK(cert.terms[x] == 0);
          sq += cert.terms[x] * cert.terms[x];
        }
        CHECK(std::abs(std::sqrt(sq) - cert.value) <= 1e-12 * cert.value);
      }
    }
  });
}

namespace {

/// The selection margin of one row as selection.hpp documents it, from scores computed here.
template <class Policy>
double documented_margin(const Policy& p, const std::vector<double>& s) {
  if constexpr (std::is_same_v<Policy, top_k>) {
    return rank_gap(s, p.k, true) / 2;
  } else if constexpr (std::is_same_v<Policy, bottom_k>) {
    return rank_gap(s, p.k, false) / 2;
  } else if constexpr (std::is_same_v<Policy, threshold>) {
    const double floor = *std::max_element(s.begin(), s.end()) - p.tau;
    double m = unbounded;
    for (const double x : s) m = std::min(m, std::abs(x - floor));
    return m / 2;
  } else if constexpr (std::is_same_v<Policy, absolute_threshold>) {
    return absolute_gap(s, p.tau);
  } else {
    static_assert(std::is_same_v<Policy, above_mean_certified>);
    return mean_gap(s) / 2;
  }
}

/// selection_radius as certified.hpp documents it: the smallest over rows of the largest r with
/// scale ((g_q max_j ||k_j|| + g_k ||q_i||) r + g_q g_k r^2) <= margin_i, computed here.
template <class Policy>
double documented_radius(const Policy& p, const problem<double>& pr, wrt args, double scale) {
  const long double gq = bounds::contains(args, wrt::q) ? 1 : 0;
  const long double gk = bounds::contains(args, wrt::k) ? 1 : 0;
  const attention_shape& s = pr.shape;
  long double best = inf;
  std::vector<double> row;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      long double kmax = 0;
      for (index_t j = 0; j < s.n_k; ++j) {
        long double a = 0;
        for (index_t c = 0; c < s.d; ++c)
          a += static_cast<long double>(pr.k(b, h, j, c)) * pr.k(b, h, j, c);
        kmax = std::max(kmax, std::sqrt(a));
      }
      for (index_t i = 0; i < s.n_q; ++i) {
        long double qn = 0;
        for (index_t c = 0; c < s.d; ++c)
          qn += static_cast<long double>(pr.q(b, h, i, c)) * pr.q(b, h, i, c);
        qn = std::sqrt(qn);
        test_scores(pr, b, h, i, scale, row);
        const long double e = documented_margin(p, row) / scale;
        const long double a = gq * kmax + gk * qn, c2 = gq * gk;
        const long double r = c2 > 0 ? (-a + std::sqrt(a * a + 4 * c2 * e)) / (2 * c2) : e / a;
        best = std::min(best, r);
      }
    }
  return double(best);
}

/// Calls f(name, policy) for the input-dependent policies whose selection radius is positive.
template <class F>
void for_each_certified_policy(F&& f) {
  f("top_k", top_k(3));
  f("bottom_k", bottom_k(2));
  f("threshold", threshold(1.0));
  f("absolute_threshold", absolute_threshold(0.3));
  f("above_mean_certified", above_mean_certified{});
}

}  // namespace

TEST_CASE("bounds: perturbations within selection_radius never change a kept set") {
  const attention_shape s{1, 2, 6, 7, 3, 4};
  const double scale = effective_scale(s, {});
  for_each_certified_policy([&](const char* name, const auto& p) {
    const std::string policy = name;
    CAPTURE(policy);
    const auto pr = stable_problem(
        s, scale, 701, [&](const std::vector<double>& row) { return documented_margin(p, row); },
        1e-2);
    REQUIRE(pr.has_value());
    const auto kept0 = kept_sets(p, *pr, scale);
    std::mt19937_64 gen(702);
    for (const wrt args : {wrt::q, wrt::k, wrt::q | wrt::k, wrt::qkv}) {
      const std::string args_name = name_of(args);
      CAPTURE(args_name);
      const double r = selection_radius(p, *pr, args);
      CAPTURE(r);
      REQUIRE(std::isfinite(r));
      REQUIRE(r > 0);
      CHECK(std::abs(r - documented_radius(p, *pr, args, scale)) <= 1e-9 * r);
      // The radius of V perturbations does not depend on the radius of V.
      if (args == wrt::qkv) CHECK(r == selection_radius(p, *pr, wrt::q | wrt::k));
      const double t = 0.99 * r;
      int changed = 0;
      for (int k = 0; k < 50; ++k)
        changed += kept_sets(p, moved(*pr, random_direction(s, args, gen), t), scale) != kept0;
      // The moves that shift the scores of one row the most: q_i along k_a - k_c (shifts
      // s_ia - s_ic the most), k_a along q_i (shifts s_ia the most) and k_a, k_c along q_i and -q_i
      // together (shifts s_ia - s_ic the most; within a factor sqrt 2 of the rank margin's radius).
      const std::size_t nq = std::size_t(s.q().size());
      for (index_t h = 0; h < s.heads; ++h)
        for (index_t i = 0; i < s.n_q; ++i)
          for (index_t a = 0; a < s.n_k; ++a)
            for (index_t cc = 0; cc < s.n_k; ++cc) {
              vec u(flat_size(s), 0.0);
              if (bounds::contains(args, wrt::q) && cc != a) {
                for (index_t x = 0; x < s.d; ++x)
                  u[std::size_t((h * s.n_q + i) * s.d + x)] =
                      pr->k(0, h, a, x) - pr->k(0, h, cc, x);
                for (const double sign : {1.0, -1.0})
                  changed += kept_sets(p, moved(*pr, u, sign * t / norm(u)), scale) != kept0;
              }
              if (bounds::contains(args, wrt::k)) {
                std::fill(u.begin(), u.end(), 0.0);
                for (index_t x = 0; x < s.d; ++x) {
                  u[nq + std::size_t((h * s.n_k + a) * s.d + x)] += pr->q(0, h, i, x);
                  u[nq + std::size_t((h * s.n_k + cc) * s.d + x)] -=
                      cc != a ? pr->q(0, h, i, x) : 0.0;
                }
                for (const double sign : {1.0, -1.0})
                  changed += kept_sets(p, moved(*pr, u, sign * t / norm(u)), scale) != kept0;
              }
            }
      CHECK(changed == 0);
    }
  });
}

TEST_CASE("bounds: selection_radius and the global flag for fixed masks, V alone and joint sets") {
  const attention_shape s{1, 2, 6, 7, 3, 4};
  for_each_policy(s, [&](const char* name, const auto& p, const auto& row_margin) {
    using P = std::remove_cvref_t<decltype(p)>;
    const std::string policy = name;
    CAPTURE(policy);
    const auto pr = stable_problem(s, effective_scale(s, {}), 801, row_margin, 1e-3);
    REQUIRE(pr.has_value());
    constexpr bool agnostic = is_input_agnostic_v<P>;
    for (const wrt args :
         {wrt::q, wrt::k, wrt::v, wrt::q | wrt::k, wrt::q | wrt::v, wrt::k | wrt::v, wrt::qkv}) {
      const std::string args_name = name_of(args);
      CAPTURE(args_name);
      const double sel = selection_radius(p, *pr, args);
      CAPTURE(sel);
      if (agnostic || args == wrt::v)
        CHECK(std::isinf(sel));
      else if constexpr (std::is_same_v<P, user::above_mean>)
        CHECK(sel == 0);  // an input-dependent policy without selection_margin: 0
      else
        CHECK((std::isfinite(sel) && sel > 0));
      // Global: V alone for every policy; Q alone or K alone for a fixed mask (the Q term does
      // not move with Q, nor the K term with K). A joint set's bound grows with the radius.
      const bool single = args == wrt::q || args == wrt::k || args == wrt::v;
      const bool expect_global = single && (agnostic || args == wrt::v);
      const bounds::lipschitz_bound cert = certified(p, *pr, args, 0.25);
      CHECK(cert.global == expect_global);
      CHECK(cert.selection_radius == sel);
      CHECK(cert.radius == (expect_global ? inf : std::min(0.25, sel)));
    }
  });
}

TEST_CASE("bounds: selection_radius is 0 at an exact tie at the cut") {
  // Integer queries and keys with scale 1: integer scores. Row 0 scores (3, 2, 2, 1), row 1
  // scores (1, 2, 0, 3).
  const attention_shape s{1, 1, 2, 4, 2, 1};
  problem<double> pr(s, 1);
  const double q[2][2] = {{1, 0}, {0, 1}};
  const double k[4][2] = {{3, 1}, {2, 2}, {2, 0}, {1, 3}};
  for (index_t i = 0; i < 2; ++i)
    for (index_t c = 0; c < 2; ++c) pr.q(0, 0, i, c) = q[i][c];
  for (index_t j = 0; j < 4; ++j)
    for (index_t c = 0; c < 2; ++c) pr.k(0, 0, j, c) = k[j][c];
  const attention_options opt{.scale = 1.0};
  const auto radius = [&](const auto& p, wrt args) {
    return bounds::selection_radius(p, pr.q.cview(), pr.k.cview(), pr.v.cview(), args, opt);
  };
  for (const wrt args : {wrt::q, wrt::k, wrt::qkv}) {
    const std::string args_name = name_of(args);
    CAPTURE(args_name);
    CHECK(radius(top_k(2), args) == 0);                 // row 0: 2 kept, 2 not
    CHECK(radius(bottom_k(2), args) == 0);              // row 0: 2 kept, 2 not
    CHECK(radius(threshold(1.0), args) == 0);           // row 0: the floor 3 - 1 is a score
    CHECK(radius(absolute_threshold(2.0), args) == 0);  // a score equals tau
    CHECK(radius(top_k(1), args) > 0);                  // gaps of 1 at the cut
    CHECK(radius(top_k(3), args) > 0);
    CHECK(radius(absolute_threshold(2.5), args) > 0);
    CHECK(std::isinf(radius(top_k(2), wrt::v)));
  }
  // The 0 is tight: an arbitrarily small move of k_2 changes row 0's top-2.
  const auto kept = [&](const problem<double>& x) {
    return bounds::select_head(top_k(2), x.q.cview(), x.k.cview(), 0, 0, 1.0).kept;
  };
  problem<double> nudged = pr;
  nudged.k(0, 0, 2, 0) += 1e-9;
  CHECK(kept(nudged) != kept(pr));
  // The certified bound then holds at the point only, and is still above the local constant.
  const bounds::lipschitz_bound cert = bounds::certified_lipschitz(
      top_k(2), pr.q.cview(), pr.k.cview(), pr.v.cview(), wrt::q, 1.0, opt);
  CHECK(cert.radius == 0);
  CHECK(cert.selection_radius == 0);
  CHECK_FALSE(cert.global);
  CHECK(cert.value >= local(top_k(2), pr, wrt::q, opt).value);
}

TEST_CASE("bounds: a user row policy has radius 0 unless it defines selection_margin") {
  const attention_shape s{1, 2, 6, 7, 3, 4};
  const double scale = effective_scale(s, {});
  const auto pr = stable_problem(s, scale, 901, mean_gap, 1e-2);
  REQUIRE(pr.has_value());
  for (const wrt args : {wrt::q, wrt::k, wrt::qkv}) {
    const std::string args_name = name_of(args);
    CAPTURE(args_name);
    CHECK(selection_radius(user::above_mean{}, *pr, args) == 0);
    const bounds::lipschitz_bound cert = certified(user::above_mean{}, *pr, args, 0.5);
    CHECK(cert.radius == 0);
    CHECK_FALSE(cert.global);
    const double r = selection_radius(above_mean_certified{}, *pr, args);
    CHECK(r > 0);
    CHECK(std::abs(r - documented_radius(above_mean_certified{}, *pr, args, scale)) <= 1e-9 * r);
    CHECK(certified(above_mean_certified{}, *pr, args, 0.5).radius == std::min(0.5, r));
  }
  CHECK(std::isinf(selection_radius(user::above_mean{}, *pr, wrt::v)));
  // Same kept sets, so the same bound at the point.
  CHECK(certified(user::above_mean{}, *pr, wrt::qkv, 0.0).value ==
        certified(above_mean_certified{}, *pr, wrt::qkv, 0.0).value);
}

TEST_CASE("bounds: semantic focus - on clustered keys top_k certifies a far smaller L_Q") {
  // 4 clusters of 4 keys (positions 4a .. 4a + 3 hold cluster a) around 3 e_a, values around
  // 2 e_a, queries near one cluster (all near cluster 0, or query i near cluster i mod 4).
  constexpr index_t clusters = 4, size = 4, n_q = 8, d = 4;
  const attention_shape s{1, 1, n_q, clusters * size, d, d};
  for (const bool one_cluster : {true, false}) {
    CAPTURE(one_cluster);
    problem<double> pr(s, 1);
    std::mt19937_64 gen(1001);
    std::normal_distribution<double> normal;
    for (index_t j = 0; j < s.n_k; ++j)
      for (index_t c = 0; c < d; ++c) {
        pr.k(0, 0, j, c) = (c == j / size ? 3.0 : 0.0) + 0.1 * normal(gen);
        pr.v(0, 0, j, c) = (c == j / size ? 2.0 : 0.0) + 0.1 * normal(gen);
      }
    for (index_t i = 0; i < n_q; ++i)
      for (index_t c = 0; c < d; ++c)
        pr.q(0, 0, i, c) = (c == (one_cluster ? 0 : i % clusters) ? 3.0 : 0.0) + 0.3 * normal(gen);
    // top_k(size) keeps exactly the query's cluster.
    const auto sel = bounds::select_head(top_k(size), pr.q.cview(), pr.k.cview(), 0, 0, 0.5);
    for (index_t i = 0; i < n_q; ++i)
      for (index_t j = 0; j < s.n_k; ++j)
        CHECK(bool(sel.kept_row(i)[std::size_t(j)]) ==
              (j / size == (one_cluster ? 0 : i % clusters)));
    const double r = 0.5 * std::min(selection_radius(top_k(size), pr, wrt::q), 1.0);
    REQUIRE(r > 0);
    const double focused = certified(top_k(size), pr, wrt::q, r).value;
    const double full = certified(dense{}, pr, wrt::q, r).value;
    const double band = certified(banded(size), pr, wrt::q, r).value;
    CAPTURE(focused);
    CAPTURE(full);
    CAPTURE(band);
    CHECK(focused * 20 < full);
    CHECK(focused * 20 < band);
    CHECK(local(top_k(size), pr, wrt::q).value <= focused);
  }
}

namespace {

/// X, one head's weights stacked for `heads` heads, as layer.hpp takes them.
struct layer_problem {
  Eigen::MatrixXd x;
  bounds::layer_weights w;
  index_t heads = 1;
};

layer_problem make_layer(index_t n, index_t d_model, index_t heads, index_t d, index_t d_v,
                         std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  const auto fill = [&](index_t rows, index_t cols, double sigma) {
    Eigen::MatrixXd m(rows, cols);
    for (index_t c = 0; c < cols; ++c)
      for (index_t r = 0; r < rows; ++r) m(r, c) = sigma * normal(gen);
    return m;
  };
  layer_problem l;
  l.heads = heads;
  const double sigma = 1 / std::sqrt(double(d_model));
  l.x = fill(n, d_model, 1.0);
  l.w.wq = fill(heads * d, d_model, sigma);
  l.w.wk = fill(heads * d, d_model, sigma);
  l.w.wv = fill(heads * d_v, d_model, sigma);
  l.w.bq = fill(heads * d, 1, 0.1);
  l.w.bk = fill(heads * d, 1, 0.1);
  l.w.bv = fill(heads * d_v, 1, 0.1);
  return l;
}

/// [1, heads, n, cols / heads] tensor of a projection X W^T + b computed here.
tensor<double> project(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, const Eigen::VectorXd& b,
                       index_t heads) {
  const Eigen::MatrixXd m = (x * w.transpose()).rowwise() + b.transpose();
  const index_t d = m.cols() / heads;
  tensor<double> t({1, heads, m.rows(), d});
  for (index_t h = 0; h < heads; ++h)
    for (index_t i = 0; i < m.rows(); ++i)
      for (index_t c = 0; c < d; ++c) t(0, h, i, c) = m(i, h * d + c);
  return t;
}

/// G(X) = [O_1 | ... | O_H] (flattened; the order does not change norms), computed here.
template <class Policy>
vec layer_output(const Policy& p, const Eigen::MatrixXd& x, const layer_problem& l) {
  const tensor<double> q = project(x, l.w.wq, l.w.bq, l.heads),
                       k = project(x, l.w.wk, l.w.bk, l.heads),
                       v = project(x, l.w.wv, l.w.bv, l.heads);
  tensor<double> out({1, l.heads, x.rows(), v.shape.dim});
  forward(exec::reference, p, q.cview(), k.cview(), v.cview(), out.view());
  return out.data;
}

template <class Policy>
Eigen::MatrixXd fd_layer_jacobian(const Policy& p, const layer_problem& l) {
  const vec f0 = layer_output(p, l.x, l);
  Eigen::MatrixXd j(index_t(f0.size()), l.x.size());
  for (index_t c = 0; c < l.x.size(); ++c) {
    Eigen::MatrixXd up = l.x, down = l.x;
    up(c % l.x.rows(), c / l.x.rows()) += fd_step;
    down(c % l.x.rows(), c / l.x.rows()) -= fd_step;
    const vec fu = layer_output(p, up, l), fdn = layer_output(p, down, l);
    for (std::size_t r = 0; r < fu.size(); ++r) j(index_t(r), c) = (fu[r] - fdn[r]) / (2 * fd_step);
  }
  return j;
}

Eigen::MatrixXd random_unit_matrix(index_t rows, index_t cols, std::mt19937_64& gen) {
  std::normal_distribution<double> normal;
  Eigen::MatrixXd m(rows, cols);
  for (index_t c = 0; c < cols; ++c)
    for (index_t r = 0; r < rows; ++r) m(r, c) = normal(gen);
  return m / m.norm();
}

}  // namespace

TEST_CASE("bounds: local_lipschitz_input is the largest singular value of the layer Jacobian") {
  const auto check = [](const char* name, const auto& p) {
    const std::string policy = name;
    CAPTURE(policy);
    for (const index_t heads : {1, 2}) {
      CAPTURE(heads);
      // A seed whose selection is at least 1e-3 (in X) from changing.
      std::optional<layer_problem> found;
      for (std::uint64_t seed = 1100; seed < 1300 && !found; ++seed) {
        layer_problem l = make_layer(5, 4, heads, 3, 2, seed);
        if (bounds::certified_lipschitz_input(p, l.x, l.w, heads, 0.0).selection_radius >= 1e-3)
          found = l;
      }
      REQUIRE(found.has_value());
      const layer_problem& l = *found;
      const Eigen::MatrixXd j = fd_layer_jacobian(p, l);
      const double sigma = largest_singular_value(j);
      const bounds::power_result loc =
          bounds::local_lipschitz_input(p, l.x, l.w, heads, {}, patient);
      CAPTURE(sigma);
      CAPTURE(loc.value);
      CHECK(loc.converged);
      CHECK(std::abs(loc.value - sigma) <= 1e-6 * sigma);

      const double sel =
          bounds::certified_lipschitz_input(p, l.x, l.w, heads, 0.0).selection_radius;
      const double r = 0.5 * std::min(sel, 1.0);
      const bounds::lipschitz_bound cert = bounds::certified_lipschitz_input(p, l.x, l.w, heads, r);
      CAPTURE(cert.value);
      CHECK(cert.value >= loc.value);
      CHECK(cert.radius == r);
      CHECK_FALSE(cert.global);
      CHECK(bounds::certified_lipschitz_input(p, l.x, l.w, heads, 0.0).value >= loc.value);
      // The documented closed form: per head L_h = ||Wq_h|| L_Q + ||Wk_h|| L_K + ||Wv_h|| L_V with
      // the terms grown by g = (||Wq_h||, ||Wk_h||, ||Wv_h||) r, and sqrt(sum_h L_h^2).
      problem<double> proj(attention_shape{1, heads, l.x.rows(), l.x.rows(), 3, 2}, 0);
      proj.q = project(l.x, l.w.wq, l.w.bq, heads);
      proj.k = project(l.x, l.w.wk, l.w.bk, heads);
      proj.v = project(l.x, l.w.wv, l.w.bv, heads);
      const auto block_norm = [&](const Eigen::MatrixXd& w, index_t h) {
        const index_t rows = w.rows() / heads;
        const Eigen::MatrixXd b = w.middleRows(h * rows, rows);
        return std::sqrt(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(b * b.transpose())
                             .eigenvalues()
                             .maxCoeff());
      };
      double sum = 0;
      for (index_t h = 0; h < heads; ++h) {
        const std::array<double, 3> gains = {block_norm(l.w.wq, h), block_norm(l.w.wk, h),
                                             block_norm(l.w.wv, h)};
        const auto t = documented_terms(p, proj, 0, h, 1 / std::sqrt(3.0), gains, r);
        const double lh = gains[0] * t[0] + gains[1] * t[1] + gains[2] * t[2];
        sum += lh * lh;
      }
      CHECK(std::abs(cert.value - std::sqrt(sum)) <= 1e-10 * cert.value);
      // Ratios on the ball and the local constant inside it.
      std::mt19937_64 gen(1400);
      const vec f0 = layer_output(p, l.x, l);
      double worst = 0;
      for (const double t : {r, 0.3 * r, 1e-3 * r})
        for (int k = 0; k < 4; ++k) {
          const Eigen::MatrixXd dx = t * random_unit_matrix(l.x.rows(), l.x.cols(), gen);
          worst = std::max(worst, distance(layer_output(p, l.x + dx, l), f0) / t);
        }
      CAPTURE(worst);
      CHECK(worst <= cert.value);
      const Eigen::MatrixXd inside =
          l.x + 0.999 * r * random_unit_matrix(l.x.rows(), l.x.cols(), gen);
      CHECK(bounds::local_lipschitz_input(p, inside, l.w, heads).value <= cert.value);
      if constexpr (is_input_agnostic_v<std::remove_cvref_t<decltype(p)>>) {
        CHECK(std::isinf(sel));
        // Q and K both move with X: no finite bound on an infinite ball.
        const bounds::lipschitz_bound all =
            bounds::certified_lipschitz_input(p, l.x, l.w, heads, inf);
        CHECK(std::isinf(all.value));
        CHECK_FALSE(all.global);
      } else {
        CHECK(std::isfinite(sel));
      }
    }
  };
  check("dense", dense{});
  check("top_k", top_k(2));
}

TEST_CASE("bounds: an infinite ball with zero queries gives a bound above the local constant") {
  // Q = 0 and perturbations of K and V only: every score stays 0 (q_i . dk_j = 0), so F is linear
  // in V with constant weights and its Lipschitz constant is ||J_V|| on every ball. A certified
  // bound may be +inf on an infinite ball, but it is never NaN nor below the local constant.
  const attention_shape s{1, 1, 3, 4, 2, 2};
  problem<double> pr(s, 1800);
  std::fill(pr.q.data.begin(), pr.q.data.end(), 0.0);
  const wrt args = wrt::k | wrt::v;
  const double loc = local(dense{}, pr, args).value;
  for (const double r : {0.0, 1.0, inf}) {
    CAPTURE(r);
    const bounds::lipschitz_bound cert = certified(dense{}, pr, args, r);
    CAPTURE(cert.value);
    CHECK_FALSE(std::isnan(cert.value));
    CHECK(cert.value >= loc);
  }
  // The layer version with Wq = 0 and bq = 0: every query is 0.
  layer_problem l = make_layer(4, 3, 1, 2, 2, 1801);
  l.w.wq.setZero();
  l.w.bq.setZero();
  const double loc_in = bounds::local_lipschitz_input(dense{}, l.x, l.w, 1, {}, patient).value;
  for (const double r : {0.0, 1.0, inf}) {
    CAPTURE(r);
    const bounds::lipschitz_bound cert = bounds::certified_lipschitz_input(dense{}, l.x, l.w, 1, r);
    CAPTURE(cert.value);
    CHECK_FALSE(std::isnan(cert.value));
    CHECK(cert.value >= loc_in);
  }
}

TEST_CASE("bounds: the layer functions reject bad shapes and non-finite input") {
  const layer_problem l = make_layer(5, 4, 2, 3, 2, 1500);
  const auto local_in = [](const layer_problem& x) {
    return bounds::local_lipschitz_input(dense{}, x.x, x.w, x.heads);
  };
  const auto cert_in = [](const layer_problem& x, double r = 1.0) {
    return bounds::certified_lipschitz_input(dense{}, x.x, x.w, x.heads, r);
  };
  {
    layer_problem bad = l;  // 5 rows of wq for 2 heads
    bad.w.wq = Eigen::MatrixXd::Ones(5, 4);
    bad.w.bq = Eigen::VectorXd::Ones(5);
    CHECK_THROWS_WITH_AS(local_in(bad),
                         doctest::Contains("wq must have a positive multiple of heads"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(cert_in(bad),
                         doctest::Contains("wq must have a positive multiple of heads"),
                         semfocus::invalid_argument);
  }
  {
    layer_problem bad = l;
    bad.w.bk = Eigen::VectorXd::Ones(5);
    CHECK_THROWS_WITH_AS(local_in(bad), doctest::Contains("the bias of wk must have 6 entries"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(cert_in(bad), doctest::Contains("the bias of wk must have 6 entries"),
                         semfocus::invalid_argument);
  }
  {
    layer_problem bad = l;
    bad.w.wv = Eigen::MatrixXd::Ones(4, 3);
    CHECK_THROWS_WITH_AS(local_in(bad), doctest::Contains("wv must have 4 columns"),
                         semfocus::invalid_argument);
  }
  {
    layer_problem bad = l;
    bad.x(2, 1) = std::nan("");
    CHECK_THROWS_WITH_AS(local_in(bad), doctest::Contains("x must be a non-empty finite"),
                         semfocus::invalid_argument);
    bad.x(2, 1) = inf;
    CHECK_THROWS_WITH_AS(cert_in(bad), doctest::Contains("x must be a non-empty finite"),
                         semfocus::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(cert_in(l, -1.0), doctest::Contains("radius must be >= 0"),
                       semfocus::invalid_argument);
  CHECK_THROWS_WITH_AS(bounds::local_lipschitz_input(top_k(6), l.x, l.w, 2),
                       doctest::Contains("semfocus::top_k: k must be in [1, n_k]"),
                       semfocus::invalid_argument);
}

TEST_CASE("bounds: the Lipschitz functions reject bad arguments naming them") {
  const attention_shape s{1, 2, 4, 5, 3, 2};
  const problem<double> pr(s, 1600);
  const auto q = pr.q.cview(), k = pr.k.cview(), v = pr.v.cview();
  using bounds::attention_jvp;
  using bounds::certified_lipschitz;
  using bounds::local_lipschitz;
  SUBCASE("mismatched shapes") {
    const tensor<double> k_bad(tensor_shape{1, 2, 5, 4});  // d = 4, q has 3
    const tensor<double> v_bad(tensor_shape{1, 2, 6, 2});  // n_k = 6, k has 5
    CHECK_THROWS_WITH_AS(local_lipschitz(dense{}, q, k_bad.cview(), v),
                         doctest::Contains("k must have shape"), semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(certified_lipschitz(dense{}, q, k, v_bad.cview(), wrt::q, 1.0),
                         doctest::Contains("v must have shape"), semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(bounds::selection_radius(top_k(2), q, k_bad.cview(), v),
                         doctest::Contains("k must have shape"), semfocus::invalid_argument);
    tensor<double> dq(s.q()), dk(s.k()), dv(s.v()), out(s.out());
    const tensor<double> dq_bad(tensor_shape{1, 2, 5, 3});
    CHECK_THROWS_WITH_AS(
        attention_jvp(dense{}, q, k, v, dq_bad.cview(), dk.cview(), dv.cview(), out.view()),
        doctest::Contains("dq must have shape"), semfocus::invalid_argument);
    tensor<double> out_bad(tensor_shape{1, 2, 4, 3});
    CHECK_THROWS_WITH_AS(
        attention_jvp(dense{}, q, k, v, dq.cview(), dk.cview(), dv.cview(), out_bad.view()),
        doctest::Contains("d_out must have shape"), semfocus::invalid_argument);
    // An output that aliases an input.
    problem<double> alias(attention_shape{1, 2, 4, 4, 2, 2}, 1601);
    tensor<double> z(alias.shape.q());
    CHECK_THROWS_WITH_AS(attention_jvp(dense{}, alias.q.cview(), alias.k.cview(), alias.v.cview(),
                                       z.cview(), z.cview(), alias.v.cview(), alias.q.view()),
                         doctest::Contains("d_out overlaps the memory of q"),
                         semfocus::invalid_argument);
  }
  SUBCASE("non-finite inputs") {
    problem<double> bad = pr;
    bad.q(0, 1, 2, 1) = std::nan("");
    CHECK_THROWS_WITH_AS(local_lipschitz(dense{}, bad.q.cview(), k, v),
                         doctest::Contains("q must be finite"), semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(certified_lipschitz(dense{}, bad.q.cview(), k, v, wrt::v, 1.0),
                         doctest::Contains("q must be finite"), semfocus::invalid_argument);
    bad = pr;
    bad.k(0, 0, 1, 0) = inf;
    CHECK_THROWS_WITH_AS(local_lipschitz(dense{}, q, bad.k.cview(), v, wrt::v),
                         doctest::Contains("k must be finite"), semfocus::invalid_argument);
    bad = pr;
    bad.v(0, 0, 4, 1) = -inf;
    CHECK_THROWS_WITH_AS(bounds::selection_radius(top_k(2), q, k, bad.v.cview()),
                         doctest::Contains("v must be finite"), semfocus::invalid_argument);
  }
  SUBCASE("empty or unknown argument set") {
    CHECK_THROWS_WITH_AS(local_lipschitz(dense{}, q, k, v, wrt(0)),
                         doctest::Contains("args must be a non-empty subset of wrt::qkv"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(certified_lipschitz(dense{}, q, k, v, wrt(0), 1.0),
                         doctest::Contains("args must be a non-empty subset of wrt::qkv"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(certified_lipschitz(dense{}, q, k, v, wrt(8), 1.0),
                         doctest::Contains("args must be a non-empty subset of wrt::qkv"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(bounds::selection_radius(dense{}, q, k, v, wrt(0)),
                         doctest::Contains("args must be a non-empty subset of wrt::qkv"),
                         semfocus::invalid_argument);
  }
  SUBCASE("negative or NaN radius") {
    CHECK_THROWS_WITH_AS(certified_lipschitz(dense{}, q, k, v, wrt::q, -0.5),
                         doctest::Contains("radius must be >= 0"), semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(certified_lipschitz(top_k(2), q, k, v, wrt::qkv, std::nan("")),
                         doctest::Contains("radius must be >= 0"), semfocus::invalid_argument);
  }
  SUBCASE("k > n_k for top_k") {
    CHECK_THROWS_WITH_AS(local_lipschitz(top_k(6), q, k, v),
                         doctest::Contains("semfocus::top_k: k must be in [1, n_k]"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(certified_lipschitz(top_k(6), q, k, v, wrt::q, 1.0),
                         doctest::Contains("semfocus::top_k: k must be in [1, n_k]"),
                         semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(bounds::selection_radius(bottom_k(6), q, k, v),
                         doctest::Contains("semfocus::bottom_k: k must be in [1, n_k]"),
                         semfocus::invalid_argument);
    tensor<double> dq(s.q()), dk(s.k()), dv(s.v()), out(s.out());
    CHECK_THROWS_WITH_AS(
        attention_jvp(top_k(6), q, k, v, dq.cview(), dk.cview(), dv.cview(), out.view()),
        doctest::Contains("semfocus::top_k: k must be in [1, n_k]"), semfocus::invalid_argument);
  }
  SUBCASE("power settings") {
    CHECK_THROWS_WITH_AS(local_lipschitz(dense{}, q, k, v, wrt::qkv, {}, {.max_iterations = 0}),
                         doctest::Contains("max_iterations"), semfocus::invalid_argument);
    CHECK_THROWS_WITH_AS(local_lipschitz(dense{}, q, k, v, wrt::qkv, {}, {.tolerance = 0}),
                         doctest::Contains("tolerance must be > 0"), semfocus::invalid_argument);
  }
}

TEST_CASE("bounds: power_settings control the iteration of local_lipschitz") {
  const attention_shape s{1, 1, 5, 6, 3, 2};
  const problem<double> pr(s, 1700);
  const auto q = pr.q.cview(), k = pr.k.cview(), v = pr.v.cview();
  const bounds::power_result full = bounds::local_lipschitz(dense{}, q, k, v, wrt::qkv);
  REQUIRE(full.converged);
  const bounds::power_result one =
      bounds::local_lipschitz(dense{}, q, k, v, wrt::qkv, {}, {.max_iterations = 1});
  CHECK(one.iterations == 1);
  CHECK_FALSE(one.converged);
  CHECK(one.value <= full.value * (1 + 1e-12));  // a lower bound from any start
  const bounds::power_result other =
      bounds::local_lipschitz(dense{}, q, k, v, wrt::qkv, {}, {.seed = 7});
  CHECK(other.converged);
  CHECK(std::abs(other.value - full.value) <= 1e-8 * full.value);
  // A looser tolerance stops earlier.
  const bounds::power_result loose =
      bounds::local_lipschitz(dense{}, q, k, v, wrt::qkv, {}, {.tolerance = 1e-3});
  CHECK(loose.converged);
  CHECK(loose.iterations <= full.iterations);
}
