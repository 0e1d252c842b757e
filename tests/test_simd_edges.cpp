// SPDX-License-Identifier: MIT
// The SIMD backend (exec::simd) against the reference backend, part 2 (part 1: test_simd.cpp):
// bit-identical results on strided, padded and Eigen views, under workspace and record reuse and
// with concurrent callers; empty rows, NaN scores, non-finite V rows and zero extents as the
// reference handles them; records exchanged between the two backends; shared argument checks.
// Tolerances as in test_simd.cpp (support/simd_compare.hpp).
#if defined(SEMFOCUS_HAS_XSIMD)

#include <doctest/doctest.h>

#include <semfocus/detail/eigen.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/margins.hpp"
#include "support/oracle.hpp"
#include "support/simd_checks.hpp"
#include "support/simd_compare.hpp"
#include "support/strided.hpp"

using namespace semfocus;
using namespace semfocus::test;

namespace {

/// Checks that two records hold the same bits (record_bit_differences).
template <class Policy, class T>
void check_same_record(const forward_record_t<Policy, T>& a, const forward_record_t<Policy, T>& b) {
  const differences d = record_bit_differences<Policy, T>(a, b);
  CHECK_MESSAGE(d.empty(), join(d));
}

/// Checks that out, dq, dk and dv of a run are finite.
template <class R>
void all_outputs_finite(const R& r) {
  CHECK(all_finite(r.out.data));
  CHECK(all_finite(r.dq.data));
  CHECK(all_finite(r.dk.data));
  CHECK(all_finite(r.dv.data));
}

}  // namespace

TEST_CASE_TEMPLATE(
    "simd packing kernels: every entry a gemm reads, zeros where promised, the rest "
    "untouched",
    T, float, double) {
  using K = backend::simd::kernels<T>;
  constexpr index_t nr = K::nr;
  const T sentinel = T(-7.25);
  std::mt19937 gen(11);
  for (const index_t dim : {1, 3, 8, 9, 16, 37, 64}) {
    for (const index_t n : {1, 5, 8, 13, 31, 40, 64}) {
      // Rows of a [1, 1, n + 2, dim] tensor with a padded row stride, starting at row 1.
      const index_t ld = dim + 3;
      std::vector<T> src(std::size_t((n + 2) * ld));
      for (std::size_t i = 0; i < src.size(); ++i) src[i] = T(int(gen() % 2001) - 1000) / T(8);
      const tensor_view<const T> t{
          src.data(), {1, 1, n + 2, dim}, {(n + 2) * ld, (n + 2) * ld, ld}};
      auto at = [&](index_t r, index_t c) { return src[std::size_t((1 + r) * ld + c)]; };
      // pack_b_transposed: B(p, j) = t(1 + j, p) for j < n, 0 for j in [n, blk), the rest kept.
      for (const index_t blk : {n, K::padded(n), K::round_up(n, nr)}) {
        const index_t lpb = dim * nr, panels = K::round_up(blk, nr) / nr;
        std::vector<T> dst(std::size_t(panels * lpb), sentinel);
        K::pack_b_transposed(t, 0, 0, 1, n, dst.data(), blk);
        int bad = 0;
        for (index_t j = 0; j < panels * nr; ++j)
          for (index_t p = 0; p < dim; ++p) {
            const T got = dst[std::size_t(j / nr * lpb + p * nr + j % nr)];
            const T want = j < n ? at(j, p) : j < blk ? T(0) : sentinel;
            if (got != want && bad++ == 0)
              MESSAGE("pack_b_transposed dim " << dim << " n " << n << " blk " << blk << " j " << j
                                               << " p " << p);
          }
        CHECK(bad == 0);
      }
      // pack_b_rows: B(p, j) = t(1 + p, j), zero columns [dim, round_up(dim, nr)), zero rows
      // [n, kd) with zero_tail (else kept), and zero rows for non-finite rows with zero_nonfinite.
      for (const bool zero_tail : {true, false})
        for (const bool nonfinite : {false, true}) {
          const index_t kd = n + 3, lpb = kd * nr, panels = K::round_up(dim, nr) / nr;
          if (nonfinite) src[std::size_t(1 * ld + dim / 2)] = std::numeric_limits<T>::infinity();
          std::vector<T> dst(std::size_t(panels * lpb), sentinel);
          K::pack_b_rows(t, 0, 0, 1, n, kd, dst.data(), nonfinite, zero_tail);
          int bad = 0;
          const bool tail_zero = zero_tail || nonfinite || dim % nr != 0;
          for (index_t p = 0; p < kd; ++p)
            for (index_t j = 0; j < panels * nr; ++j) {
              const T got = dst[std::size_t(j / nr * lpb + p * nr + j % nr)];
              const T want = p >= n                  ? (tail_zero ? T(0) : sentinel)
                             : j >= dim              ? T(0)
                             : (nonfinite && p == 0) ? T(0)
                                                     : at(p, j);
              if (got != want && bad++ == 0)
                MESSAGE("pack_b_rows dim " << dim << " n " << n << " zero_tail " << zero_tail
                                           << " nonfinite " << nonfinite << " p " << p << " j "
                                           << j);
            }
          CHECK(bad == 0);
          if (nonfinite) src[std::size_t(1 * ld + dim / 2)] = T(1);
        }
    }
  }
}

