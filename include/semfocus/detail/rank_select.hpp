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
/// first k, by quickselect with median-of-three pivots and a branch-free three-way partition
/// that ping-pongs between a and tmp (both of size >= c; both are overwritten). Expected O(c);
/// used on small buffers, where a histogram pass is slowed by its counters and a branchy
/// partition by mispredictions.
template <class U>
SEMFOCUS_HD rank_result<U> quick_kth(U* a, U* tmp, index_t c, index_t k) noexcept {
  index_t n = c, target = k - 1, above = 0;  // `above`: keys known to beat the answer
  while (n > 1) {
    const U x = a[0], y = a[n / 2], z = a[n - 1];
    const U pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    // tmp[0, g) > pivot; tmp(n - 1 - l, n - 1] < pivot; n - g - l keys equal the pivot. Every key
    // is written to both cursors; only the matching one advances, the other write lands in the
    // unfilled middle.
    index_t g = 0, l = 0;
    for (index_t i = 0; i < n; ++i) {
      const U v = a[i];
      tmp[g] = v;
      tmp[n - 1 - l] = v;
      g += v > pivot ? 1 : 0;
      l += v < pivot ? 1 : 0;
    }
    const index_t e = n - g - l;
    if (target < g) {
      n = g;
    } else if (target < g + e) {
      return {pivot, k - (above + g)};
    } else {
      target -= g + e;
      above += g + e;
      tmp += n - l;
      n = l;
    }
    U* t = a;
    a = tmp;
    tmp = t;
  }
  return {a[0], k - above};
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

/// \brief select_rank for k <= 8 on the device (see below; the same result): one pass keeping the k
/// best (score, index) pairs sorted, best first, ties in index order (a later equal score goes
/// after), so that entry k - 1 is the k-th best and the last kept tie. Scores are compared as
/// numbers: the order of rank_key (-0 == +0), with NaN skipped. A score enters only when it beats
/// the current k-th: O(n + k^2 log(n / k)) expected on data in random order, O(n k) at worst;
/// registers only, but a branch per score (mispredicted often on the host).
template <bool Largest, class T>
SEMFOCUS_HD rank_result<T> select_rank_insertion(const T* s, index_t n, index_t k) noexcept {
  T best[8];
  index_t where[8], filled = 0, finite = 0;
  for (index_t j = 0; j < n; ++j) {
    const T x = s[j];
    if (is_nan(x)) continue;
    ++finite;
    if (filled == k && !(Largest ? x > best[k - 1] : x < best[k - 1])) continue;
    index_t at = filled < k ? filled++ : k - 1;  // the slot freed (the k-th leaves when full)
    for (; at > 0 && (Largest ? best[at - 1] < x : best[at - 1] > x); --at) {
      best[at] = best[at - 1];
      where[at] = where[at - 1];
    }
    best[at] = x;
    where[at] = j;
  }
  if (finite <= k) return {Largest ? -infinity<T>() : infinity<T>(), n};
  return {s[where[k - 1]], where[k - 1]};
}

/// \brief select_rank for k <= 8 and n <= 256 on the host (see below; the same result as
/// select_rank_insertion): the keys u_j = rank_key(s_j) (NaN 0), then passes from the top: pass
/// p takes m_p = max{u_j < m_(p-1)} and counts its ties, until the ties of m_p reach the rank
/// still wanted; the answer is that tie in index order. Branch-free vectorised loops (max and
/// count over n keys), at most k passes: O(n k), 2 to 3 times faster than the insertion at
/// n = 40, k = 5 (AVX2 and AVX-512); 1 KiB of stack (2 KiB for double).
template <bool Largest, class T>
SEMFOCUS_HD rank_result<T> select_rank_passes(const T* s, index_t n, index_t k) noexcept {
  using U = bits_t<T>;
  U key[256];
  index_t finite = 0;
  for (index_t j = 0; j < n; ++j) {
    key[j] = rank_key<Largest>(s[j]);
    finite += key[j] != 0 ? 1 : 0;
  }
  if (finite <= k) return {Largest ? -infinity<T>() : infinity<T>(), n};
  // All ones is above every key (+inf's is the largest: the top 9 bits), so pass 1 sees them all;
  // the answer's key is not 0 (more than k keys are), so NaN never ties with it.
  U t = U(~U(0));
  index_t rank = k;  // the rank wanted among the keys below the last pass's
  for (;;) {
    U m = 0;
    for (index_t j = 0; j < n; ++j) {
      const U below = key[j] & U(U(0) - U(key[j] < t));
      m = m < below ? below : m;
    }
    index_t ties = 0;
    for (index_t j = 0; j < n; ++j) ties += key[j] == m ? 1 : 0;
    t = m;
    if (ties >= rank) break;
    rank -= ties;
  }
  for (index_t j = 0; j < n; ++j)
    if (key[j] == t && --rank == 0) return {s[j], j};
  return {s[0], 0};  // unreachable: t has rank ties
}

/// \brief select_rank for n <= 128 (see below; the same result): every key quick-selected
/// directly, without the group pass and its histograms, whose fixed cost (two 256-entry tables
/// zeroed and scanned) dominates short rows such as the paper's n = 40. Expected O(n); 1.5 KiB of
/// stack (3 KiB for double).
template <bool Largest, class T>
SEMFOCUS_HD rank_result<T> select_rank_short(const T* s, index_t n, index_t k) noexcept {
  using U = bits_t<T>;
  U key[128], work[128], spare[128];
  index_t finite = 0;
  for (index_t j = 0; j < n; ++j) {
    key[j] = rank_key<Largest>(s[j]);
    work[j] = key[j];
    finite += index_t(key[j] != 0);
  }
  if (finite <= k) return {Largest ? -infinity<T>() : infinity<T>(), n};
  // The k-th best key is not 0 (more than k keys are), so NaN's zero keys never tie with it.
  const rank_result<U> kth = quick_kth<U>(work, spare, n, k);
  index_t rank = kth.last;
  for (index_t j = 0; j < n; ++j)
    if (key[j] == kth.value && --rank == 0) return {s[j], j};
  return {s[0], 0};  // unreachable: the k-th key occurs
}

/// \brief Exact k-th best of n scores (k >= 1): the value and the index of the last kept tie
/// (ties are kept in index order). NaN never counts.
/// Pass 1 (vectorised) takes the best key of each of at most 256 groups of consecutive scores.
/// Fast path, for k <= groups / 4: a histogram of the group bests gives t <= the k-th best
/// group best, a lower bound of the answer (k groups, hence k scores, reach t); the keys >= t
/// lie in the groups whose best is >= t, and when there are at most 512 of them they are
/// gathered with their indices and quick-selected, and the tie cut-off is read off the gathered
/// indices. Otherwise a radix selection over all n keys and a scan of the groups that reach the
/// answer. Rows of at most 256 scores go to select_rank_passes (the device:
/// select_rank_insertion) when k <= 8, other rows of at most 128 to
/// select_rank_short. Cost O(n): about one pass plus a fraction on the fast path (4 to 8 passes
/// otherwise); about 7 KiB of stack (13 KiB for double), no allocation, deterministic; runs on
/// host and device. Fewer than k non-NaN scores: returns the cut that keeps every non-NaN score.
template <bool Largest, class T>
SEMFOCUS_HD rank_result<T> select_rank(const T* s, index_t n, index_t k) noexcept {
  if (k <= 8 && n <= 256) {
#if defined(__CUDA_ARCH__)
    return select_rank_insertion<Largest>(s, n, k);
#else
    return select_rank_passes<Largest>(s, n, k);
#endif
  }
  if (n <= 128) return select_rank_short<Largest>(s, n, k);
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

  if (k <= ng / 4) {
    // t: the lower edge of the bucket holding the k-th best group best, 256 buckets spanning
    // [min, max] of the group bests (so the histogram's counters rarely collide). At least k
    // group bests, hence k scores, are >= t.
    U lo = best[0], hi = best[0];
    for (index_t gi = 1; gi < ng; ++gi) {
      lo = best[gi] < lo ? best[gi] : lo;
      hi = best[gi] > hi ? best[gi] : hi;
    }
    int shift = 0;
    while (shift < 8 * int(sizeof(U)) && ((hi - lo) >> shift) > 255) ++shift;
    std::uint32_t count[256] = {};
    for (index_t gi = 0; gi < ng; ++gi) ++count[(best[gi] - lo) >> shift];
    index_t seen = 0;
    int bucket = 255;
    for (; bucket > 0 && seen + index_t(count[bucket]) < k; --bucket)
      seen += index_t(count[bucket]);
    const U t = U(lo + (U(bucket) << shift));
    // The keys >= t (and their indices, ascending), gathered when at most `cap`.
    U cand[cap + 1], work[cap], spare[cap];
    std::uint32_t where[cap + 1];
    index_t c = 0;
    for (index_t gi = 0; gi < ng && c <= cap && t != 0; ++gi) {
      if (best[gi] < t) continue;
      const index_t j0 = gi * g, j1 = j0 + g < n ? j0 + g : n;
      for (index_t c0 = j0; c0 < j1 && c <= cap; c0 += 64) {  // keys by chunks (vectorised)
        const index_t m = j1 - c0 < 64 ? j1 - c0 : 64;
        U key[64];
        for (index_t x = 0; x < m; ++x) key[x] = rank_key<Largest>(s[c0 + x]);
        for (index_t x = 0; x < m; ++x) {  // branch-free append; slot `cap` absorbs overflow
          const index_t at = c < cap ? c : cap;
          cand[at] = key[x];
          where[at] = std::uint32_t(c0 + x);
          c += key[x] >= t ? 1 : 0;
        }
      }
    }
    if (t != 0 && c <= cap) {
      for (index_t x = 0; x < c; ++x) work[x] = cand[x];
      const rank_result<U> kth = quick_kth<U>(work, spare, c, k);
      index_t rank = kth.last;
      for (index_t x = 0; x < c; ++x)
        if (cand[x] == kth.value && --rank == 0) return {s[where[x]], index_t(where[x])};
    }
  }
  // Radix selection over all n keys, then the tie cut-off in the groups that reach the answer.
  const rank_result<U> kth = radix_kth<U>(
      [&](auto f) {
        for (index_t j = 0; j < n; ++j)
          if (const U u = rank_key<Largest>(s[j]); u != 0) f(u);
      },
      k);
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
