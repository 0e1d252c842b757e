// SPDX-License-Identifier: MIT
// Policies written outside the library (tests/support/custom_policy.hpp) through the public API.
#include <doctest/doctest.h>

#include <numeric>

#include "support/custom_policy.hpp"
#include "support/finite_diff.hpp"
#include "support/oracle.hpp"

using namespace semfocus;
using namespace semfocus::test;

static_assert(attention_policy<user::same_parity, double>);
static_assert(fixed_mask<user::same_parity>);
static_assert(row_policy<user::above_mean, float>);

TEST_CASE("a user's elementwise policy runs forward and backward through the public API") {
  const attention_shape s{2, 2, 7, 6, 3, 4};
  const problem<double> pr(s, 3);
  const auto r = run_reference(user::same_parity{}, pr);
  const auto expected = masked_attention(
      pr, 1 / std::sqrt(3.0),
      [](index_t, index_t, index_t i, index_t j, auto&) { return (i - j) % 2 == 0; });
  CHECK(max_rel_diff(r.out.data, expected.data) < 1e-12);
  CHECK(gradient_error(user::same_parity{}, problem<double>({1, 2, 5, 5, 3, 2}, 9)) <= 1.0);
}

TEST_CASE("a user's row policy saves its own statistic in the record") {
  const attention_shape s{1, 2, 6, 8, 4, 3};
  const problem<double> pr(s, 5);
  const auto r = run_reference(user::above_mean{}, pr);
  static_assert(std::is_same_v<decltype(r.record.stats)::value_type, user::mean_floor<double>>);
  CHECK(r.record.stats.size() == std::size_t(s.rows()));
  const auto expected = masked_attention(
      pr, 0.5, [](index_t, index_t, index_t, index_t j, const std::vector<double>& row) {
        const double mean = std::accumulate(row.begin(), row.end(), 0.0) / double(row.size());
        return row[std::size_t(j)] >= mean;
      });
  CHECK(max_rel_diff(r.out.data, expected.data) < 1e-12);
}
