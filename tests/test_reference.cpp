// SPDX-License-Identifier: MIT
// The reference backend against the plain dense-with-mask formula, for every policy, with the
// masks written here from their definitions (not from the policy code).
#include <doctest/doctest.h>

#include <semfocus/detail/eigen.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/oracle.hpp"

using namespace semfocus;
using namespace semfocus::test;

namespace {

// k-th largest of a row with ties by index (score descending, index ascending).
std::vector<index_t> rank_order(const std::vector<double>& s, bool largest) {
  std::vector<index_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), index_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](index_t a, index_t b) {
    return largest ? s[std::size_t(a)] > s[std::size_t(b)] : s[std::size_t(a)] < s[std::size_t(b)];
  });
  return idx;
}

bool in_rank(const std::vector<double>& s, index_t j, index_t k, bool largest) {
  const auto order = rank_order(s, largest);
  return std::find(order.begin(), order.begin() + k, j) != order.begin() + k;
}

struct named_case {
  const char* name;
  mask_fn mask;
};

// Checks forward of `p` against the oracle with `mask` (outputs and log-sum-exp).
template <class Policy>
void check_against_oracle(const Policy& p, const mask_fn& mask, const attention_shape& s,
                          std::uint64_t seed) {
  const problem<double> pr(s, seed);
  const double scale = 1.0 / std::sqrt(double(s.d));
  const tensor<double> expected = masked_attention(pr, scale, mask);
  tensor<double> out(s.out());
  const auto rec = forward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view());
  CHECK(max_rel_diff(out.data, expected.data) < 1e-12);
  CHECK(rec.scale == scale);
  // lse_i = log sum over the kept set of exp(s_ij); -inf for an empty row.
  std::vector<double> row(std::size_t(s.n_k));
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        test_scores(pr, b, h, i, scale, row);
        double z = 0;
        for (index_t j = 0; j < s.n_k; ++j)
          if (mask(b, h, i, j, row)) z += std::exp(row[std::size_t(j)]);
        const double lse = rec.lse[std::size_t(rec.row_index(b, h, i))];
        if (z == 0)
          CHECK(lse == -INFINITY);
        else
          CHECK(lse == doctest::Approx(std::log(z)).epsilon(1e-12));
      }
}

}  // namespace

