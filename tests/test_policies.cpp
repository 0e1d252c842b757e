// SPDX-License-Identifier: MIT
// Selection semantics of every built-in policy, checked directly on keep / row_statistic /
// classify (no attention arithmetic). Expected masks are written here from the definitions in
// PAPER.md and the policy headers, not computed with the policy code.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <semfocus/semfocus.hpp>

#include "support/custom_policy.hpp"
#include "support/errors.hpp"
#include "support/tensors.hpp"

namespace {

namespace sf = semfocus;
using sf::attention_shape;
using sf::head_slice;
using sf::index_t;
using sf::tile;
using sf::tile_kind;
using sf::test::contains;

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();

template <class V>
auto& at(V& v, index_t i) {
  return v[static_cast<std::size_t>(i)];
}

template <class T>
std::vector<T> row_of(std::initializer_list<double> xs) {
  std::vector<T> r;
  for (double x : xs) r.push_back(static_cast<T>(x));
  return r;
}

std::vector<index_t> idx(std::initializer_list<index_t> xs) { return std::vector<index_t>(xs); }

/// Keep decision of a fixed mask (the score is irrelevant; 0.0 as the fixed_mask concept uses).
template <class P>
bool fixed_keep(const P& p, const head_slice& hs, index_t i, index_t j) {
  return p.keep(hs, i, j, 0.0);
}

/// The mask of a fixed policy over hs as one '1'/'0' string per row.
template <class P>
std::vector<std::string> mask_rows(const P& p, const head_slice& hs) {
  std::vector<std::string> rows;
  for (index_t i = 0; i < hs.n_q; ++i) {
    std::string r;
    for (index_t j = 0; j < hs.n_k; ++j) r += fixed_keep(p, hs, i, j) ? '1' : '0';
    rows.push_back(r);
  }
  return rows;
}

template <class P>
index_t row_count(const P& p, const head_slice& hs, index_t i) {
  index_t c = 0;
  for (index_t j = 0; j < hs.n_k; ++j) c += fixed_keep(p, hs, i, j) ? 1 : 0;
  return c;
}

/// Indices kept by a row policy on one row (n_k = scores.size()), through the row statistic.
template <class P, class T>
std::vector<index_t> row_kept(const P& p, const std::vector<T>& s) {
  const head_slice hs{0, 0, 1, static_cast<index_t>(s.size())};
  const auto st = p.row_statistic(hs, 0, s.data());
  std::vector<index_t> out;
  index_t disagree = 0;
  for (index_t j = 0; j < hs.n_k; ++j) {
    const bool a = st.keep(j, at(s, j));
    disagree += a != sf::is_kept(p, hs, 0, j, at(s, j), st) ? 1 : 0;
    if (a) out.push_back(j);
  }
  CHECK(disagree == 0);
  return out;
}

/// Indices kept by an elementwise policy on one row.
template <class P, class T>
std::vector<index_t> elem_kept(const P& p, const std::vector<T>& s) {
  const head_slice hs{0, 0, 1, static_cast<index_t>(s.size())};
  std::vector<index_t> out;
  for (index_t j = 0; j < hs.n_k; ++j) {
    const bool a = p.keep(hs, 0, j, at(s, j));
    CHECK(a == sf::is_kept(p, hs, 0, j, at(s, j), sf::no_statistic{}));
    if (a) out.push_back(j);
  }
  return out;
}

/// Brute-force rank selection: drop NaN, stable sort by score (descending when `largest`), keep
/// the first k, return them in index order.
template <class T>
std::vector<index_t> brute_rank(const std::vector<T>& s, index_t k, bool largest) {
  std::vector<index_t> order;
  for (index_t j = 0; j < static_cast<index_t>(s.size()); ++j)
    if (!std::isnan(at(s, j))) order.push_back(j);
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
    return largest ? at(s, a) > at(s, b) : at(s, a) < at(s, b);
  });
  if (static_cast<index_t>(order.size()) > k) order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

}  // namespace

// =============================================================================================
// Banded and block-local: the paper's definitions, written out literally.

TEST_CASE("banded(5), n = 12: the paper's shifted window, element by element") {
  // l = floor((k-1)/2) = 2, u = 2; the window [i-2, i+2] is shifted, not truncated, at the edges.
  const std::vector<std::string> expected = {
      "111110000000",  // 0: [-2, 2] -> [0, 5)
      "111110000000",  // 1: [-1, 3] -> [0, 5)
      "111110000000",  // 2: [0, 4]
      "011111000000",  // 3
      "001111100000",  // 4
      "000111110000",  // 5
      "000011111000",  // 6
      "000001111100",  // 7
      "000000111110",  // 8
      "000000011111",  // 9: [7, 11]
      "000000011111",  // 10: [8, 12] -> [7, 12)
      "000000011111",  // 11: [9, 13] -> [7, 12)
  };
  const sf::banded p(5);
  const head_slice hs{0, 0, 12, 12};
  const auto got = mask_rows(p, hs);
  REQUIRE(got.size() == expected.size());
  for (index_t i = 0; i < 12; ++i)
    for (index_t j = 0; j < 12; ++j) {
      INFO("row ", i, " key ", j);
      CHECK(fixed_keep(p, hs, i, j) == (at(at(expected, i), j) == '1'));
    }
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK(got[i] == expected[i]);
}

TEST_CASE("block_local(5), n = 12: blocks {0..4}, {5..9}, {10, 11}") {
  const std::vector<std::string> expected = {
      "111110000000", "111110000000", "111110000000", "111110000000",
      "111110000000", "000001111100", "000001111100", "000001111100",
      "000001111100", "000001111100", "000000000011", "000000000011",
  };
  const sf::block_local p(5);
  const head_slice hs{0, 0, 12, 12};
  for (index_t i = 0; i < 12; ++i)
    for (index_t j = 0; j < 12; ++j) {
      INFO("row ", i, " key ", j);
      CHECK(fixed_keep(p, hs, i, j) == (at(at(expected, i), j) == '1'));
    }
  CHECK(mask_rows(p, hs) == expected);
}

TEST_CASE("banded keeps exactly k consecutive keys per row, window as in the paper") {
  struct nk {
    index_t n_q, n_k, k;
  };
  const std::vector<nk> cases = {{1, 1, 1},   {2, 2, 1},   {2, 2, 2},    {5, 5, 1},    {5, 5, 5},
                                 {12, 12, 5}, {12, 12, 4}, {13, 13, 12}, {16, 16, 16}, {33, 33, 7},
                                 {40, 40, 2}, {20, 9, 4},  {5, 30, 7},   {9, 4, 4},    {3, 17, 1}};
  for (const nk& c : cases) {
    INFO("n_q ", c.n_q, " n_k ", c.n_k, " k ", c.k);
    const sf::banded p(c.k);
    CHECK_NOTHROW(p.validate(attention_shape{1, 1, c.n_q, c.n_k, 4, 4}));
    const head_slice hs{0, 0, c.n_q, c.n_k};
    const index_t l = (c.k - 1) / 2, u = c.k - 1 - l;
    for (index_t i = 0; i < c.n_q; ++i) {
      INFO("row ", i);
      // The paper: [p - l, p + u], shifted to [0, k) or [n - k, n) when it leaves [0, n), at the
      // query's key position p = i + n_k - n_q (bottom-right alignment; p = i when square).
      const index_t pos = i + c.n_k - c.n_q;
      index_t first = pos - l;
      if (first < 0) first = 0;
      if (pos + u >= c.n_k) first = c.n_k - c.k;
      if (first < 0) first = 0;
      CHECK(row_count(p, hs, i) == c.k);
      bool ok = true;
      for (index_t j = 0; j < c.n_k; ++j)
        ok = ok && fixed_keep(p, hs, i, j) == (j >= first && j < first + c.k);
      CHECK(ok);
      CHECK(p.start(hs, i) == first);
      if (pos >= 0 && pos < c.n_k) CHECK(fixed_keep(p, hs, i, pos));  // the query's own position
    }
  }
}