TEST_CASE_TEMPLATE("simd on strided and padded views gives the same bits as on contiguous tensors",
                   T, float, double) {
  const attention_shape s{2, 3, 37, 45, 19, 24};
  const problem<T> pr(s, 88);
  const T nan = std::numeric_limits<T>::quiet_NaN(), sentinel = T(-7.25);
  const auto ex = exec::simd.with_threads(2);
  for (const layout l : {layout::bshd, layout::padded}) {
    CAPTURE(l == layout::bshd ? "[batch, seq, heads, dim]" : "padded");
    auto check = [&](const char* name, const auto& p) {
      INFO(std::string(name));
      using P = std::decay_t<decltype(p)>;
      const auto contiguous = run_backend(ex, p, pr);
      // Inputs with NaN in their gaps (never to be read into a result); outputs with a sentinel
      // there (never to be written).
      const auto q = restride(pr.q, l, nan), k = restride(pr.k, l, nan), v = restride(pr.v, l, nan),
                 d_out = restride(pr.d_out, l, nan);
      auto out = restride(tensor<T>(s.out()), l, sentinel),
           dq = restride(tensor<T>(s.q()), l, sentinel),
           dk = restride(tensor<T>(s.k()), l, sentinel),
           dv = restride(tensor<T>(s.v()), l, sentinel);
      forward_record_t<P, T> rec;
      forward(ex, p, q.cview(), k.cview(), v.cview(), out.view(), rec);
      backward(ex, p, q.cview(), k.cview(), v.cview(), out.cview(), d_out.cview(), rec, dq.view(),
               dk.view(), dv.view());
      CHECK(same_bits(out.contiguous().data, contiguous.out.data));
      CHECK(same_bits(dq.contiguous().data, contiguous.dq.data));
      CHECK(same_bits(dk.contiguous().data, contiguous.dk.data));
      CHECK(same_bits(dv.contiguous().data, contiguous.dv.data));
      check_same_record<P, T>(rec, contiguous.record);
      CHECK(out.gaps_untouched());
      CHECK(dq.gaps_untouched());
      CHECK(dk.gaps_untouched());
      CHECK(dv.gaps_untouched());
    };
    check("dense", dense{});
    check("causal", causal{});
    check("banded", banded(6));
    check("top_k", top_k(5));
    check("threshold", threshold(1.0));
    check("absolute_threshold", absolute_threshold(0.3));
  }
}

