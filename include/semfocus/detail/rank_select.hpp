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

/// \brief The k-th largest of a[0, c) (1 <= k <= c) and how many of its ties rank within the
/// first k, by a three-way quickselect (median-of-three pivots) that reorders a. Expected
/// O(c) comparisons; used on small buffers, where a histogram pass is slowed by its counters.
template <class U>
SEMFOCUS_HD rank_result<U> quick_kth(U* a, index_t c, index_t k) noexcept {
  index_t lo = 0, hi = c - 1;
  const index_t target = k - 1;
  U kth = a[0];
  while (true) {
    if (lo >= hi) {
      kth = a[lo];
      break;
    }
    const U x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
    const U pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    index_t lt = lo, i = lo, gt = hi;  // [lo, lt) > pivot, [lt, i) == pivot, (gt, hi] < pivot
    while (i <= gt) {
      const U v = a[i];
      if (v > pivot) {
        a[i++] = a[lt];
        a[lt++] = v;
      } else if (v < pivot) {
        a[i] = a[gt];
        a[gt--] = v;
      } else {
        ++i;
      }
    }
    if (target < lt) {
      hi = lt - 1;
    } else if (target > gt) {
      lo = gt + 1;
    } else {
      kth = pivot;
      break;
    }
  }
  index_t greater = 0;
  for (index_t x = 0; x < c; ++x) greater += a[x] > kth ? 1 : 0;
  return {kth, k - greater};
}

/// \brief order_key(x), complemented when smaller is better, and 0 for NaN (below every number,
/// whose keys are >= 2^(bits - 9) - 1): masks instead of branches, so the group pass
/// vectorises.
template <bool Largest, class T>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE bits_t<T> rank_key(T x) noexcept {
  using U = bits_t<T>;
  using S = std::make_signed_t<U>;
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  constexpr U inf_bits = sizeof(U) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  U u = bit_cast<U>(x);
  const U magnitude = u & U(~sign);
  u &= U(U(0) - U(magnitude != 0));  // -0 == +0
  const U k = u ^ U(U(S(u) >> (8 * sizeof(U) - 1)) | sign);
  return U(Largest ? k : U(~k)) & U(U(0) - U(magnitude <= inf_bits));  // NaN -> 0
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
  // At most 256 groups of g consecutive scores (g a multiple of 8 when above 4); the key is
  // integer arithmetic only, so that the compiler vectorises this pass.
  U best[groups] = {};
  index_t g = (n + groups - 1) / groups;
  if (g > 4) g = (g + 7) / 8 * 8;
  const index_t ng = (n + g - 1) / g;
  index_t finite = 0;
  for (index_t gi = 0; gi < ng; ++gi) {
    const index_t j0 = gi * g, j1 = j0 + g < n ? j0 + g : n;
    U m = 0;
    std::uint32_t f = 0;
    for (index_t j = j0; j < j1; ++j) {
      const U u = rank_key<Largest>(s[j]);
      m = m > u ? m : u;
      f += std::uint32_t(u != 0);
    }
    best[gi] = m;
    finite += index_t(f);
  }
  if (finite <= k) return {Largest ? -infinity<T>() : infinity<T>(), n};

  rank_result<U> kth{0, 0};
  if (k <= ng / 4) {
    U cand[cap];
    for (index_t gi = 0; gi < ng; ++gi) cand[gi] = best[gi];
    const U t = quick_kth<U>(cand, ng, k).value;
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
    if (t != 0 && c <= cap) kth = quick_kth<U>(cand, c, k);
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