TEST_CASE("block_local: rectangular and non-dividing blocks") {
  const sf::block_local p(4);
  // n_q > n_k: row i sits at key position i - 7; the first 7 rows (negative positions) keep
  // nothing, rows at positions 0..3 keep block {0..3}, positions 4, 5 keep the short block {4, 5}.
  const head_slice hs{0, 0, 13, 6};
  for (index_t i = 0; i < hs.n_q; ++i) {
    INFO("row ", i);
    index_t expect = 0;
    if (i >= 7 && i < 11)
      expect = 4;
    else if (i >= 11)
      expect = 2;  // keys {4, 5}
    CHECK(row_count(p, hs, i) == expect);
  }
  // n_q < n_k: the 4 queries are key positions 4..7 (bottom-right alignment).
  CHECK(mask_rows(sf::block_local(3), head_slice{0, 0, 4, 8}) ==
        std::vector<std::string>{"00011100", "00011100", "00000011", "00000011"});
  CHECK(mask_rows(sf::block_local(1), head_slice{0, 0, 3, 3}) ==
        std::vector<std::string>{"100", "010", "001"});
}

// =============================================================================================
// Dense and causal.

TEST_CASE("dense keeps everything, causal uses bottom-right alignment") {
  for (index_t n_q : {1, 3, 8}) {
    for (index_t n_k : {1, 5, 8}) {
      const head_slice hs{0, 0, n_q, n_k};
      for (index_t i = 0; i < n_q; ++i) CHECK(row_count(sf::dense{}, hs, i) == n_k);
    }
  }
  SUBCASE("n_q = n_k: j <= i") {
    CHECK(mask_rows(sf::causal{}, head_slice{0, 0, 4, 4}) ==
          std::vector<std::string>{"1000", "1100", "1110", "1111"});
    const head_slice hs{0, 0, 9, 9};
    for (index_t i = 0; i < 9; ++i)
      for (index_t j = 0; j < 9; ++j) CHECK(fixed_keep(sf::causal{}, hs, i, j) == (j <= i));
  }
  SUBCASE("n_q < n_k: j <= i + n_k - n_q") {
    CHECK(mask_rows(sf::causal{}, head_slice{0, 0, 3, 6}) ==
          std::vector<std::string>{"111100", "111110", "111111"});
    const head_slice hs{0, 0, 4, 10};
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 10; ++j) CHECK(fixed_keep(sf::causal{}, hs, i, j) == (j <= i + 6));
  }
  SUBCASE("n_q > n_k: the first n_q - n_k rows are empty") {
    CHECK(mask_rows(sf::causal{}, head_slice{0, 0, 5, 3}) ==
          std::vector<std::string>{"000", "000", "100", "110", "111"});
    const head_slice hs{0, 0, 10, 4};
    for (index_t i = 0; i < 10; ++i)
      CHECK(row_count(sf::causal{}, hs, i) == std::max<index_t>(0, i - 5));
  }
  SUBCASE("causal is dense{true}") {
    const sf::dense c{true};
    const head_slice hs{0, 0, 6, 9};
    CHECK(mask_rows(c, hs) == mask_rows(sf::causal{}, hs));
    const sf::causal cz;
    CHECK(static_cast<const sf::dense&>(cz).is_causal);
    CHECK_FALSE(sf::dense{}.is_causal);
  }
}

// =============================================================================================
// Strided.

TEST_CASE("strided(stride, local): (p - j) mod stride == 0 or |p - j| <= local, p the position") {
  struct sl {
    index_t stride, local;
  };
  const sl params[] = {{1, 0}, {2, 0}, {3, 0}, {3, 1}, {5, 0}, {5, 2}, {4, 4}, {7, 1}};
  const head_slice shapes[] = {{0, 0, 20, 20}, {0, 0, 13, 21}, {0, 0, 21, 13}};
  for (const sl& c : params) {
    const sf::strided p(c.stride, c.local);
    for (const head_slice& hs : shapes) {
      INFO("stride ", c.stride, " local ", c.local, " n_q ", hs.n_q, " n_k ", hs.n_k);
      index_t bad = 0, negative_kept = 0;
      for (index_t i = 0; i < hs.n_q; ++i)
        for (index_t j = 0; j < hs.n_k; ++j) {
          const index_t d = hs.position(i) - j;  // query i at key position i + n_k - n_q
          const index_t mod = ((d % c.stride) + c.stride) % c.stride;  // Euclidean
          const bool expect = mod == 0 || std::abs(d) <= c.local;
          const bool got = fixed_keep(p, hs, i, j);
          bad += got != expect ? 1 : 0;
          negative_kept += (got && d < -c.local) ? 1 : 0;
        }
      CHECK(bad == 0);
      if (c.stride < hs.n_k) CHECK(negative_kept > 0);  // keys after the query are kept too
    }
  }
  // Spot checks by hand, negative differences included.
  const sf::strided p(3, 1);
  const head_slice hs{0, 0, 10, 10};
  CHECK(fixed_keep(p, hs, 0, 3));        // d = -3
  CHECK_FALSE(fixed_keep(p, hs, 0, 4));  // d = -4
  CHECK_FALSE(fixed_keep(p, hs, 1, 5));  // d = -4
  CHECK(fixed_keep(p, hs, 2, 1));        // d = 1, local
  CHECK(fixed_keep(p, hs, 1, 2));        // d = -1, local
  CHECK_FALSE(fixed_keep(p, hs, 5, 1));  // d = 4
  CHECK(fixed_keep(p, hs, 7, 1));        // d = 6
  CHECK(fixed_keep(p, hs, 1, 7));        // d = -6
  CHECK_FALSE(fixed_keep(p, hs, 0, 2));  // d = -2
  CHECK(mask_rows(sf::strided(2), head_slice{0, 0, 3, 5}) ==
        std::vector<std::string>{"10101", "01010", "10101"});
}

// =============================================================================================
// Global tokens.

TEST_CASE("global_tokens: literal masks") {
  // banded(3) + 2 at n = 8: the inner 6 x 6 block is banded(3) on n = 6 (l = 1, start clamped
  // to [0, 3]); the last 2 columns and rows are global.
  CHECK(mask_rows(sf::global_tokens(sf::banded(3), 2), head_slice{0, 0, 8, 8}) ==
        std::vector<std::string>{"11100011", "11100011", "01110011", "00111011", "00011111",
                                 "00011111", "11111111", "11111111"});
  // block_local(2) + 1 at n = 7: blocks {0,1}, {2,3}, {4,5} of the inner 6.
  CHECK(mask_rows(sf::global_tokens(sf::block_local(2), 1), head_slice{0, 0, 7, 7}) ==
        std::vector<std::string>{"1100001", "1100001", "0011001", "0011001", "0000111", "0000111",
                                 "1111111"});
}