TEST_CASE_TEMPLATE("simd on Eigen row-major blocks gives the same bits as on contiguous tensors", T,
                   float, double) {
  using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t n = 70, m = 45, d = 19, dv = 24;
  const attention_shape s{1, 1, n, m, d, dv};
  const problem<T> pr(s, 99);
  const T nan = std::numeric_limits<T>::quiet_NaN(), sentinel = T(-7.25);
  // Blocks of wider matrices: the views' rows are strided, the other columns hold NaN (inputs)
  // or a sentinel (outputs).
  mat qm = mat::Constant(n, d + 5, nan), km = mat::Constant(m, d + 9, nan),
      vm = mat::Constant(m, dv + 3, nan), gm = mat::Constant(n, dv + 1, nan);
  auto qb = qm.leftCols(d);
  auto kb = km.middleCols(4, d);
  auto vb = vm.rightCols(dv);
  auto gb = gm.leftCols(dv);
  for (index_t i = 0; i < n; ++i) {
    for (index_t c = 0; c < d; ++c) qb(i, c) = pr.q(0, 0, i, c);
    for (index_t c = 0; c < dv; ++c) gb(i, c) = pr.d_out(0, 0, i, c);
  }
  for (index_t j = 0; j < m; ++j) {
    for (index_t c = 0; c < d; ++c) kb(j, c) = pr.k(0, 0, j, c);
    for (index_t c = 0; c < dv; ++c) vb(j, c) = pr.v(0, 0, j, c);
  }
  const auto ex = exec::simd.with_threads(2);
  auto same = [](const auto& block, const tensor<T>& t) {
    for (index_t i = 0; i < block.rows(); ++i)
      for (index_t c = 0; c < block.cols(); ++c)
        if (std::memcmp(&block(i, c), &t(0, 0, i, c), sizeof(T)) != 0) return false;
    return true;
  };
  auto all_sentinel = [&](const auto& block) { return (block.array() == sentinel).all(); };
  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    const auto contiguous = run_backend(ex, p, pr);
    mat om = mat::Constant(n, dv + 2, sentinel), dqm = mat::Constant(n, d + 1, sentinel),
        dkm = mat::Constant(m, d + 7, sentinel), dvm = mat::Constant(m, dv + 4, sentinel);
    auto ob = om.middleCols(1, dv);
    auto dqb = dqm.leftCols(d);
    auto dkb = dkm.rightCols(d);
    auto dvb = dvm.middleCols(2, dv);
    const auto rec = forward(ex, p, qb, kb, vb, view(ob));
    backward(ex, p, qb, kb, vb, ob, gb, rec, view(dqb), view(dkb), view(dvb));
    CHECK(same(ob, contiguous.out));
    CHECK(same(dqb, contiguous.dq));
    CHECK(same(dkb, contiguous.dk));
    CHECK(same(dvb, contiguous.dv));
    check_same_record<std::decay_t<decltype(p)>, T>(rec, contiguous.record);
    CHECK(all_sentinel(om.leftCols(1)));
    CHECK(all_sentinel(om.rightCols(1)));
    CHECK(all_sentinel(dqm.rightCols(1)));
    CHECK(all_sentinel(dkm.leftCols(7)));
    CHECK(all_sentinel(dvm.leftCols(2)));
    CHECK(all_sentinel(dvm.rightCols(2)));
  };
  check("dense", dense{});
  check("causal", causal{});
  check("top_k", top_k(5));
  check("threshold", threshold(1.0));
}

TEST_CASE_TEMPLATE(
    "simd on inputs broadcast by zero strides gives the same bits as on materialized copies", T,
    float, double) {
  // K and V shared by the heads of a batch (heads stride 0), Q shared by the batches (batch
  // stride 0); the materialized problem holds the same values in every copy.
  const attention_shape s{2, 3, 40, 50, 16, 8};
  problem<T> pr(s, 111);
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      for (index_t j = 0; j < s.n_k; ++j) {
        for (index_t c = 0; c < s.d; ++c) pr.k(b, h, j, c) = pr.k(b, 0, j, c);
        for (index_t c = 0; c < s.d_v; ++c) pr.v(b, h, j, c) = pr.v(b, 0, j, c);
      }
      for (index_t i = 0; i < s.n_q; ++i)
        for (index_t c = 0; c < s.d; ++c) pr.q(b, h, i, c) = pr.q(0, h, i, c);
    }
  const tensor_view<const T> q(pr.q.data.data(), s.q(), {0, s.n_q * s.d, s.d});
  const tensor_view<const T> k(pr.k.data.data(), s.k(), {s.heads * s.n_k * s.d, 0, s.d});
  const tensor_view<const T> v(pr.v.data.data(), s.v(), {s.heads * s.n_k * s.d_v, 0, s.d_v});
  const auto ex = exec::simd.with_threads(2);
  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    const auto materialized = run_backend(ex, p, pr);
    tensor<T> out(s.out()), dq(s.q()), dk(s.k()), dv(s.v());
    const auto rec = forward(ex, p, q, k, v, out.view());
    backward(ex, p, q, k, v, out.cview(), pr.d_out.cview(), rec, dq.view(), dk.view(), dv.view());
    CHECK(same_bits(out.data, materialized.out.data));
    CHECK(same_bits(dq.data, materialized.dq.data));
    CHECK(same_bits(dk.data, materialized.dk.data));
    CHECK(same_bits(dv.data, materialized.dv.data));
    check_same_record<std::decay_t<decltype(p)>, T>(rec, materialized.record);
  };
  check("dense", dense{});
  check("causal", causal{});
  check("top_k", top_k(4));
  check("threshold", threshold(0.5));
}

