// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <type_traits>

#include "semfocus/config.hpp"
#include "semfocus/detail/numeric.hpp"

namespace semfocus::detail {

/// \brief Result of select_rank: the k-th best score and the index of the last kept tie.
template <class T>
struct rank_result {
  T value;
  index_t last;
};

/// \brief The k-th largest of a multiset of unsigned keys, visited by for_each(f) (f(u) for every
/// key), by an MSB-first radix selection, 8 bits per pass. Returns the key and how many of its
/// ties rank within the first k (1 <= rank). Requires 1 <= k <= the number of keys.
template <class U, class ForEach>
SEMFOCUS_HD rank_result<U> radix_kth(const ForEach& for_each, index_t k) noexcept {
  constexpr int bits = 8 * int(sizeof(U));
  U prefix = 0;      // the digits of the k-th key chosen so far, in its top `done` bits
  index_t rank = k;  // rank of the k-th key among keys that share the prefix
  for (int done = 0; done < bits; done += 8) {
    const int shift = bits - done - 8;
    std::uint32_t count[256] = {};  // < 2^32 keys
    for_each([&](U u) {
      if (done == 0 || (u >> (shift + 8)) == prefix) ++count[(u >> shift) & 0xff];
    });
    int digit = 255;
    for (; digit > 0 && index_t(count[digit]) < rank; --digit) rank -= index_t(count[digit]);
    prefix = U((prefix << 8) | U(digit));
  }
  return {prefix, rank};
}

/// \brief order_key(x), complemented when smaller is better, and 0 for NaN (below every number,
/// whose keys are >= 2^(bits - 9) - 1): branch-free, so the group pass vectorises.
template <bool Largest, class T>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE bits_t<T> rank_key(T x) noexcept {
  using U = bits_t<T>;
  using S = std::make_signed_t<U>;
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  const U u = x == T(0) ? U(0) : bit_cast<U>(x);  // -0 == +0
  const U flip = U(S(u) >> (8 * sizeof(U) - 1)) | sign;
  const U k = Largest ? U(u ^ flip) : U(~(u ^ flip));
  return x != x ? U(0) : k;
}

/// \brief Exact k-th best of n scores (k >= 1): the value and the index of the last kept tie
/// (ties are kept in index order). NaN never counts.
/// Pass 1 takes the best key of each of at most 256 groups of consecutive scores. For small k, the
/// k-th best group best t (with at least 4k groups) is a lower bound of the answer (k groups, hence
/// k scores, reach t), so the answer is the k-th best among the keys >= t, which lie in the groups
/// whose best is >= t; those keys are gathered (when at most 512) and radix-selected. Otherwise, or
/// when the filter keeps too many, a radix selection over all n. The tie cut-off is found in the
/// groups whose best reaches the answer. Cost O(n): one full pass plus a fraction on the fast path
/// (4 to 8 full passes otherwise); 3 KiB of stack (6 KiB for double), no allocation, deterministic;
/// runs on host and device. Fewer than k non-NaN scores: returns the cut that keeps every
/// non-NaN score.
template <bool Largest, class T>
SEMFOCUS_HD rank_result<T> select_rank(const T* s, index_t n, index_t k) noexcept {
  using U = bits_t<T>;
  constexpr index_t groups = 256, cap = 512;
  // At most 256 groups of g consecutive scores, g a multiple of 8 when above 4, scanned in
  // blocks of 8 so that the compiler vectorises the pass.
  U best[groups] = {};
  index_t g = (n + groups - 1) / groups;
  if (g > 4) g = (g + 7) / 8 * 8;
  const index_t ng = (n + g - 1) / g;
  index_t finite = 0;
  for (index_t gi = 0; gi < ng; ++gi) {
    const index_t j0 = gi * g, j1 = j0 + g < n ? j0 + g : n;
    U m = 0;
    std::uint32_t f = 0;
    index_t j = j0;
    for (; j + 8 <= j1; j += 8)
      for (int x = 0; x < 8; ++x) {
        const U u = rank_key<Largest>(s[j + x]);
        m = u > m ? u : m;
        f += std::uint32_t(u != 0);
      }
    for (; j < j1; ++j) {
      const U u = rank_key<Largest>(s[j]);
      m = u > m ? u : m;
      f += std::uint32_t(u != 0);
    }
    best[gi] = m;
    finite += index_t(f);
  }
  if (finite <= k) return {Largest ? -infinity<T>() : infinity<T>(), n};

  rank_result<U> kth{0, 0};
  if (k <= ng / 4) {
    const U t = radix_kth<U>(
                    [&](auto f) {
                      for (index_t gi = 0; gi < ng; ++gi) f(best[gi]);
                    },
                    k)
                    .value;
    U cand[cap];
    index_t c = 0;
    for (index_t gi = 0; gi < ng && c <= cap && t != 0; ++gi) {
      if (best[gi] < t) continue;
      const index_t j0 = gi * g, j1 = j0 + g < n ? j0 + g : n;
      for (index_t j = j0; j < j1; ++j) {
        const U u = rank_key<Largest>(s[j]);
        if (u >= t) {
          if (c < cap) cand[c] = u;
          ++c;
        }
      }
    }
    if (t != 0 && c <= cap)
      kth = radix_kth<U>(
          [&](auto f) {
            for (index_t x = 0; x < c; ++x) f(cand[x]);
          },
          k);
  }
  if (kth.value == 0)
    kth = radix_kth<U>(
        [&](auto f) {
          for (index_t j = 0; j < n; ++j)
            if (const U u = rank_key<Largest>(s[j]); u != 0) f(u);
        },
        k);
  // kth.value is the k-th key; the first kth.last of its ties (in index order) are kept.
  index_t rank = kth.last;
  for (index_t gi = 0; gi < ng; ++gi) {
    if (best[gi] < kth.value) continue;
    const index_t j0 = gi * g, j1 = j0 + g < n ? j0 + g : n;
    for (index_t j = j0; j < j1; ++j)
      if (rank_key<Largest>(s[j]) == kth.value && --rank == 0) return {s[j], j};
  }
  return {s[0], 0};  // unreachable: the k-th key occurs
}

}  // namespace semfocus::detail