TEST_CASE("global_tokens(banded / block_local, G): global rows, global columns, inner block") {
  for (index_t n : {6, 8, 12, 17}) {
    for (index_t g : {0, 1, 3}) {
      const index_t m = n - g;  // inner extent
      for (index_t k : {1, 2, 3, 5}) {
        if (k > m) continue;
        INFO("n ", n, " G ", g, " k ", k);
        const head_slice hs{0, 0, n, n};
        const auto pb = sf::global_tokens(sf::banded(k), g);
        const auto pl = sf::global_tokens(sf::block_local(k), g);
        CHECK_NOTHROW(pb.validate(attention_shape{1, 1, n, n, 4, 4}));
        CHECK_NOTHROW(pl.validate(attention_shape{1, 1, n, n, 4, 4}));
        const index_t l = (k - 1) / 2;
        index_t bad_b = 0, bad_l = 0;
        for (index_t i = 0; i < n; ++i)
          for (index_t j = 0; j < n; ++j) {
            bool eb = true, el = true;
            if (i < m && j < m) {
              const index_t first = std::clamp<index_t>(i - l, 0, m - k);
              eb = j >= first && j < first + k;
              el = i / k == j / k;
            }
            bad_b += fixed_keep(pb, hs, i, j) != eb ? 1 : 0;
            bad_l += fixed_keep(pl, hs, i, j) != el ? 1 : 0;
          }
        CHECK(bad_b == 0);
        CHECK(bad_l == 0);
        for (index_t i = 0; i < n; ++i) {
          INFO("row ", i);
          if (i >= m) {
            CHECK(row_count(pb, hs, i) == n);
            CHECK(row_count(pl, hs, i) == n);
          } else {
            CHECK(row_count(pb, hs, i) == k + g);  // banded + G keeps exactly k + G
          }
          for (index_t j = m; j < n; ++j) {
            CHECK(fixed_keep(pb, hs, i, j));
            CHECK(fixed_keep(pl, hs, i, j));
          }
        }
      }
    }
  }
}

TEST_CASE("global_tokens on a rectangular slice") {
  // n_q = 10, n_k = 14, G = 2: rows 8, 9 global, keys 12, 13 global, inner 8 x 12 banded(4)
  // with row i at key position i + 4.
  const auto p = sf::global_tokens(sf::banded(4), 2);
  const head_slice hs{0, 0, 10, 14};
  for (index_t i = 0; i < 10; ++i) {
    INFO("row ", i);
    CHECK(row_count(p, hs, i) == (i >= 8 ? 14 : 6));
    for (index_t j = 0; j < 12; ++j) {
      if (i >= 8) continue;
      const index_t first = std::clamp<index_t>(i + 4 - 1, 0, 12 - 4);
      CHECK(fixed_keep(p, hs, i, j) == (j >= first && j < first + 4));
    }
  }
  // G = 0 is the inner mask itself.
  const head_slice sq{0, 0, 9, 9};
  CHECK(mask_rows(sf::global_tokens(sf::banded(3), 0), sq) == mask_rows(sf::banded(3), sq));
}

// =============================================================================================
// Explicit mask.

TEST_CASE("explicit_mask: per-slice lookup, broadcasting over batch and heads, uint8_t") {
  const index_t B = 2, H = 3, nq = 4, nk = 5;
  std::mt19937_64 gen(42);
  std::uniform_int_distribution<int> bit(0, 3);  // 0 drops, 1..3 keep
  auto fill = [&](sf::test::tensor<std::uint8_t>& t) {
    for (auto& x : t.data) x = static_cast<std::uint8_t>(bit(gen));
  };
  const attention_shape shape{B, H, nq, nk, 8, 8};

  for (index_t mb : {index_t{1}, B}) {
    for (index_t mh : {index_t{1}, H}) {
      INFO("mask batch ", mb, " mask heads ", mh);
      sf::test::tensor<std::uint8_t> m(sf::tensor_shape{mb, mh, nq, nk});
      fill(m);
      const sf::explicit_mask p(m.cview());
      static_assert(std::is_same_v<decltype(p), const sf::explicit_mask<std::uint8_t>>);
      CHECK_NOTHROW(p.validate(shape));
      index_t bad = 0, kept = 0;
      for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h) {
          const head_slice hs{b, h, nq, nk};
          for (index_t i = 0; i < nq; ++i)
            for (index_t j = 0; j < nk; ++j) {
              const bool expect = m(mb == 1 ? 0 : b, mh == 1 ? 0 : h, i, j) != 0;
              const bool got = p.keep(hs, i, j, 0.5f);
              bad += got != expect ? 1 : 0;
              kept += got ? 1 : 0;
            }
        }
      CHECK(bad == 0);
      CHECK(kept > 0);
      CHECK(kept < B * H * nq * nk);
    }
  }
}

TEST_CASE("explicit_mask<bool> and a strided mask view") {
  const index_t B = 2, H = 2, nq = 3, nk = 4;
  // Storage [B, n_q, H, n_k] viewed as [B, H, n_q, n_k].
  const auto n = static_cast<std::size_t>(B * H * nq * nk);
  std::unique_ptr<bool[]> buf(new bool[n]);
  auto stored = [&](index_t b, index_t h, index_t i, index_t j) -> bool& {
    return buf[static_cast<std::size_t>(((b * nq + i) * H + h) * nk + j)];
  };
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < nq; ++i)
        for (index_t j = 0; j < nk; ++j) stored(b, h, i, j) = ((b + 2 * h + 3 * i + j) % 3) == 0;
  const sf::tensor_view<const bool> v(buf.get(), sf::tensor_shape{B, H, nq, nk},
                                      sf::tensor_strides{nq * H * nk, nk, H * nk});
  const sf::explicit_mask<bool> p(v);
  CHECK_NOTHROW(p.validate(attention_shape{B, H, nq, nk, 2, 2}));
  index_t bad = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < nq; ++i)
        for (index_t j = 0; j < nk; ++j)
          bad += p.keep(head_slice{b, h, nq, nk}, i, j, 1.0) != stored(b, h, i, j) ? 1 : 0;
  CHECK(bad == 0);
  // The score is ignored.
  CHECK(p.keep(head_slice{1, 1, nq, nk}, 2, 3, -inf_v) ==
        p.keep(head_slice{1, 1, nq, nk}, 2, 3, nan_v));
}

TEST_CASE("explicit_mask: validate rejects a mask of the wrong shape") {
  const attention_shape shape{2, 3, 4, 5, 8, 8};
  auto check_rejects = [&](sf::tensor_shape ms, const char* what) {
    INFO("mask shape ", ms, " (", what, ")");
    sf::test::tensor<std::uint8_t> m(ms, 1);
    const sf::explicit_mask<std::uint8_t> p(m.cview());
    CHECK_THROWS_AS(p.validate(shape), sf::invalid_argument);
    const std::string msg = semfocus::test::error_message([&] { p.validate(shape); });
    CHECK(contains(msg, "explicit_mask"));
    CHECK(contains(msg, what));
  };
  check_rejects({1, 1, 5, 5}, "n_q x n_k");
  check_rejects({1, 1, 4, 4}, "n_q x n_k");
  check_rejects({1, 1, 5, 4}, "n_q x n_k");
  check_rejects({3, 1, 4, 5}, "batch");
  check_rejects({2, 2, 4, 5}, "heads");
  check_rejects({1, 4, 4, 5}, "heads");
  // Null data for a non-empty mask, and negative strides.
  {
    const sf::explicit_mask<bool> p(sf::tensor_view<const bool>(nullptr, {1, 1, 4, 5}));
    const std::string msg = semfocus::test::error_message([&] { p.validate(shape); });
    CHECK(contains(msg, "explicit_mask"));
    CHECK(contains(msg, "null"));
  }
  {
    std::vector<std::uint8_t> buf(40, 1);
    const sf::explicit_mask<std::uint8_t> p(sf::tensor_view<const std::uint8_t>(
        buf.data() + 20, {1, 1, 4, 5}, sf::tensor_strides{0, 0, -5}));
    const std::string msg = semfocus::test::error_message([&] { p.validate(shape); });
    CHECK(contains(msg, "explicit_mask"));
    CHECK(contains(msg, "strides"));
  }
  // And the accepted shapes do not throw.
  for (index_t mb : {1, 2})
    for (index_t mh : {1, 3}) {
      sf::test::tensor<std::uint8_t> m(sf::tensor_shape{mb, mh, 4, 5}, 1);
      CHECK_NOTHROW(sf::explicit_mask<std::uint8_t>(m.cview()).validate(shape));
    }
}