TEST_CASE_TEMPLATE("simd reuses a workspace and a record across shapes without changing results", T,
                   float, double) {
  // Large, small, another large, the first large again, small again.
  const std::vector<attention_shape> shapes = {{2, 2, 150, 170, 64, 40},
                                               {1, 1, 5, 3, 3, 2},
                                               {1, 2, 170, 150, 65, 64},
                                               {2, 2, 150, 170, 64, 40},
                                               {1, 1, 5, 3, 3, 2}};
  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    using P = std::decay_t<decltype(p)>;
    simd_workspace ws;
    forward_record_t<P, T> rec;  // reused by every call
    const auto ex = exec::simd.with_threads(2).with_workspace(ws);
    std::size_t bytes = 0;
    std::uint64_t seed = 120;
    for (const attention_shape& s : shapes) {
      CAPTURE(s);
      const problem<T> pr(s, ++seed);
      tensor<T> out(s.out()), dq(s.q()), dk(s.k()), dv(s.v());
      forward(ex, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view(), rec);
      backward(ex, p, pr.q.view(), pr.k.view(), pr.v.view(), out.cview(), pr.d_out.view(), rec,
               dq.view(), dk.view(), dv.view());
      simd_workspace fresh_ws;
      const auto fresh = run_backend(exec::simd.with_threads(2).with_workspace(fresh_ws), p, pr);
      CHECK(same_bits(out.data, fresh.out.data));
      CHECK(same_bits(dq.data, fresh.dq.data));
      CHECK(same_bits(dk.data, fresh.dk.data));
      CHECK(same_bits(dv.data, fresh.dv.data));
      check_same_record<P, T>(rec, fresh.record);
      // The calling thread's own workspace gives the same bits too.
      const auto own = run_backend(exec::simd.with_threads(2), p, pr);
      CHECK(same_bits(own.out.data, fresh.out.data));
      CHECK(same_bits(own.dq.data, fresh.dq.data));
      CHECK(same_bits(own.dk.data, fresh.dk.data));
      CHECK(same_bits(own.dv.data, fresh.dv.data));
      // The workspace is used and only grows.
      CHECK(ws.bytes() > 0);
      CHECK(ws.bytes() >= bytes);
      bytes = ws.bytes();
    }
    // After release, the next call reallocates and still gives the same bits.
    ws.release();
    CHECK(ws.bytes() == 0);
    const problem<T> pr(shapes[0], 121);
    const auto again = run_backend(ex, p, pr);
    simd_workspace fresh_ws;
    const auto fresh = run_backend(exec::simd.with_threads(2).with_workspace(fresh_ws), p, pr);
    CHECK(same_bits(again.out.data, fresh.out.data));
    CHECK(same_bits(again.dq.data, fresh.dq.data));
    CHECK(same_bits(again.dk.data, fresh.dk.data));
    CHECK(same_bits(again.dv.data, fresh.dv.data));
    CHECK(ws.bytes() > 0);
  };
  check("dense", dense{});
  check("top_k", top_k(2));
  check("threshold", threshold(0.5));
}

TEST_CASE_TEMPLATE("simd empty rows give zero output, -inf lse and zero gradients, never NaN", T,
                   float, double) {
  SUBCASE("absolute_threshold: zero query rows score 0, below tau") {
    const attention_shape s{2, 2, 40, 70, 17, 9};
    problem<T> pr = integer_problem<T>(s, 5);
    const double unit = exact_scale(s.d);
    const index_t empty_rows[][3] = {{0, 0, 0}, {0, 1, 17}, {1, 0, 20}, {1, 1, 39}};
    for (const auto& e : empty_rows)
      for (index_t c = 0; c < s.d; ++c) pr.q(e[0], e[1], e[2], c) = T(0);
    const absolute_threshold p(0.5 * unit);
    const attention_options opt{unit};
    const auto ref = run_reference(p, pr, opt);
    const auto sim = run_backend(exec::simd, p, pr, opt);
    for (const auto& e : empty_rows) {
      CAPTURE(e[2]);
      CHECK(sim.record.lse[std::size_t(sim.record.row_index(e[0], e[1], e[2]))] == -INFINITY);
      CHECK(row_is_zero(sim.out, e[0], e[1], e[2]));
      CHECK(row_is_zero(sim.dq, e[0], e[1], e[2]));
    }
    const auto finite_rows = std::count_if(sim.record.lse.begin(), sim.record.lse.end(),
                                           [](double x) { return std::isfinite(x); });
    CHECK(finite_rows == s.rows() - 4);
    all_outputs_finite(sim);
    check_forward(p, pr, sim.out, sim.record, ref, true);
    check_gradients(sim.dq, sim.dk, sim.dv, ref);
  }

  SUBCASE("absolute_threshold that keeps nothing: everything is exactly 0, outputs overwritten") {
    const attention_shape s{2, 3, 65, 33, 17, 9};
    const problem<T> pr(s, 6);
    const absolute_threshold p(1e9);
    const T nan = std::numeric_limits<T>::quiet_NaN();
    tensor<T> out(s.out(), nan), dq(s.q(), nan), dk(s.k(), nan), dv(s.v(), nan);
    const auto rec = forward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view());
    backward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), out.cview(), pr.d_out.view(),
             rec, dq.view(), dk.view(), dv.view());
    CHECK(std::all_of(rec.lse.begin(), rec.lse.end(), [](double x) { return x == -INFINITY; }));
    for (const tensor<T>* t : {&out, &dq, &dk, &dv})
      CHECK(std::all_of(t->data.begin(), t->data.end(), [](T x) { return x == T(0); }));
  }

  SUBCASE("causal and block_local with n_q > n_k: the rows before the first key") {
    // Bottom-right alignment: query i sits at key position i - 48, so rows 0..47 keep nothing.
    const attention_shape s{2, 2, 65, 17, 17, 9};
    const problem<T> pr(s, 7);
    auto check = [&](const char* name, const auto& p) {
      INFO(std::string(name));
      const auto ref = run_reference(p, pr);
      const auto sim = run_backend(exec::simd, p, pr);
      for (index_t b = 0; b < s.batch; ++b)
        for (index_t h = 0; h < s.heads; ++h)
          for (index_t i = 0; i < s.n_q; ++i) {
            const bool empty = i < s.n_q - s.n_k;
            const double lse = sim.record.lse[std::size_t(sim.record.row_index(b, h, i))];
            CHECK((lse == -INFINITY) == empty);
            if (empty) {
              CHECK(row_is_zero(sim.out, b, h, i));
              CHECK(row_is_zero(sim.dq, b, h, i));
            }
          }
      all_outputs_finite(sim);
      check_forward(p, pr, sim.out, sim.record, ref, false);
      check_gradients(sim.dq, sim.dk, sim.dv, ref);
    };
    check("causal", causal{});
    check("block_local", block_local(4));
  }
}

