// SPDX-License-Identifier: MIT
// A policy written outside the library: keep the keys whose score is within `margin` of the
// row's top-2 mean. It is a row policy (it needs the whole row), so it provides a per-row
// statistic and a predicate; every backend runs it with no change to the library.
// The program checks forward against a direct computation and a property of backward, and exits
// non-zero on a mismatch.
#include <semfocus/semfocus.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace my {

/// The statistic: a floor on the scores of the row.
template <class T>
struct floor_statistic {
  T floor;
  SEMFOCUS_HD constexpr bool keep(semfocus::index_t, T s) const noexcept { return s >= floor; }
};

/// Keep s >= (s_(1) + s_(2)) / 2 - margin, with s_(1) >= s_(2) the two largest scores.
struct near_top_two {
  static constexpr semfocus::locality locality_kind = semfocus::locality::row;
  double margin = 0.25;

  void validate(const semfocus::attention_shape& s) const {
    if (s.n_k < 2) throw semfocus::invalid_argument("near_top_two: needs n_k >= 2");
  }

  template <class T>
  SEMFOCUS_HD floor_statistic<T> row_statistic(const semfocus::head_slice& hs, semfocus::index_t,
                                               const T* s) const noexcept {
    T first = -INFINITY, second = -INFINITY;
    for (semfocus::index_t j = 0; j < hs.n_k; ++j) {
      if (s[j] > first) {
        second = first;
        first = s[j];
      } else if (s[j] > second) {
        second = s[j];
      }
    }
    return {(first + second) / T(2) - T(margin)};
  }
};

}  // namespace my

static_assert(semfocus::row_policy<my::near_top_two, double>);

int main() {
  namespace sf = semfocus;
  const sf::attention_shape s{.batch = 2, .heads = 2, .n_q = 8, .n_k = 10, .d = 4, .d_v = 3};
  std::mt19937 gen(7);
  std::normal_distribution<double> normal;
  auto fill = [&](const sf::tensor_shape& t) {
    std::vector<double> x(static_cast<std::size_t>(t.size()));
    for (double& e : x) e = normal(gen);
    return x;
  };
  std::vector<double> q = fill(s.q()), k = fill(s.k()), v = fill(s.v()),
                      out(std::size_t(s.out().size()));
  const my::near_top_two policy{.margin = 0.5};
  const auto record = sf::forward(
      sf::exec::reference, policy, sf::tensor_view<const double>(q.data(), s.q()),
      sf::tensor_view<const double>(k.data(), s.k()),
      sf::tensor_view<const double>(v.data(), s.v()), sf::tensor_view<double>(out.data(), s.out()));

  // Direct computation for every row.
  double worst = 0;
  sf::index_t kept_total = 0;
  for (sf::index_t bh = 0; bh < s.batch * s.heads; ++bh)
    for (sf::index_t i = 0; i < s.n_q; ++i) {
      std::vector<double> row(std::size_t(s.n_k));
      for (sf::index_t j = 0; j < s.n_k; ++j) {
        double acc = 0;
        for (sf::index_t c = 0; c < s.d; ++c)
          acc += q[std::size_t((bh * s.n_q + i) * s.d + c)] *
                 k[std::size_t((bh * s.n_k + j) * s.d + c)];
        row[std::size_t(j)] = acc / 2.0;  // scale 1/sqrt(4)
      }
      const double floor = record.stats[std::size_t(bh * s.n_q + i)].floor;
      double z = 0;
      for (double x : row) z += x >= floor ? std::exp(x) : 0.0;
      for (sf::index_t c = 0; c < s.d_v; ++c) {
        double o = 0;
        for (sf::index_t j = 0; j < s.n_k; ++j)
          if (row[std::size_t(j)] >= floor)
            o += std::exp(row[std::size_t(j)]) / z * v[std::size_t((bh * s.n_k + j) * s.d_v + c)];
        worst = std::max(worst, std::abs(o - out[std::size_t((bh * s.n_q + i) * s.d_v + c)]));
      }
      for (double x : row) kept_total += x >= floor;
    }
  std::printf("near_top_two(margin 0.5): %.2f keys kept per row of %td; max |error| = %.2e\n",
              double(kept_total) / double(s.batch * s.heads * s.n_q), s.n_k, worst);

  // Backward with the same policy object. Every row's probabilities sum to one, so for each
  // (batch, head) the dV rows sum to the dO rows: sum_j dV_j = sum_i dO_i.
  std::vector<double> d_out = fill(s.out()), dq(q.size()), dk(k.size()), dv(v.size());
  sf::backward(sf::exec::reference, policy, sf::tensor_view<const double>(q.data(), s.q()),
               sf::tensor_view<const double>(k.data(), s.k()),
               sf::tensor_view<const double>(v.data(), s.v()),
               sf::tensor_view<const double>(out.data(), s.out()),
               sf::tensor_view<const double>(d_out.data(), s.out()), record,
               sf::tensor_view<double>(dq.data(), s.q()), sf::tensor_view<double>(dk.data(), s.k()),
               sf::tensor_view<double>(dv.data(), s.v()));
  double worst_sum = 0;
  for (sf::index_t bh = 0; bh < s.batch * s.heads; ++bh)
    for (sf::index_t c = 0; c < s.d_v; ++c) {
      double sum_dv = 0, sum_do = 0;
      for (sf::index_t j = 0; j < s.n_k; ++j)
        sum_dv += dv[std::size_t((bh * s.n_k + j) * s.d_v + c)];
      for (sf::index_t i = 0; i < s.n_q; ++i)
        sum_do += d_out[std::size_t((bh * s.n_q + i) * s.d_v + c)];
      worst_sum = std::max(worst_sum, std::abs(sum_dv - sum_do));
    }
  std::printf("backward: max |sum_j dV_j - sum_i dO_i| = %.2e\n", worst_sum);
  const bool ok = worst < 1e-12 && worst_sum < 1e-12;
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