TEST_CASE("reference forward matches the dense-with-mask formula for every policy") {
  const std::vector<attention_shape> shapes = {{1, 1, 12, 12, 4, 3},
                                               {2, 3, 9, 9, 5, 2},
                                               {1, 2, 7, 11, 3, 4},
                                               {2, 1, 11, 7, 4, 4},
                                               {1, 1, 1, 1, 2, 1}};
  std::uint64_t seed = 100;
  for (const attention_shape& s : shapes) {
    CAPTURE(s);
    const index_t nq = s.n_q, nk = s.n_k;
    const index_t k = std::min<index_t>(3, nk);
    const index_t l = (k - 1) / 2;
    // Positional masks place query i at key position i + n_k - n_q (bottom-right alignment).
    auto pos = [=](index_t i) { return i + nk - nq; };
    auto band_start = [=](index_t i) { return std::clamp<index_t>(pos(i) - l, 0, nk - k); };
    const index_t g = std::min<index_t>({2, nq, nk}) > 1 ? 1 : 0;
    // Explicit mask [1, heads, n_q, n_k], broadcast over the batch.
    std::vector<unsigned char> mbits(std::size_t(s.heads * nq * nk));
    for (std::size_t x = 0; x < mbits.size(); ++x) mbits[x] = (x * 7 + 3) % 5 < 2;
    const tensor_view<const unsigned char> mview(mbits.data(), {1, s.heads, nq, nk});

    SUBCASE("dense") {
      check_against_oracle(
          dense{}, [](auto...) { return true; }, s, ++seed);
    }
    SUBCASE("causal (bottom-right aligned)") {
      check_against_oracle(
          causal{}, [=](index_t, index_t, index_t i, index_t j, auto&) { return j <= i + nk - nq; },
          s, ++seed);
    }
    SUBCASE("banded") {
      check_against_oracle(
          banded(k),
          [=](index_t, index_t, index_t i, index_t j, auto&) {
            return j >= band_start(i) && j < band_start(i) + k;
          },
          s, ++seed);
    }
    SUBCASE("block_local") {
      check_against_oracle(
          block_local(2),
          [=](index_t, index_t, index_t i, index_t j, auto&) {
            return pos(i) >= 0 && pos(i) / 2 == j / 2;
          },
          s, ++seed);
    }
    SUBCASE("strided") {
      check_against_oracle(
          strided(3, 1),
          [=](index_t, index_t, index_t i, index_t j, auto&) {
            return (pos(i) - j) % 3 == 0 || std::abs(pos(i) - j) <= 1;
          },
          s, ++seed);
    }
    SUBCASE("block_local + global tokens") {
      check_against_oracle(
          global_tokens(block_local(2), g),
          [=](index_t, index_t, index_t i, index_t j, auto&) {
            return i >= nq - g || j >= nk - g || (pos(i) >= 0 && pos(i) / 2 == j / 2);
          },
          s, ++seed);
    }
    SUBCASE("explicit mask, broadcast over the batch") {
      check_against_oracle(
          explicit_mask(mview),
          [&](index_t, index_t h, index_t i, index_t j, auto&) {
            return mbits[std::size_t((h * nq + i) * nk + j)] != 0;
          },
          s, ++seed);
    }
    SUBCASE("random_k keeps exactly k keys per row") {
      const random_k p(k, 7);
      check_against_oracle(
          p,
          [&](index_t b, index_t h, index_t i, index_t j, auto&) {
            return p.permute({b, h, nq, nk}, i, j) < k;
          },
          s, ++seed);
    }
    SUBCASE("top_k") {
      check_against_oracle(
          top_k(k),
          [=](index_t, index_t, index_t, index_t j, const std::vector<double>& r) {
            return in_rank(r, j, k, true);
          },
          s, ++seed);
    }
    SUBCASE("bottom_k") {
      check_against_oracle(
          bottom_k(k),
          [=](index_t, index_t, index_t, index_t j, const std::vector<double>& r) {
            return in_rank(r, j, k, false);
          },
          s, ++seed);
    }
    SUBCASE("threshold relative to the row max") {
      check_against_oracle(
          threshold(0.5),
          [](index_t, index_t, index_t, index_t j, const std::vector<double>& r) {
            return r[std::size_t(j)] >= *std::max_element(r.begin(), r.end()) - 0.5;
          },
          s, ++seed);
    }
    SUBCASE("absolute threshold (rows may be empty)") {
      check_against_oracle(
          absolute_threshold(0.3),
          [](index_t, index_t, index_t, index_t j, const std::vector<double>& r) {
            return r[std::size_t(j)] >= 0.3;
          },
          s, ++seed);
    }
  }
}