TEST_CASE_TEMPLATE("simd keeps unkept NaN scores out of every result, as the reference does", T,
                   float, double) {
  // The reference sums over kept entries only, so an unkept NaN never reaches a result. Both
  // simd backward paths are covered: few kept keys per row (the simd forward saves the kept
  // sets) and many (no saved selection: the tiled backward with the saved statistics).
  const attention_shape s{2, 2, 40, 70, 17, 9};
  const double unit = exact_scale(s.d);
  const attention_options opt{unit};
  const T nan = std::numeric_limits<T>::quiet_NaN();
  auto check = [&](const char* name, const auto& p, const problem<T>& pr) {
    INFO(std::string(name));
    const auto ref = run_reference(p, pr, opt);
    REQUIRE(all_finite(ref.out.data));  // the reference keeps the NaN out
    REQUIRE(all_finite(ref.dq.data));
    REQUIRE(all_finite(ref.dk.data));
    REQUIRE(all_finite(ref.dv.data));
    const auto sim = run_backend(exec::simd, p, pr, opt);
    CHECK(all_finite(sim.out.data));
    CHECK(all_finite(sim.dq.data));
    CHECK(all_finite(sim.dk.data));
    CHECK(all_finite(sim.dv.data));
    check_forward(p, pr, sim.out, sim.record, ref, true);
    check_gradients(sim.dq, sim.dk, sim.dv, ref);
    return sim;
  };
  SUBCASE("a NaN query row: its scores are all NaN, so a selection policy keeps nothing there") {
    problem<T> pr = integer_problem<T>(s, 8);
    pr.q(1, 0, 3, 2) = nan;
    auto empty_row = [&](const auto& sim) {
      CHECK(sim.record.lse[std::size_t(sim.record.row_index(1, 0, 3))] == -INFINITY);
      CHECK(row_is_zero(sim.out, 1, 0, 3));
      CHECK(row_is_zero(sim.dq, 1, 0, 3));
    };
    empty_row(check("threshold, few kept", threshold(1.5 * unit), pr));
    empty_row(check("threshold, most kept", threshold(20.5 * unit), pr));
    empty_row(check("top_k(3)", top_k(3), pr));
    empty_row(check("top_k(40)", top_k(40), pr));
    empty_row(check("absolute_threshold", absolute_threshold(0.5 * unit), pr));
  }
  SUBCASE("a NaN key: its scores are all NaN, so a selection policy never keeps it") {
    problem<T> pr = integer_problem<T>(s, 9);
    pr.k(0, 1, 11, 0) = nan;
    check("top_k(5)", top_k(5), pr);
    check("top_k(40)", top_k(40), pr);
    check("threshold, most kept", threshold(20.5 * unit), pr);
    check("bottom_k(30)", bottom_k(30), pr);
    check("absolute_threshold", absolute_threshold(0.5 * unit), pr);
  }
}