// =============================================================================================
// random_k.

TEST_CASE("random_k: exactly k distinct keys per row, a permutation per row") {
  for (index_t n : {1, 2, 3, 7, 16, 17, 100}) {
    std::vector<index_t> ks = {1, std::max<index_t>(1, n / 2), n};
    if (n > 2) ks.push_back(n - 1);
    for (index_t k : ks) {
      const sf::random_k p(k, 12345);
      CHECK_NOTHROW(p.validate(attention_shape{2, 2, 40, n, 4, 4}));
      index_t bad_count = 0, bad_perm = 0, bad_keep = 0;
      for (index_t b = 0; b < 2; ++b)
        for (index_t h = 0; h < 2; ++h) {
          const head_slice hs{b, h, 40, n};
          for (index_t i = 0; i < 40; ++i) {
            bad_count += row_count(p, hs, i) != k ? 1 : 0;
            std::vector<index_t> image;
            for (index_t j = 0; j < n; ++j) {
              const index_t pj = p.permute(hs, i, j);
              image.push_back(pj);
              bad_keep += p.keep(hs, i, j, 0.0f) != (pj < k) ? 1 : 0;
            }
            std::sort(image.begin(), image.end());
            std::vector<index_t> ident(static_cast<std::size_t>(n));
            std::iota(ident.begin(), ident.end(), index_t{0});
            bad_perm += image != ident ? 1 : 0;
          }
        }
      INFO("n ", n, " k ", k);
      CHECK(bad_count == 0);
      CHECK(bad_perm == 0);
      CHECK(bad_keep == 0);
    }
  }
}

TEST_CASE("random_k: reproducible from the seed, different across seeds, heads, batches, rows") {
  const index_t n = 100, k = 10, rows = 50;
  auto selection = [&](const sf::random_k& p, index_t b, index_t h, index_t i) {
    std::vector<index_t> s;
    for (index_t j = 0; j < n; ++j)
      if (fixed_keep(p, head_slice{b, h, rows, n}, i, j)) s.push_back(j);
    return s;
  };
  const sf::random_k a(k, 1), a2(k, 1), other(k, 2);
  index_t same_seed_equal = 0, seed_differs = 0, head_differs = 0, batch_differs = 0,
          row_differs = 0;
  for (index_t i = 0; i < rows; ++i) {
    const auto s = selection(a, 0, 0, i);
    same_seed_equal += s == selection(a2, 0, 0, i) ? 1 : 0;
    seed_differs += s != selection(other, 0, 0, i) ? 1 : 0;
    head_differs += s != selection(a, 0, 1, i) ? 1 : 0;
    batch_differs += s != selection(a, 1, 0, i) ? 1 : 0;
    row_differs += s != selection(a, 0, 0, (i + 1) % rows) ? 1 : 0;
  }
  CHECK(same_seed_equal == rows);
  CHECK(seed_differs >= rows - 2);
  CHECK(head_differs >= rows - 2);
  CHECK(batch_differs >= rows - 2);
  CHECK(row_differs >= rows - 2);
  // The selection does not depend on n_q (only on seed, b, h, i and n_k) nor on the score.
  for (index_t i = 0; i < 5; ++i)
    for (index_t j = 0; j < n; ++j)
      CHECK(a.keep(head_slice{0, 0, 7, n}, i, j, 1.0) ==
            a.keep(head_slice{0, 0, 300, n}, i, j, -3.0));
}

TEST_CASE("random_k: roughly uniform coverage of the keys") {
  struct cfg {
    index_t n, k;
  };
  // About 2000 expected hits per key: binomial noise sd ~2.2%; the seed is fixed, so the bound
  // is deterministic. (With 4 Feistel rounds n_k = 5 showed ~8% bias; 8 rounds stay in the noise.)
  for (const cfg c :
       {cfg{64, 8}, cfg{17, 3}, cfg{100, 1}, cfg{7, 5}, cfg{3, 1}, cfg{5, 1}, cfg{9, 1}}) {
    const sf::random_k p(c.k, 2024);
    const index_t B = 4, H = 4, nq = (2000 * c.n) / (B * H * c.k) + 1;
    std::vector<index_t> hits(static_cast<std::size_t>(c.n), 0);
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h) {
        const head_slice hs{b, h, nq, c.n};
        for (index_t i = 0; i < nq; ++i)
          for (index_t j = 0; j < c.n; ++j) at(hits, j) += fixed_keep(p, hs, i, j) ? 1 : 0;
      }
    const double expected = double(B * H * nq * c.k) / double(c.n);
    INFO("n ", c.n, " k ", c.k, " expected hits per key ", expected);
    const auto [lo, hi] = std::minmax_element(hits.begin(), hits.end());
    CHECK(double(*lo) > 0.94 * expected);
    CHECK(double(*hi) < 1.06 * expected);
  }
}

// =============================================================================================
// top_k and bottom_k.

TEST_CASE_TEMPLATE("top_k / bottom_k: hand-made rows with ties", T, float, double) {
  const auto s = row_of<T>({1, 3, 3, 2, 3});
  CHECK(row_kept(sf::top_k(1), s) == idx({1}));
  CHECK(row_kept(sf::top_k(2), s) == idx({1, 2}));
  CHECK(row_kept(sf::top_k(3), s) == idx({1, 2, 4}));
  CHECK(row_kept(sf::top_k(4), s) == idx({1, 2, 3, 4}));
  CHECK(row_kept(sf::top_k(5), s) == idx({0, 1, 2, 3, 4}));
  CHECK(row_kept(sf::bottom_k(1), s) == idx({0}));
  CHECK(row_kept(sf::bottom_k(2), s) == idx({0, 3}));
  CHECK(row_kept(sf::bottom_k(3), s) == idx({0, 1, 3}));
  CHECK(row_kept(sf::bottom_k(4), s) == idx({0, 1, 2, 3}));
  // The statistic is the k-th score and the last kept tie.
  const auto st = sf::top_k(2).row_statistic(head_slice{0, 0, 1, 5}, 0, s.data());
  CHECK(st.value == T(3));
  CHECK(st.last == 2);
  const auto sb = sf::bottom_k(3).row_statistic(head_slice{0, 0, 1, 5}, 0, s.data());
  CHECK(sb.value == T(3));
  CHECK(sb.last == 1);
  // All equal: the first k.
  const auto flat = row_of<T>({7, 7, 7, 7, 7, 7});
  CHECK(row_kept(sf::top_k(3), flat) == idx({0, 1, 2}));
  CHECK(row_kept(sf::bottom_k(4), flat) == idx({0, 1, 2, 3}));
  // Negative values.
  const auto neg = row_of<T>({-5, -1, -3, -1, -10});
  CHECK(row_kept(sf::top_k(2), neg) == idx({1, 3}));
  CHECK(row_kept(sf::top_k(3), neg) == idx({1, 2, 3}));
  CHECK(row_kept(sf::bottom_k(2), neg) == idx({0, 4}));
}