TEST_CASE_TEMPLATE("rows of P sum to one over the kept set and vanish elsewhere", T, float,
                   double) {
  // With V = I (d_v = n_k) the output rows are the probability rows themselves.
  const index_t n = 9;
  const attention_shape s{2, 2, n, n, 4, n};
  problem<T> pr(s, 5);
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t j = 0; j < n; ++j)
        for (index_t c = 0; c < n; ++c) pr.v(b, h, j, c) = j == c ? T(1) : T(0);
  auto check = [&](const auto& p) {
    tensor<T> out(s.out());
    const auto rec = forward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view());
    const T tol = std::is_same_v<T, float> ? T(1e-5) : T(1e-13);
    std::vector<T> scores(static_cast<std::size_t>(n));
    for (index_t b = 0; b < s.batch; ++b)
      for (index_t h = 0; h < s.heads; ++h)
        for (index_t i = 0; i < n; ++i) {
          for (index_t j = 0; j < n; ++j)
            scores[std::size_t(j)] =
                backend::reference::score(&pr.q(b, h, i, 0), &pr.k(b, h, j, 0), s.d, rec.scale);
          row_statistic_t<std::decay_t<decltype(p)>, T> st{};
          if constexpr (row_policy<std::decay_t<decltype(p)>, T>)
            st = rec.stats[std::size_t(rec.row_index(b, h, i))];
          T sum = 0;
          index_t kept = 0;
          for (index_t j = 0; j < n; ++j) {
            const bool keep = is_kept(p, head_slice{b, h, n, n}, i, j, scores[std::size_t(j)], st);
            const T pij = out(b, h, i, j);
            CHECK(pij >= T(0));
            if (!keep) CHECK(pij == T(0));
            sum += pij;
            kept += keep;
          }
          if (kept > 0) CHECK(std::abs(sum - T(1)) <= tol);
          if (kept == 0) CHECK(sum == T(0));
        }
  };
  check(dense{});
  check(causal{});
  check(banded(4));
  check(block_local(4));
  check(strided(2, 1));
  check(global_tokens(banded(3), 2));
  check(random_k(3, 11));
  check(top_k(3));
  check(bottom_k(2));
  check(threshold(0.4));
  check(absolute_threshold(0.2));
  check(user::same_parity{});
  check(user::above_mean{});
}

TEST_CASE("float forward agrees with double and runs are deterministic") {
  const attention_shape s{2, 2, 17, 13, 8, 5};
  const problem<double> pd(s, 21);
  problem<float> pf(s, 21);
  for (auto [dst, src] : {std::pair{&pf.q, &pd.q}, {&pf.k, &pd.k}, {&pf.v, &pd.v}})
    for (std::size_t x = 0; x < src->data.size(); ++x) dst->data[x] = float(src->data[x]);
  auto run = [&](const auto& p) {
    tensor<double> od(s.out());
    tensor<float> of(s.out()), of2(s.out());
    forward(exec::reference, p, pd.q.view(), pd.k.view(), pd.v.view(), od.view());
    forward(exec::reference, p, pf.q.view(), pf.k.view(), pf.v.view(), of.view());
    forward(exec::reference, p, pf.q.view(), pf.k.view(), pf.v.view(), of2.view());
    CHECK(max_rel_diff(of.data, od.data) < 1e-5);
    CHECK(of.data == of2.data);
  };
  run(dense{});
  run(banded(5));
  run(top_k(4));  // float and double may only differ in selection at near-ties: none here
}

TEST_CASE("strided [batch, seq, heads, dim] storage gives the same bits as contiguous storage") {
  const attention_shape s{2, 3, 6, 6, 4, 4};
  const problem<double> pr(s, 31);
  // Re-store every tensor as [batch, seq, heads, dim].
  auto to_bshd = [](const tensor<double>& t) {
    const tensor_shape& sh = t.shape;
    std::vector<double> buf(t.data.size());
    for (index_t b = 0; b < sh.batch; ++b)
      for (index_t h = 0; h < sh.heads; ++h)
        for (index_t i = 0; i < sh.seq; ++i)
          for (index_t c = 0; c < sh.dim; ++c)
            buf[std::size_t(((b * sh.seq + i) * sh.heads + h) * sh.dim + c)] = t(b, h, i, c);
    return buf;
  };
  auto strides_of = [](const tensor_shape& sh) {
    return tensor_strides{sh.seq * sh.heads * sh.dim, sh.dim, sh.heads * sh.dim};
  };
  auto q = to_bshd(pr.q), k = to_bshd(pr.k), v = to_bshd(pr.v), d_out = to_bshd(pr.d_out);
  std::vector<double> out(std::size_t(s.out().size())), dq(q.size()), dk(k.size()), dv(v.size());
  auto cv = [&](std::vector<double>& b, const tensor_shape& sh) {
    return tensor_view<const double>(std::span<const double>(b), sh, strides_of(sh));
  };
  auto mv = [&](std::vector<double>& b, const tensor_shape& sh) {
    return tensor_view<double>(std::span<double>(b), sh, strides_of(sh));
  };
  const top_k p(3);
  const auto rec =
      forward(exec::reference, p, cv(q, s.q()), cv(k, s.k()), cv(v, s.v()), mv(out, s.out()));
  backward(exec::reference, p, cv(q, s.q()), cv(k, s.k()), cv(v, s.v()), cv(out, s.out()),
           cv(d_out, s.out()), rec, mv(dq, s.q()), mv(dk, s.k()), mv(dv, s.v()));
  const auto ref = run_reference(p, pr);
  CHECK(out == to_bshd(ref.out));
  CHECK(dq == to_bshd(ref.dq));
  CHECK(dk == to_bshd(ref.dk));
  CHECK(dv == to_bshd(ref.dv));
  CHECK(rec.lse == ref.record.lse);
}