TEST_CASE_TEMPLATE("simd keeps a non-finite V row of an unkept key out of the output", T, float,
                   double) {
  // The reference sums p_ij V_j over kept keys only: a NaN or infinite V_j reaches exactly the
  // rows that keep key j. The tile gemms must not spread it through 0 x NaN.
  const attention_shape s{1, 2, 20, 30, 8, 5};
  problem<T> pr(s, 12);
  pr.v(0, 1, 7, 2) = std::numeric_limits<T>::quiet_NaN();
  pr.v(0, 1, 21, 0) = std::numeric_limits<T>::infinity();
  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    const auto ref = run_reference(p, pr);
    for (const int threads : {1, 2}) {
      tensor<T> out(s.out());
      forward(exec::simd.with_threads(threads), p, pr.q.view(), pr.k.view(), pr.v.view(),
              out.view());
      index_t pattern_mismatch = 0, finite_rows = 0, non_finite_rows = 0;
      double err = 0, scale = 0;
      for (index_t h = 0; h < s.heads; ++h)
        for (index_t i = 0; i < s.n_q; ++i)
          for (index_t c = 0; c < s.d_v; ++c) {
            const T a = out(0, h, i, c), r = ref.out(0, h, i, c);
            pattern_mismatch += std::isfinite(a) != std::isfinite(r);
            if (std::isfinite(r)) {
              ++finite_rows;
              err = std::max(err, std::abs(double(a) - double(r)));
              scale = std::max(scale, std::abs(double(r)));
            } else {
              ++non_finite_rows;
            }
          }
      CHECK(pattern_mismatch == 0);
      CHECK(finite_rows > 0);
      CHECK(err <= simd_tol<T> * scale);
      if (non_finite_rows == 0) MESSAGE("no row keeps the non-finite keys");
    }
  };
  check("banded(3)", banded(3));
  check("block_local(5)", block_local(5));
  check("causal", causal{});
  check("top_k(3)", top_k(3));
  check("top_k(25): many kept, the gemm path", top_k(25));
  check("threshold(0.5)", threshold(0.5));
}

TEST_CASE_TEMPLATE("simd propagates a NaN score that dense keeps, as the reference does", T, float,
                   double) {
  // Dense and causal keep every score whatever its value: a NaN query row makes its own output
  // row NaN (the reference's online softmax propagates it), and leaves the other rows' outputs
  // untouched.
  const attention_shape s{1, 2, 20, 30, 8, 5};
  problem<T> pr(s, 10);
  pr.q(0, 1, 15, 3) = std::numeric_limits<T>::quiet_NaN();
  auto check = [&](const char* name, const auto& p) {
    INFO(std::string(name));
    const auto ref = run_reference(p, pr);
    tensor<T> out(s.out());
    const auto rec = forward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view());
    index_t nan_in_row = 0, reference_nan_in_row = 0;
    for (index_t c = 0; c < s.d_v; ++c) {
      nan_in_row += std::isnan(out(0, 1, 15, c));
      reference_nan_in_row += std::isnan(ref.out(0, 1, 15, c));
    }
    REQUIRE(reference_nan_in_row == s.d_v);
    CHECK(nan_in_row == s.d_v);
    CHECK(std::isnan(rec.lse[std::size_t(rec.row_index(0, 1, 15))]));
    std::size_t non_finite_elsewhere = 0;
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i)
        for (index_t c = 0; c < s.d_v; ++c)
          non_finite_elsewhere += !(h == 1 && i == 15) && !std::isfinite(out(0, h, i, c));
    CHECK(non_finite_elsewhere == 0);
  };
  check("dense", dense{});
  check("causal", causal{});
}

TEST_CASE_TEMPLATE("simd handles zero extents like the reference and overwrites its outputs", T,
                   float, double) {
  const std::vector<attention_shape> shapes = {
      {1, 2, 0, 5, 3, 4}, {1, 2, 4, 0, 3, 4}, {0, 2, 4, 5, 3, 4}, {2, 0, 4, 5, 3, 4}};
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (const attention_shape& s : shapes) {
    CAPTURE(s);
    const problem<T> pr(s, 11);
    auto check = [&](const char* name, const auto& p) {
      INFO(std::string(name));
      const auto ref = run_reference(p, pr);
      result<std::decay_t<decltype(p)>, T> r;
      r.out = tensor<T>(s.out(), nan);
      r.dq = tensor<T>(s.q(), nan);
      r.dk = tensor<T>(s.k(), nan);
      r.dv = tensor<T>(s.v(), nan);
      forward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), r.out.view(), r.record);
      backward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), r.out.cview(), pr.d_out.view(),
               r.record, r.dq.view(), r.dk.view(), r.dv.view());
      CHECK(same_bits(r.out.data, ref.out.data));
      CHECK(same_bits(r.record.lse, ref.record.lse));
      CHECK(same_bits(r.dq.data, ref.dq.data));
      CHECK(same_bits(r.dk.data, ref.dk.data));
      CHECK(same_bits(r.dv.data, ref.dv.data));
    };
    check("dense", dense{});
    check("causal", causal{});
    check("threshold", threshold(1.0));
    check("absolute_threshold", absolute_threshold(0.1));
    check("user::above_mean", user::above_mean{});
    if (s.n_k >= 2) check("top_k", top_k(2));
  }
}