TEST_CASE_TEMPLATE("top_k / bottom_k: NaN is never kept", T, float, double) {
  const auto s = row_of<T>({nan_v, 2, nan_v, 1, 3});
  CHECK(row_kept(sf::top_k(1), s) == idx({4}));
  CHECK(row_kept(sf::top_k(2), s) == idx({1, 4}));
  CHECK(row_kept(sf::top_k(3), s) == idx({1, 3, 4}));
  CHECK(row_kept(sf::top_k(4), s) == idx({1, 3, 4}));  // fewer than k non-NaN: all of them
  CHECK(row_kept(sf::top_k(5), s) == idx({1, 3, 4}));
  CHECK(row_kept(sf::bottom_k(1), s) == idx({3}));
  CHECK(row_kept(sf::bottom_k(2), s) == idx({1, 3}));
  CHECK(row_kept(sf::bottom_k(5), s) == idx({1, 3, 4}));
  const auto all_nan = row_of<T>({nan_v, nan_v, nan_v});
  CHECK(row_kept(sf::top_k(1), all_nan).empty());
  CHECK(row_kept(sf::top_k(3), all_nan).empty());
  CHECK(row_kept(sf::bottom_k(2), all_nan).empty());
  // The statistic never accepts NaN, at any index.
  const auto st = sf::top_k(5).row_statistic(head_slice{0, 0, 1, 5}, 0, s.data());
  for (index_t j = 0; j < 5; ++j) CHECK_FALSE(st.keep(j, static_cast<T>(nan_v)));
}

TEST_CASE_TEMPLATE("top_k / bottom_k: -0 equals +0, infinities", T, float, double) {
  CHECK(row_kept(sf::top_k(1), row_of<T>({-0.0, 0.0, -1})) == idx({0}));
  CHECK(row_kept(sf::top_k(1), row_of<T>({0.0, -0.0, -1})) == idx({0}));
  CHECK(row_kept(sf::top_k(2), row_of<T>({-1, -0.0, 0.0, -0.0})) == idx({1, 2}));
  CHECK(row_kept(sf::top_k(2), row_of<T>({1, -0.0, 0.0})) == idx({0, 1}));
  CHECK(row_kept(sf::bottom_k(1), row_of<T>({0.0, -0.0, 1})) == idx({0}));
  CHECK(row_kept(sf::bottom_k(2), row_of<T>({3, 0.0, -0.0, 0.0})) == idx({1, 2}));

  const auto s = row_of<T>({-inf_v, inf_v, 3, inf_v});
  CHECK(row_kept(sf::top_k(1), s) == idx({1}));
  CHECK(row_kept(sf::top_k(2), s) == idx({1, 3}));
  CHECK(row_kept(sf::top_k(3), s) == idx({1, 2, 3}));
  CHECK(row_kept(sf::top_k(4), s) == idx({0, 1, 2, 3}));
  CHECK(row_kept(sf::bottom_k(1), s) == idx({0}));
  CHECK(row_kept(sf::bottom_k(2), s) == idx({0, 2}));
  CHECK(row_kept(sf::bottom_k(3), s) == idx({0, 1, 2}));
  CHECK(row_kept(sf::top_k(2), row_of<T>({-inf_v, -inf_v, -inf_v, nan_v})) == idx({0, 1}));
  CHECK(row_kept(sf::top_k(1), row_of<T>({nan_v, -inf_v})) == idx({1}));
  CHECK(row_kept(sf::top_k(1), row_of<T>({-inf_v, nan_v, -inf_v})) == idx({0}));
  CHECK(row_kept(sf::bottom_k(2), row_of<T>({inf_v, nan_v, inf_v, inf_v})) == idx({0, 2}));
  // Extremes of the finite range and denormals order correctly.
  const double big = double(std::numeric_limits<T>::max());
  const double tiny = double(std::numeric_limits<T>::denorm_min());
  const auto e = row_of<T>({tiny, -big, big, 0.0, -tiny, inf_v});
  CHECK(row_kept(sf::top_k(3), e) == idx({0, 2, 5}));
  CHECK(row_kept(sf::top_k(4), e) == idx({0, 2, 3, 5}));
  CHECK(row_kept(sf::bottom_k(2), e) == idx({1, 4}));
}

TEST_CASE("top_k: the statistic reads only the n_k scores of the slice") {
  // Larger values beyond n_k must not change the selection.
  const std::vector<double> s = {1, 5, 2, 100, 200};
  const head_slice hs{0, 0, 1, 3};
  const auto st = sf::top_k(1).row_statistic(hs, 0, s.data());
  CHECK(st.keep(1, 5.0));
  CHECK_FALSE(st.keep(0, 1.0));
  CHECK_FALSE(st.keep(2, 2.0));
  const auto th = sf::threshold(0).row_statistic(hs, 0, s.data());
  CHECK(th.keep(1, 5.0));
}