TEST_CASE("Eigen row-major matrices are viewed without copies") {
  using mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t n = 6, d = 4;
  mat q = mat::Random(n, d), k = mat::Random(n + 2, d), v = mat::Random(n + 2, 3);
  mat out(n, 3);
  const tensor_view<const double> qv(q);
  CHECK(qv.data() == q.data());
  CHECK(qv.shape() == tensor_shape{1, 1, n, d});
  const auto rec = forward(exec::reference, dense{}, q, k, v, view(out));

  // The same computation through plain buffers.
  const attention_shape s{1, 1, n, n + 2, d, 3};
  tensor<double> o2(s.out());
  forward(exec::reference, dense{}, tensor_view<const double>(q.data(), s.q()),
          tensor_view<const double>(k.data(), s.k()), tensor_view<const double>(v.data(), s.v()),
          o2.view());
  CHECK(std::equal(o2.data.begin(), o2.data.end(), out.data()));
  // A block of rows (outer stride = the full row) is a view too; the result is P V by Eigen.
  mat big = mat::Random(n, d + 5);
  auto block = big.leftCols(d);
  const tensor_view<const double> bv(block);
  CHECK(bv.data() == big.data());
  CHECK(bv.strides().seq == d + 5);
  forward(exec::reference, dense{}, block, k, v, view(out));
  mat scores = (block * k.transpose()) / std::sqrt(double(d));
  for (index_t i = 0; i < n; ++i) {
    scores.row(i) = (scores.row(i).array() - scores.row(i).maxCoeff()).exp();
    scores.row(i) /= scores.row(i).sum();
  }
  CHECK((scores * v - out).cwiseAbs().maxCoeff() < 1e-14);
  CHECK(rec.lse.size() == std::size_t(n));
}

TEST_CASE("scale defaults to 1/sqrt(d) and a custom scale equals scaling Q") {
  const attention_shape s{1, 2, 5, 6, 4, 3};
  problem<double> pr(s, 41);
  tensor<double> a(s.out()), b(s.out());
  const auto ra = forward(exec::reference, top_k(3), pr.q.view(), pr.k.view(), pr.v.view(),
                          a.view(), {.scale = 1.7});
  CHECK(ra.scale == 1.7);
  for (double& x : pr.q.data) x *= 1.7 * std::sqrt(4.0);  // default scale is 1/2
  const auto rb =
      forward(exec::reference, top_k(3), pr.q.view(), pr.k.view(), pr.v.view(), b.view());
  CHECK(rb.scale == 0.5);
  CHECK(max_rel_diff(a.data, b.data) < 1e-14);
}

