// SPDX-License-Identifier: MIT
// The SIMD backend's rank cuts of a vector of rows at once (backend/simd/rank_rows.hpp, used by
// the top_k / bottom_k forward) against detail::select_rank, the definition the reference
// backend uses: the same value bits and the same last kept tie, on rows with many ties, NaN,
// infinities, signed zeros and fewer than k non-NaN scores.
#if defined(SEMFOCUS_HAS_XSIMD)

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <semfocus/backend/simd/rank_rows.hpp>
#include <semfocus/detail/rank_select.hpp>

using namespace semfocus;

namespace {

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

/// Row l of a family of test rows: 0 distinct normals, 1 small integers (many ties, both zeros),
/// 2 ties and specials (NaN, +-inf, -0), 3 mostly NaN (often at most k non-NaN scores).
template <class T>
T draw(int family, std::mt19937& gen) {
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  std::normal_distribution<T> normal;
  const unsigned u = gen() % 16;
  switch (family) {
    case 0:
      return normal(gen);
    case 1:
      return T(int(u % 7) - 3) / T(2) * (u == 3 ? T(-0.0) : T(1));
    case 2:
      return u == 0 ? nan : u == 1 ? inf : u == 2 ? -inf : u == 3 ? T(-0.0) : T(int(u % 5));
    default:
      return u < 13 ? nan : T(int(u % 3));
  }
}

template <bool Largest, class T>
void check_rank_rows() {
  using R = backend::simd::rank_rows<Largest, T>;
  constexpr index_t w = R::width;
  std::mt19937 gen(Largest ? 5 : 6);
  int rows = 0, bad = 0;
  for (const index_t n : {1, 2, 5, 7, 8, 9, 16, 17, 31, 40, 63, 64, 100, 256})
    for (index_t k = 1; k <= std::min<index_t>(n, R::max_k); ++k)
      for (int family = 0; family < 4; ++family) {
        const index_t ld = (n + 7) / 8 * 8 + 8;  // padded rows, as the forward's score tiles
        std::vector<T> s(std::size_t(w * ld), T(0));
        for (index_t l = 0; l < w; ++l)
          for (index_t j = 0; j < n; ++j) s[std::size_t(l * ld + j)] = draw<T>(family, gen);
        if (family == 3) std::fill(s.begin(), s.begin() + n, std::numeric_limits<T>::quiet_NaN());
        const index_t m = 1 + index_t(gen() % std::uint32_t(w));  // lanes past m are not read back
        alignas(64) T tile[R::scratch_size(R::max_n)];
        std::vector<rank_cut<T, Largest>> cuts(static_cast<std::size_t>(w));
        R::run(s.data(), ld, m, n, k, tile, cuts.data());
        for (index_t l = 0; l < m; ++l, ++rows) {
          const auto want = detail::select_rank<Largest>(s.data() + l * ld, n, k);
          const auto got = cuts[std::size_t(l)];
          if ((!same_bits(got.value, want.value) || got.last != want.last) && bad++ < 3)
            MESSAGE("n " << n << " k " << k << " family " << family << " lane " << l << ": got ("
                         << got.value << ", " << got.last << "), want (" << want.value << ", "
                         << want.last << ")");
        }
      }
  CHECK(bad == 0);
  CHECK(rows > 300);  // 380 calls, each checking 1 to width rows
}

}  // namespace

TEST_CASE_TEMPLATE("simd rank_rows: select_rank's cut for a vector of rows at once", T, float,
                   double) {
  check_rank_rows<true, T>();
  check_rank_rows<false, T>();
}

TEST_CASE_TEMPLATE("simd rank_rows: the order key orders as the scores, NaN lowest", T, float,
                   double) {
  using R = backend::simd::rank_rows<true, T>;
  using I = typename R::I;
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> ascending = {-inf,  T(-1e30),
                                    T(-1), -std::numeric_limits<T>::denorm_min(),
                                    T(0),  std::numeric_limits<T>::denorm_min(),
                                    T(1),  T(1e30),
                                    inf};
  alignas(64) T x[R::width];
  alignas(64) I k[R::width];
  auto key = [&](T v) {
    std::fill(x, x + R::width, v);
    R::key(R::batch::load_aligned(x)).store_aligned(k);
    return k[0];
  };
  for (std::size_t i = 1; i < ascending.size(); ++i)
    CHECK(key(ascending[i - 1]) < key(ascending[i]));
  CHECK(key(T(-0.0)) == key(T(0)));
  CHECK(key(nan) == std::numeric_limits<I>::min());
  CHECK(key(-nan) == std::numeric_limits<I>::min());
  CHECK(key(nan) < key(-inf));
}

#endif