TEST_CASE("simd calls from several threads at once give the same bits as one at a time") {
  // The worker pool runs one call at a time; concurrent callers run their tasks themselves, each
  // with its own thread_local workspace.
  const attention_shape s{2, 3, 130, 140, 32, 24};
  const problem<float> pr(s, 12);
  const auto ex = exec::simd.with_threads(2);
  const auto dense_alone = run_backend(ex, dense{}, pr);
  const auto top_alone = run_backend(ex, top_k(3), pr);
  std::vector<result<dense, float>> dense_runs(4);
  std::vector<result<top_k, float>> top_runs(4);
  std::vector<std::thread> callers;
  for (std::size_t t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int repeat = 0; repeat < 2; ++repeat) {
        dense_runs[t] = run_backend(ex, dense{}, pr);
        top_runs[t] = run_backend(ex, top_k(3), pr);
      }
    });
  for (std::thread& c : callers) c.join();
  for (std::size_t t = 0; t < 4; ++t) {
    CAPTURE(t);
    CHECK(same_bits(dense_runs[t].out.data, dense_alone.out.data));
    CHECK(same_bits(dense_runs[t].dq.data, dense_alone.dq.data));
    CHECK(same_bits(dense_runs[t].dk.data, dense_alone.dk.data));
    CHECK(same_bits(dense_runs[t].dv.data, dense_alone.dv.data));
    CHECK(same_bits(top_runs[t].out.data, top_alone.out.data));
    CHECK(same_bits(top_runs[t].record.lse, top_alone.record.lse));
    CHECK(top_runs[t].record.selection == top_alone.record.selection);
    CHECK(same_bits(top_runs[t].dq.data, top_alone.dq.data));
    CHECK(same_bits(top_runs[t].dk.data, top_alone.dk.data));
    CHECK(same_bits(top_runs[t].dv.data, top_alone.dv.data));
  }
}

TEST_CASE_TEMPLATE("simd and reference records are interchangeable between forward and backward", T,
                   float, double) {
  // Exact scores (integer inputs, power-of-two scale), so that both backends select the same keys
  // from either backend's statistics.
  const std::vector<attention_shape> shapes = {{2, 2, 33, 65, 17, 12}, {1, 2, 40, 257, 16, 8}};
  std::uint64_t seed = 130;
  for (const attention_shape& s : shapes) {
    CAPTURE(s);
    const double unit = exact_scale(s.d);
    const attention_options opt{unit};
    const auto tau = half_units(unit);
    const problem<T> pr = integer_problem<T>(s, ++seed);
    auto check = [&](const char* name, const auto& p) {
      INFO(std::string(name));
      using P = std::decay_t<decltype(p)>;
      const auto ref = run_reference(p, pr, opt);
      // simd forward, reference backward.
      tensor<T> out(s.out()), dq(s.q()), dk(s.k()), dv(s.v());
      forward_record_t<P, T> rec;
      forward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view(), rec, opt);
      check_forward(p, pr, out, rec, ref, true);
      backward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.cview(),
               pr.d_out.view(), rec, dq.view(), dk.view(), dv.view());
      {
        INFO("simd forward record, reference backward");
        check_gradients(dq, dk, dv, ref);
      }
      // reference forward, simd backward.
      tensor<T> dq2(s.q()), dk2(s.k()), dv2(s.v());
      backward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), ref.out.cview(),
               pr.d_out.view(), ref.record, dq2.view(), dk2.view(), dv2.view());
      {
        INFO("reference forward record, simd backward");
        check_gradients(dq2, dk2, dv2, ref);
      }
      // A simd record without its saved selection: simd backward re-derives the kept sets.
      if (rec.has_selection()) {
        auto bare = rec;
        bare.selection_offsets.clear();
        bare.selection.clear();
        tensor<T> dq3(s.q()), dk3(s.k()), dv3(s.v());
        backward(exec::simd, p, pr.q.view(), pr.k.view(), pr.v.view(), out.cview(), pr.d_out.view(),
                 bare, dq3.view(), dk3.view(), dv3.view());
        INFO("simd forward record without its selection, simd backward");
        check_gradients(dq3, dk3, dv3, ref);
      }
    };
    check("dense", dense{});
    check("causal", causal{});
    check("banded", banded(9));
    check("random_k", random_k(5, 1));
    check("top_k(3)", top_k(3));
    check("top_k(n_k / 2)", top_k(s.n_k / 2));
    check("bottom_k", bottom_k(2));
    check("threshold, few kept", threshold(0.5 * unit));
    check("threshold", threshold(tau(1.0)));
    check("absolute_threshold", absolute_threshold(tau(1.0)));
    check("user::above_mean", user::above_mean{});
  }
}

