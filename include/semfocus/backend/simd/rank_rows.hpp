// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "semfocus/backend/simd/kernels.hpp"
#include "semfocus/policy/rank_k.hpp"

namespace semfocus::backend::simd {

/// \brief The rank cuts (rank_k::row_statistic) of `width` rows at once, one row per vector lane:
/// the same {value, last} as detail::select_rank, for k <= max_k and n <= max_n.
///
/// The rows' scores are transposed into columns (transpose_tile), each score becomes an integer
/// key that orders as the scores do for `Largest` (-0 == +0; NaN below every number), and the
/// keys of keys 0, 1, ..., n - 1 are inserted in turn into a per-lane list of the k best
/// (key, index) pairs, best first: a new key goes after the equal ones, so ties stay in index
/// order.
/// Entry k - 1 is then the k-th best score in the order (score, index ascending), that is
/// value = s[last] and last its index. A row with at most k non-NaN scores gets the cut that keeps
/// them all. O(n k) vector compares and selects per call for `width` rows, no branch on the
/// data (select_rank_passes, one row at a time, makes up to k dependent passes over the row).
template <bool Largest, class T, class A = xsimd::default_arch>
struct rank_rows {
  using K = kernels<T, A>;
  using I = std::make_signed_t<detail::bits_t<T>>;
  using batch = typename K::batch;
  using ibatch = xsimd::batch<I, A>;
  using cut = rank_cut<T, Largest>;
  static constexpr index_t width = K::width;
  static constexpr index_t max_k = 8, max_n = 256;
  static_assert(ibatch::size == batch::size);

  /// \brief Scratch (in T) of one call for rows of n scores: the transposed tile.
  static constexpr index_t scratch_size(index_t n) noexcept { return K::round_up(n, 8) * width; }

  /// \brief cuts[l] for rows l < m of s (row l at s + l ld; width rows readable, ld and the rows
  /// padded to a multiple of 8 entries), each of n scores, keeping the k best: 1 <= k <= max_k,
  /// k <= n <= max_n, m <= width. tile: scratch_size(n) T's, 64-byte aligned.
  static void run(const T* s, index_t ld, index_t m, index_t n, index_t k, T* tile,
                  cut* cuts) noexcept {
    by_k(std::make_index_sequence<max_k>(), k)(s, ld, m, n, tile, cuts);
  }

  /// \brief The order key: an integer, larger for a better score, -0 and +0 one key, NaN the
  /// smallest integer (below every score's key, so it never enters a list).
  static ibatch key(const batch& x) noexcept {
    constexpr I lowest = std::numeric_limits<I>::min(), magnitude = std::numeric_limits<I>::max();
    constexpr I inf_bits = sizeof(T) == 4 ? I(0x7f800000) : I(std::int64_t(0x7ff0000000000000));
    ibatch b = xsimd::bitwise_cast<ibatch>(x);
    b = xsimd::select(b == ibatch(lowest), ibatch(0), b);  // -0 -> +0
    // Negative scores have their magnitude bits flipped: the integers then order as the scores.
    ibatch k = b ^ xsimd::select(b < ibatch(0), ibatch(magnitude), ibatch(0));
    if constexpr (!Largest) k = ~k;
    return xsimd::select((b & ibatch(magnitude)) > ibatch(inf_bits), ibatch(lowest), k);
  }

 private:
  using select_fn = void (*)(const T*, index_t, index_t, index_t, T*, cut*) noexcept;

  /// \brief select<k> for k in [1, sizeof...(Ks)].
  template <std::size_t... Ks>
  static select_fn by_k(std::index_sequence<Ks...>, index_t k) noexcept {
    static constexpr select_fn table[] = {&select<int(Ks) + 1>...};
    return table[k - 1];
  }

  template <int Kk>
  static void select(const T* s, index_t ld, index_t m, index_t n, T* tile, cut* cuts) noexcept {
    constexpr index_t L = transpose_tile<T>::lanes;
    const index_t np = K::round_up(n, 8);
    if constexpr (width % L == 0) {
      for (index_t r0 = 0; r0 < width; r0 += L)
        for (index_t j0 = 0; j0 < np; j0 += L)
          transpose_tile<T>::copy(s + r0 * ld + j0, ld, tile + j0 * width + r0, width);
    } else {  // vectors narrower than a tile (SSE)
      for (index_t r = 0; r < width; ++r)
        for (index_t j = 0; j < n; ++j) tile[j * width + r] = s[r * ld + j];
    }
    const ibatch lowest(std::numeric_limits<I>::min()), one(1), zero(0);
    ibatch best[Kk], where[Kk], finite(0);
    for (int i = 0; i < Kk; ++i) {
      best[i] = lowest;
      where[i] = zero;
    }
    for (index_t j = 0; j < n; ++j) {
      ibatch v = key(batch::load_aligned(tile + j * width)), vj(static_cast<I>(j));
      finite += xsimd::select(v != lowest, one, zero);
      // (v, vj) enters at the first entry it beats strictly; from there down every entry moves
      // one place (the carried entry precedes the next in the list's order, ties included).
      auto up = v > best[0];
#pragma GCC unroll 8
      for (int i = 0; i < Kk; ++i) {
        if (i > 0) up = up | (v > best[i]);
        const ibatch b = best[i], w = where[i];
        best[i] = xsimd::select(up, v, b);
        where[i] = xsimd::select(up, vj, w);
        v = xsimd::select(up, b, v);
        vj = xsimd::select(up, w, vj);
      }
    }
    alignas(64) I last[width], count[width];
    where[Kk - 1].store_aligned(last);
    finite.store_aligned(count);
    for (index_t l = 0; l < m; ++l)
      cuts[l] = count[l] <= I(Kk) ? cut{Largest ? -detail::infinity<T>() : detail::infinity<T>(), n}
                                  : cut{s[l * ld + index_t(last[l])], index_t(last[l])};
  }
};

/// \brief Whether the row statistic of Policy is rank_k's cut (top_k, bottom_k), which
/// rank_rows computes for a vector of rows at once.
template <class Policy>
struct rank_rows_policy : std::false_type {
  static constexpr bool largest = true;  // unused
};
template <bool Largest>
struct rank_rows_policy<rank_k<Largest>> : std::true_type {
  static constexpr bool largest = Largest;
};

}  // namespace semfocus::backend::simd