TEST_CASE("empty rows give zeros, -inf log-sum-exp and zero gradients, never NaN") {
  const attention_shape s{1, 1, 6, 4, 3, 2};
  const problem<double> pr(s, 51);
  auto check_empty = [&](const auto& p, index_t first_nonempty_row) {
    const auto r = run_reference(p, pr);
    for (index_t i = 0; i < s.n_q; ++i) {
      const bool empty = i < first_nonempty_row;
      CHECK((r.record.lse[std::size_t(i)] == -INFINITY) == empty);
      for (index_t c = 0; c < s.d_v; ++c) {
        CHECK(!std::isnan(r.out(0, 0, i, c)));
        if (empty) CHECK(r.out(0, 0, i, c) == 0.0);
      }
      for (index_t c = 0; c < s.d; ++c)
        if (empty) CHECK(r.dq(0, 0, i, c) == 0.0);
    }
    for (double x : r.dk.data) CHECK(!std::isnan(x));
    for (double x : r.dv.data) CHECK(!std::isnan(x));
  };
  check_empty(absolute_threshold(1e9), s.n_q);  // nothing kept anywhere
  check_empty(causal{}, s.n_q - s.n_k);         // n_q > n_k: the first two rows see no key
  const auto r = run_reference(absolute_threshold(1e9), pr);
  for (double x : r.dk.data) CHECK(x == 0.0);
  for (double x : r.dv.data) CHECK(x == 0.0);

  SUBCASE("no keys at all") {
    const attention_shape z{1, 1, 3, 0, 2, 2};
    const problem<double> pz(z, 3);
    tensor<double> out(z.out(), 42.0);
    const auto rec =
        forward(exec::reference, dense{}, pz.q.view(), pz.k.view(), pz.v.view(), out.view());
    for (double x : out.data) CHECK(x == 0.0);
    for (double x : rec.lse) CHECK(x == -INFINITY);
  }
}

TEST_CASE("NaN scores are never selected while dense propagates them") {
  const attention_shape s{1, 1, 3, 5, 2, 2};
  problem<double> pr(s, 61);
  pr.k(0, 0, 2, 0) = NAN;  // key 2 has NaN scores in every row
  auto r = run_reference(top_k(4), pr);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(std::isfinite(r.record.lse[i]));
    CHECK(!r.record.stats[i].keep(2, NAN));
  }
  for (double x : r.out.data) CHECK(std::isfinite(x));
  for (double x : r.dq.data) CHECK(std::isfinite(x));
  // A NaN query row: top_k keeps nothing there, so that row is empty (zeros), the others finite.
  pr.q(0, 0, 1, 0) = NAN;
  r = run_reference(top_k(2), pr);
  CHECK(r.record.lse[1] == -INFINITY);
  CHECK(r.out(0, 0, 1, 0) == 0.0);
  CHECK(std::isfinite(r.out(0, 0, 0, 0)));
  const auto rd = run_reference(dense{}, pr);
  CHECK(std::isnan(rd.out(0, 0, 1, 0)));
}

TEST_CASE("each (batch, head) slice is an independent problem and a record is reusable") {
  const attention_shape s{2, 3, 5, 7, 3, 2};
  const problem<double> pr(s, 71);
  const auto all = run_reference(threshold(0.8), pr);
  const attention_shape one{1, 1, 5, 7, 3, 2};
  forward_record_t<threshold, double> rec;  // reused across slices
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      tensor<double> out(one.out());
      forward(exec::reference, threshold(0.8),
              tensor_view<const double>(pr.q.view().row(b, h, 0), one.q()),
              tensor_view<const double>(pr.k.view().row(b, h, 0), one.k()),
              tensor_view<const double>(pr.v.view().row(b, h, 0), one.v()), out.view(), rec);
      for (index_t i = 0; i < 5; ++i) {
        CHECK(rec.lse[std::size_t(i)] ==
              all.record.lse[std::size_t(all.record.row_index(b, h, i))]);
        for (index_t c = 0; c < 2; ++c) CHECK(out(0, 0, i, c) == all.out(b, h, i, c));
      }
    }
}