namespace {

template <class T>
void compare_rank_with_brute_force(bool largest) {
  std::mt19937_64 gen(largest ? 11 : 12);
  // A small value set with many ties, signed zeros, infinities and NaN.
  const double values[] = {-2, -1, -0.0, 0.0, 1, 2, 0.5, inf_v, -inf_v, nan_v};
  std::uniform_int_distribution<int> pick(0, 9);
  std::uniform_int_distribution<int> pick_finite(0, 6);
  std::normal_distribution<double> normal(0, 1);
  index_t rows = 0, bad = 0;
  std::string first_bad;
  auto check_row = [&](const std::vector<T>& s) {
    const auto n = static_cast<index_t>(s.size());
    for (index_t k = 1; k <= n; ++k) {
      const auto got = largest ? row_kept(sf::top_k(k), s) : row_kept(sf::bottom_k(k), s);
      const auto expect = brute_rank(s, k, largest);
      ++rows;
      if (got != expect) {
        if (bad++ == 0) {
          std::ostringstream os;
          os << "k " << k << " scores";
          for (T x : s) os << ' ' << x;
          first_bad = os.str();
        }
      }
    }
  };
  for (int r = 0; r < 400; ++r) {
    const index_t n = 1 + static_cast<index_t>(gen() % 24);
    std::vector<T> s;
    const bool with_special = r % 2 == 0;
    for (index_t j = 0; j < n; ++j)
      s.push_back(static_cast<T>(values[with_special ? pick(gen) : pick_finite(gen)]));
    check_row(s);
  }
  // Longer rows: many ties from a small integer set; continuous values; values that share their
  // high bytes (differ only in the last bits) so every radix pass matters. The lengths straddle
  // the selection's paths: the small-k pass (k <= 8, n <= 256), the short quickselect (n <= 128)
  // and the grouped pass.
  for (const index_t n : {40, 97, 128, 129, 200, 237, 256, 257, 311, 385}) {
    std::vector<T> ties, cont, close;
    for (index_t j = 0; j < n; ++j) {
      ties.push_back(static_cast<T>(pick_finite(gen) - 3));
      cont.push_back(static_cast<T>(normal(gen)));
      T x = T(1) + T(static_cast<int>(gen() % 9)) * std::numeric_limits<T>::epsilon();
      if (gen() % 2) x = -x;
      close.push_back(x);
    }
    check_row(ties);
    check_row(cont);
    check_row(close);
  }
  // Long rows (groups of 8 and 16 scores in the selection's first pass), for k on both sides of
  // the filtered fast path: continuous values, heavy ties (the filter overflows and falls back),
  // specials (NaN, infinities, -0) mixed in.
  for (const index_t n : {index_t(1100), index_t(2049), index_t(4100)}) {
    std::vector<T> ties, cont, special;
    for (index_t j = 0; j < n; ++j) {
      ties.push_back(static_cast<T>(pick_finite(gen) - 3));
      cont.push_back(static_cast<T>(normal(gen)));
      special.push_back(static_cast<T>(gen() % 3 == 0 ? values[pick(gen)] : normal(gen)));
    }
    for (const std::vector<T>* row : {&ties, &cont, &special})
      for (const index_t k :
           {index_t(1), index_t(2), index_t(7), index_t(64), index_t(65), index_t(300), n - 1, n}) {
        const auto got = largest ? row_kept(sf::top_k(k), *row) : row_kept(sf::bottom_k(k), *row);
        ++rows;
        if (got != brute_rank(*row, k, largest) && bad++ == 0)
          first_bad = "long row, n " + std::to_string(n) + ", k " + std::to_string(k);
      }
  }
  INFO("first mismatch: ", first_bad);
  CHECK(rows > 5000);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("top_k matches a stable-sort selection on random rows with ties", T, float,
                   double) {
  compare_rank_with_brute_force<T>(true);
}

TEST_CASE_TEMPLATE("bottom_k matches a stable-sort selection on random rows with ties", T, float,
                   double) {
  compare_rank_with_brute_force<T>(false);
}

// The device's selection for k <= 8 (a sorted insertion) against the host's (passes over the
// keys), which the brute-force comparisons above check: the same value bits and tie index.
TEST_CASE_TEMPLATE("select_rank_insertion equals select_rank_passes (k <= 8, n <= 256)", T, float,
                   double) {
  std::mt19937 gen(11);
  const T inf = std::numeric_limits<T>::infinity();
  const std::vector<T> special = {std::numeric_limits<T>::quiet_NaN(), inf, -inf, T(0), -T(0)};
  std::normal_distribution<double> normal;
  int compared = 0, bad = 0;
  for (int r = 0; r < 3000; ++r) {
    const auto n = static_cast<index_t>(1 + gen() % 256);
    std::vector<T> s(static_cast<std::size_t>(n));
    for (T& x : s) {
      const auto kind = gen() % 8;
      x = kind == 0  ? special[gen() % special.size()]
          : kind < 4 ? static_cast<T>(static_cast<int>(gen() % 7) - 3)  // ties
                     : static_cast<T>(normal(gen));
    }
    for (index_t k = 1; k <= std::min<index_t>(8, n); ++k)
      for (const bool largest : {true, false}) {
        const auto a = largest ? sf::detail::select_rank_insertion<true>(s.data(), n, k)
                               : sf::detail::select_rank_insertion<false>(s.data(), n, k);
        const auto b = largest ? sf::detail::select_rank_passes<true>(s.data(), n, k)
                               : sf::detail::select_rank_passes<false>(s.data(), n, k);
        ++compared;
        bad += a.last != b.last || std::memcmp(&a.value, &b.value, sizeof(T)) != 0 ? 1 : 0;
      }
  }
  CHECK(compared > 20000);
  CHECK(bad == 0);
}

// =============================================================================================
// Thresholds.

TEST_CASE_TEMPLATE("threshold(tau): s >= max - tau", T, float, double) {
  const auto s = row_of<T>({1, 3, 2.5, nan_v, 2});
  CHECK(row_kept(sf::threshold(0), s) == idx({1}));
  CHECK(row_kept(sf::threshold(0.5), s) == idx({1, 2}));
  CHECK(row_kept(sf::threshold(0.75), s) == idx({1, 2}));
  CHECK(row_kept(sf::threshold(1), s) == idx({1, 2, 4}));
  CHECK(row_kept(sf::threshold(2), s) == idx({0, 1, 2, 4}));
  CHECK(row_kept(sf::threshold(1e6), s) == idx({0, 1, 2, 4}));
  // tau = 0 keeps exactly the maxima.
  CHECK(row_kept(sf::threshold(0), row_of<T>({3, 1, 3, -4})) == idx({0, 2}));
  CHECK(row_kept(sf::threshold(0), row_of<T>({nan_v, 1, 0})) == idx({1}));
  // An all-NaN row keeps nothing.
  CHECK(row_kept(sf::threshold(0), row_of<T>({nan_v, nan_v})).empty());
  CHECK(row_kept(sf::threshold(5), row_of<T>({nan_v, nan_v, nan_v})).empty());
  // -inf is dropped against a finite max, +inf is the max.
  CHECK(row_kept(sf::threshold(100), row_of<T>({-inf_v, 0})) == idx({1}));
  CHECK(row_kept(sf::threshold(1), row_of<T>({2, inf_v, 5})) == idx({1}));
  // The statistic is the floor max - tau.
  const auto st = sf::threshold(0.5).row_statistic(head_slice{0, 0, 1, 5}, 0, s.data());
  CHECK(st.floor == T(2.5));
}

TEST_CASE_TEMPLATE("threshold: random integer rows, the max is kept and dispersion <= tau", T,
                   float, double) {
  std::mt19937_64 gen(5);
  std::uniform_int_distribution<int> val(-8, 8);
  index_t bad = 0;
  for (int r = 0; r < 500; ++r) {
    const auto n = static_cast<index_t>(1 + gen() % 20);
    const int tau = static_cast<int>(gen() % 6);
    std::vector<T> s;
    for (index_t j = 0; j < n; ++j) s.push_back(gen() % 7 == 0 ? T(nan_v) : T(val(gen)));
    const auto got = row_kept(sf::threshold(tau), s);
    double mx = -inf_v;
    bool any = false;
    for (T x : s)
      if (!std::isnan(x)) mx = std::max(mx, double(x)), any = true;
    std::vector<index_t> expect;
    for (index_t j = 0; j < n; ++j)
      if (!std::isnan(at(s, j)) && double(at(s, j)) >= mx - tau) expect.push_back(j);
    bad += got != expect ? 1 : 0;
    if (any) {
      CHECK_FALSE(got.empty());
      double lo = inf_v, hi = -inf_v;
      for (index_t j : got)
        lo = std::min(lo, double(at(s, j))), hi = std::max(hi, double(at(s, j)));
      CHECK(hi == mx);
      CHECK(hi - lo <= double(tau));
    } else {
      CHECK(got.empty());
    }
  }
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("absolute_threshold(tau): s >= tau, may keep nothing", T, float, double) {
  const auto s = row_of<T>({-1, 0.5, 2, nan_v, 0.25});
  CHECK(elem_kept(sf::absolute_threshold(0.5), s) == idx({1, 2}));
  CHECK(elem_kept(sf::absolute_threshold(0.25), s) == idx({1, 2, 4}));
  CHECK(elem_kept(sf::absolute_threshold(3), s).empty());
  CHECK(elem_kept(sf::absolute_threshold(-1), s) == idx({0, 1, 2, 4}));
  CHECK(elem_kept(sf::absolute_threshold(-1e300), s) == idx({0, 1, 2, 4}));
  CHECK(elem_kept(sf::absolute_threshold(0), row_of<T>({-0.0, 0.0, -1e-3})) == idx({0, 1}));
  CHECK(elem_kept(sf::absolute_threshold(5), row_of<T>({inf_v, -inf_v, nan_v, 5})) == idx({0, 3}));
  CHECK(elem_kept(sf::absolute_threshold(0), row_of<T>({nan_v, nan_v})).empty());
}

// =============================================================================================
// classify_tile.

namespace {

struct tile_report {
  index_t tiles = 0, bad = 0, all = 0, none = 0, partial = 0, inexact = 0, missed_none = 0;
  std::string first_bad;
};

/// Checks classify on every tile of a tq x tk grid (origin at (oi, oj), clipped to the slice).
template <class P>
void classify_grid(const P& p, const head_slice& hs, index_t tq, index_t tk, index_t oi, index_t oj,
                   tile_report& rep) {
  for (index_t i0 = oi; i0 < hs.n_q; i0 += tq)
    for (index_t j0 = oj; j0 < hs.n_k; j0 += tk) {
      const tile t{i0, std::min(i0 + tq, hs.n_q), j0, std::min(j0 + tk, hs.n_k)};
      const tile_kind kind = sf::classify_tile(p, hs, t);
      index_t kept = 0;
      for (index_t i = t.i0; i < t.i1; ++i)
        for (index_t j = t.j0; j < t.j1; ++j) kept += fixed_keep(p, hs, i, j) ? 1 : 0;
      const index_t area = (t.i1 - t.i0) * (t.j1 - t.j0);
      ++rep.tiles;
      const bool wrong = (kind == tile_kind::all_kept && kept != area) ||
                         (kind == tile_kind::none_kept && kept != 0);
      const tile_kind exact = kept == 0      ? tile_kind::none_kept
                              : kept == area ? tile_kind::all_kept
                                             : tile_kind::partial;
      rep.inexact += kind != exact ? 1 : 0;
      rep.missed_none += (kept == 0 && kind != tile_kind::none_kept) ? 1 : 0;
      rep.all += kind == tile_kind::all_kept ? 1 : 0;
      rep.none += kind == tile_kind::none_kept ? 1 : 0;
      rep.partial += kind == tile_kind::partial ? 1 : 0;
      if (wrong && rep.bad++ == 0) {
        std::ostringstream os;
        os << "slice " << hs.n_q << "x" << hs.n_k << " tile rows [" << t.i0 << ", " << t.i1
           << ") keys [" << t.j0 << ", " << t.j1 << ") classified "
           << (kind == tile_kind::all_kept ? "all_kept" : "none_kept") << " but " << kept << " of "
           << area << " kept";
        rep.first_bad = os.str();
      }
    }
}

enum class tightness { consistent, none_exact, exact };

/// Every tile size in {1, 2, 3, 4, 7, n} (rows and keys independently), aligned grids, plus
/// unaligned grids for the small sizes. Returns the report. `exact` also requires classify to
/// be the exact kind of every tile; `none_exact` that every tile keeping nothing is none_kept.

template <class P>
tile_report check_classify(const P& p, const char* name, const head_slice& hs, tightness tight) {
  tile_report rep;
  const index_t sizes_q[] = {1, 2, 3, 4, 7, hs.n_q};
  const index_t sizes_k[] = {1, 2, 3, 4, 7, hs.n_k};
  for (index_t tq : sizes_q)
    for (index_t tk : sizes_k) {
      classify_grid(p, hs, tq, tk, 0, 0, rep);
      if (tq <= 4 && tk <= 4 && tq > 1 && tk > 1)
        for (index_t oi = 1; oi < tq; ++oi)
          for (index_t oj = 1; oj < tk; ++oj) classify_grid(p, hs, tq, tk, oi, oj, rep);
    }
  INFO(name, " on ", hs.n_q, "x", hs.n_k, ": ", rep.first_bad);
  CHECK(rep.tiles > 0);
  CHECK(rep.bad == 0);
  if (tight == tightness::exact) CHECK(rep.inexact == 0);
  if (tight != tightness::consistent) CHECK(rep.missed_none == 0);
  return rep;
}

}  // namespace

TEST_CASE("classify_tile is consistent with keep for every fixed mask") {
  const head_slice shapes[] = {{0, 1, 1, 1},  {0, 1, 5, 5},   {1, 0, 12, 12}, {0, 1, 7, 13},
                               {0, 0, 13, 7}, {1, 1, 16, 16}, {0, 2, 17, 9},  {0, 0, 9, 17}};
  for (const head_slice& hs : shapes) {
    const index_t n_k = hs.n_k, n_min = std::min(hs.n_q, hs.n_k);
    check_classify(sf::dense{}, "dense", hs, tightness::exact);
    check_classify(sf::causal{}, "causal", hs, tightness::exact);
    for (index_t k : {index_t{1}, index_t{3}, std::min<index_t>(5, n_k), n_k})
      if (k <= n_k) check_classify(sf::banded(k), "banded", hs, tightness::exact);
    for (index_t k : {1, 3, 5})
      check_classify(sf::block_local(k), "block_local", hs, tightness::exact);
    check_classify(sf::strided(1), "strided(1)", hs, tightness::exact);
    check_classify(sf::strided(3), "strided(3)", hs, tightness::none_exact);
    check_classify(sf::strided(3, 1), "strided(3, 1)", hs, tightness::none_exact);
    check_classify(sf::strided(2, 2), "strided(2, 2)", hs, tightness::none_exact);
    check_classify(sf::strided(5, 3), "strided(5, 3)", hs, tightness::none_exact);
    for (index_t g : {1, 3}) {
      if (g > n_min) continue;
      for (index_t k : {1, 3})
        if (k <= n_k - g) {
          check_classify(sf::global_tokens(sf::banded(k), g), "banded + G", hs, tightness::exact);
          check_classify(sf::global_tokens(sf::block_local(k), g), "block_local + G", hs,
                         tightness::exact);
        }
    }
    check_classify(sf::random_k(std::min<index_t>(3, n_k), 7), "random_k", hs,
                   tightness::consistent);
    const auto all = check_classify(sf::random_k(n_k, 7), "random_k(n_k)", hs, tightness::exact);
    CHECK(all.all == all.tiles);
    const auto up =
        check_classify(user::same_parity{}, "user::same_parity", hs, tightness::consistent);
    CHECK(up.partial == up.tiles);  // no classify member: always partial
  }
}

TEST_CASE("classify_tile: the promised skipping") {
  SUBCASE("dense non-causal: every tile all_kept") {
    const auto rep =
        check_classify(sf::dense{}, "dense", head_slice{0, 0, 37, 23}, tightness::exact);
    CHECK(rep.all == rep.tiles);
  }
  SUBCASE("causal, square aligned tiles: below all, diagonal partial, above none") {
    const head_slice hs{0, 0, 64, 64};
    for (index_t bi = 0; bi < 4; ++bi)
      for (index_t bj = 0; bj < 4; ++bj) {
        const tile t{16 * bi, 16 * bi + 16, 16 * bj, 16 * bj + 16};
        const tile_kind expect = bj < bi    ? tile_kind::all_kept
                                 : bj == bi ? tile_kind::partial
                                            : tile_kind::none_kept;
        CHECK(sf::classify_tile(sf::causal{}, hs, t) == expect);
      }
  }
  SUBCASE("banded(8), n = 256, 16 x 16 tiles: at most 3 tiles per row block are visited") {
    const sf::banded p(8);
    const head_slice hs{0, 0, 256, 256};
    index_t visited = 0;
    for (index_t bi = 0; bi < 16; ++bi) {
      index_t row_visited = 0;
      for (index_t bj = 0; bj < 16; ++bj) {
        const tile t{16 * bi, 16 * bi + 16, 16 * bj, 16 * bj + 16};
        row_visited += sf::classify_tile(p, hs, t) != tile_kind::none_kept ? 1 : 0;
      }
      INFO("row block ", bi);
      CHECK(row_visited >= 1);
      CHECK(row_visited <= 3);
      visited += row_visited;
    }
    CHECK(visited <= 3 * 16);  // O(n k) work, not O(n^2) = 256 tiles
    check_classify(p, "banded(8)", hs, tightness::exact);
  }
  SUBCASE("block_local(16), 16-aligned tiles: one all_kept tile per row block, no partial") {
    for (index_t n : {256, 100}) {
      const sf::block_local p(16);
      const head_slice hs{0, 0, n, n};
      const index_t blocks = (n + 15) / 16;
      for (index_t bi = 0; bi < blocks; ++bi) {
        index_t all = 0, partial = 0;
        for (index_t bj = 0; bj < blocks; ++bj) {
          const tile t{16 * bi, std::min(16 * bi + 16, n), 16 * bj, std::min(16 * bj + 16, n)};
          const tile_kind kind = sf::classify_tile(p, hs, t);
          all += kind == tile_kind::all_kept ? 1 : 0;
          partial += kind == tile_kind::partial ? 1 : 0;
          if (kind == tile_kind::all_kept) CHECK(bj == bi);
        }
        INFO("n ", n, " row block ", bi);
        CHECK(all == 1);
        CHECK(partial == 0);
      }
    }
  }
  SUBCASE("global tokens: tiles inside the global rows or columns are all_kept") {
    const auto p = sf::global_tokens(sf::banded(3), 4);
    const head_slice hs{0, 0, 20, 20};
    CHECK(sf::classify_tile(p, hs, tile{16, 20, 0, 8}) == tile_kind::all_kept);
    CHECK(sf::classify_tile(p, hs, tile{0, 8, 16, 20}) == tile_kind::all_kept);
    CHECK(sf::classify_tile(p, hs, tile{0, 4, 10, 14}) == tile_kind::none_kept);
    CHECK(sf::classify_tile(p, hs, tile{0, 4, 12, 20}) == tile_kind::partial);
  }
}

// =============================================================================================
// Parameter checks.

TEST_CASE("constructors reject bad parameters, naming the policy and the parameter") {
  struct expect {
    std::string message;
    const char* policy;
    const char* parameter;
  };
  const std::vector<expect> cases = {
      {semfocus::test::error_message([] { (void)sf::top_k(0); }), "top_k", "k must"},
      {semfocus::test::error_message([] { (void)sf::top_k(-3); }), "top_k", "k must"},
      {semfocus::test::error_message([] { (void)sf::bottom_k(-1); }), "bottom_k", "k must"},
      {semfocus::test::error_message([] { (void)sf::banded(0); }), "banded", "k must"},
      {semfocus::test::error_message([] { (void)sf::block_local(0); }), "block_local", "k must"},
      {semfocus::test::error_message([] { (void)sf::strided(0); }), "strided", "stride must"},
      {semfocus::test::error_message([] { (void)sf::strided(2, -1); }), "strided", "local must"},
      {semfocus::test::error_message([] { (void)sf::random_k(0, 1); }), "random_k", "k must"},
      {semfocus::test::error_message([] { (void)sf::threshold(-1); }), "threshold", "tau"},
      {semfocus::test::error_message([] { (void)sf::threshold(nan_v); }), "threshold", "tau"},
      {semfocus::test::error_message([] { (void)sf::threshold(inf_v); }), "threshold", "tau"},
      {semfocus::test::error_message([] { (void)sf::absolute_threshold(inf_v); }),
       "absolute_threshold", "tau"},
      {semfocus::test::error_message([] { (void)sf::absolute_threshold(-inf_v); }),
       "absolute_threshold", "tau"},
      {semfocus::test::error_message([] { (void)sf::absolute_threshold(nan_v); }),
       "absolute_threshold", "tau"},
      {semfocus::test::error_message([] { (void)sf::global_tokens(sf::banded(3), -1); }),
       "with_global", "global tokens"},
  };
  for (const expect& c : cases) {
    INFO("message: ", c.message);
    CHECK(contains(c.message, c.policy));
    CHECK(contains(c.message, c.parameter));
  }
  CHECK_THROWS_AS(static_cast<void>(sf::top_k(0)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::bottom_k(-1)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::banded(0)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::block_local(0)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::strided(0)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::strided(2, -1)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::random_k(0, 1)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::threshold(-1)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::threshold(nan_v)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::threshold(inf_v)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::absolute_threshold(inf_v)), sf::invalid_argument);
  CHECK_THROWS_AS(static_cast<void>(sf::global_tokens(sf::banded(3), -1)), sf::invalid_argument);
  // A semfocus::invalid_argument is a std::invalid_argument.
  CHECK_THROWS_AS(static_cast<void>(sf::top_k(0)), std::invalid_argument);
  // Valid edge values are accepted.
  CHECK_NOTHROW(static_cast<void>(sf::top_k(1)));
  CHECK_NOTHROW(static_cast<void>(sf::strided(1, 0)));
  CHECK_NOTHROW(static_cast<void>(sf::threshold(0)));
  CHECK_NOTHROW(static_cast<void>(sf::absolute_threshold(-5)));
  CHECK_NOTHROW(static_cast<void>(sf::global_tokens(sf::banded(3), 0)));
}

TEST_CASE("validate rejects k > n_k and G > n") {
  auto shape = [](index_t n_q, index_t n_k) { return attention_shape{2, 2, n_q, n_k, 8, 8}; };
  auto rejects = [&](const auto& p, const attention_shape& s, const char* name) {
    INFO(name, " on ", s);
    CHECK_THROWS_AS(p.validate(s), sf::invalid_argument);
    CHECK_THROWS_AS(static_cast<void>(sf::validate_policy(p, s)), sf::invalid_argument);
    CHECK(contains(semfocus::test::error_message([&] { p.validate(s); }), name));
  };
  auto accepts = [&](const auto& p, const attention_shape& s) {
    INFO("shape ", s);
    CHECK_NOTHROW(p.validate(s));
    CHECK_NOTHROW(sf::validate_policy(p, s));
  };
  rejects(sf::top_k(5), shape(8, 4), "top_k");
  accepts(sf::top_k(5), shape(2, 5));
  rejects(sf::bottom_k(5), shape(8, 4), "bottom_k");
  accepts(sf::bottom_k(5), shape(9, 5));
  rejects(sf::banded(5), shape(8, 4), "banded");
  accepts(sf::banded(5), shape(3, 5));
  rejects(sf::random_k(5, 1), shape(8, 4), "random_k");
  accepts(sf::random_k(5, 1), shape(8, 5));
  // Global tokens: G <= min(n_q, n_k), and the inner mask must fit the reduced shape.
  rejects(sf::global_tokens(sf::banded(2), 5), shape(4, 8), "with_global");
  rejects(sf::global_tokens(sf::banded(2), 5), shape(8, 4), "with_global");
  rejects(sf::global_tokens(sf::block_local(2), 9), shape(8, 8), "with_global");
  accepts(sf::global_tokens(sf::banded(2), 5), shape(8, 8));
  accepts(sf::global_tokens(sf::block_local(4), 8), shape(8, 8));
  rejects(sf::global_tokens(sf::banded(4), 5), shape(8, 8), "banded");  // inner n_k = 3 < 4
  accepts(sf::global_tokens(sf::banded(3), 5), shape(8, 8));
  // Policies without validate are accepted by validate_policy.
  CHECK_NOTHROW(sf::validate_policy(sf::dense{}, shape(3, 4)));
  CHECK_NOTHROW(sf::validate_policy(user::same_parity{}, shape(3, 4)));
}

TEST_CASE("threshold with a tau beyond float's range keeps the max and never -inf") {
  const semfocus::threshold p(3.5e38);  // finite as a double, +inf as a float
  const semfocus::head_slice hs{0, 0, 1, 4};
  const float inf = std::numeric_limits<float>::infinity();
  const float with_inf[4] = {1.0f, inf, 2.0f, -inf};
  const auto st = p.row_statistic(hs, 0, with_inf);
  CHECK(st.keep(1, inf));  // the max is kept: the floor is +inf, not NaN
  CHECK(!st.keep(0, 1.0f));
  const float finite[4] = {1.0f, 3.0f, 2.0f, -inf};
  const auto st2 = p.row_statistic(hs, 0, finite);
  CHECK(st2.keep(0, 1.0f));  // max - tau rounds below float's range: every finite score kept
  CHECK(st2.keep(1, 3.0f));
  CHECK(!st2.keep(3, -inf));  // but -inf is not kept
}