TEST_CASE("simd rejects bad arguments like the reference") {
  const attention_shape s{1, 2, 5, 6, 3, 4};
  const problem<float> pr(s, 140);
  tensor<float> out(s.out(), 42.0f);
  SUBCASE("a key dimension that does not match the queries") {
    const tensor<float> bad_k({1, 2, 6, 4});
    CHECK_THROWS_AS(
        forward(exec::simd, dense{}, pr.q.view(), bad_k.view(), pr.v.view(), out.view()),
        semfocus::invalid_argument);
    CHECK(std::all_of(out.data.begin(), out.data.end(), [](float x) { return x == 42.0f; }));
  }
  SUBCASE("an output of the wrong shape") {
    tensor<float> bad_out({1, 2, 5, 3}, 42.0f);
    CHECK_THROWS_AS(forward(exec::simd.with_threads(2), top_k(2), pr.q.view(), pr.k.view(),
                            pr.v.view(), bad_out.view()),
                    semfocus::invalid_argument);
  }
  SUBCASE("a policy that rejects the shape") {
    CHECK_THROWS_AS(
        forward(exec::simd, top_k(7), pr.q.view(), pr.k.view(), pr.v.view(), out.view()),
        semfocus::invalid_argument);
  }
  SUBCASE("backward with a record made for another shape") {
    const auto rec =
        forward(exec::simd, top_k(2), pr.q.view(), pr.k.view(), pr.v.view(), out.view());
    const problem<float> other({1, 2, 5, 7, 3, 4}, 141);
    tensor<float> o2(other.shape.out()), dq(other.shape.q()), dk(other.shape.k()),
        dv(other.shape.v());
    CHECK_THROWS_AS(backward(exec::simd, top_k(2), other.q.view(), other.k.view(), other.v.view(),
                             o2.cview(), other.d_out.view(), rec, dq.view(), dk.view(), dv.view()),
                    semfocus::invalid_argument);
  }
  SUBCASE("backward with a record whose saved selection is inconsistent") {
    auto rec = forward(exec::simd, top_k(2), pr.q.view(), pr.k.view(), pr.v.view(), out.view());
    tensor<float> dq(s.q()), dk(s.k()), dv(s.v());
    auto run_backward = [&] {
      backward(exec::simd, top_k(2), pr.q.view(), pr.k.view(), pr.v.view(), out.cview(),
               pr.d_out.view(), rec, dq.view(), dk.view(), dv.view());
    };
    // Every row keeps keys {0, 1}, except that one entry names key n_k.
    rec.selection_offsets.resize(std::size_t(s.rows()) + 1);
    rec.selection.assign(std::size_t(2 * s.rows()), 0);
    for (std::size_t r = 0; r <= std::size_t(s.rows()); ++r)
      rec.selection_offsets[r] = std::int64_t(2 * r);
    for (std::size_t x = 1; x < rec.selection.size(); x += 2) rec.selection[x] = 1;
    REQUIRE(rec.has_selection());
    REQUIRE_NOTHROW(run_backward());
    rec.selection[3] = std::uint32_t(s.n_k);
    CHECK_THROWS_AS(run_backward(), semfocus::invalid_argument);
    rec.selection[3] = 1;
    rec.selection_offsets[2] = 5;  // offsets 0, 2, 5, 4, ...: decreasing at row 3
    rec.selection_offsets[3] = 4;
    CHECK_THROWS_AS(run_backward(), semfocus::invalid_argument);
  }
  SUBCASE("a negative thread count") {
    CHECK_THROWS_AS(exec::simd.with_threads(-1), semfocus::invalid_argument);
    CHECK(exec::simd.with_threads(3).resolved_threads() == 3);
    CHECK(exec::simd.with_threads(0).resolved_threads() >= 1);
  }
}

#endif  // SEMFOCUS_HAS_XSIMD
