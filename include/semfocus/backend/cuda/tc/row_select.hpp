// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <type_traits>

#include "semfocus/backend/cuda/tc/context.hpp"
#include "semfocus/detail/rank_select.hpp"
#include "semfocus/policy/rank_k.hpp"
#include "semfocus/policy/threshold.hpp"

// Row statistics computed by a whole warp over a row of scores in memory (the statistics pass
// of tc/forward.hpp): no per-thread array sized by the row, so long rows neither spill nor
// serialise on one thread.
//  - top_k / bottom_k: a radix selection of the k-th order key (detail::rank_key: -0 == +0,
//    NaN below every number), 8 bits per pass over a 256-bin shared-memory histogram that the
//    lanes fill with atomic adds (counts, so the order of the adds does not matter), then the
//    tie cut-off by ballots over the row in index order: exactly detail::select_rank's
//    {value, last}.
//  - threshold: the row max by a lane-strided scan and a shuffle tree (NaN skipped, as the
//    policy's own loop), then the policy's floor_of.
//  - any other row policy: its own row_statistic on lane 0.
namespace semfocus::backend::cuda::tc {

/// \brief The sum of x over the warp's lanes, by a shuffle tree.
template <kernel_context Ctx>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE std::uint32_t warp_sum(Ctx& ctx, std::uint32_t x) {
  SEMFOCUS_UNROLL
  for (int m = 16; m >= 1; m /= 2)
    x += semfocus::detail::bit_cast<std::uint32_t>(
        ctx.shfl_xor(semfocus::detail::bit_cast<float>(x), m));
  return x;
}

/// \brief The k-th best of s[0, n) and its tie cut-off (detail::select_rank's result), by the
/// warp; hist: 256 counters of shared memory owned by the warp. O(n / 32) per lane per pass,
/// 4 radix passes and one ballot pass; k in [1, n].
template <bool Largest, kernel_context Ctx>
SEMFOCUS_DEVICE semfocus::detail::rank_result<float> warp_select_rank(Ctx& ctx, const float* s,
                                                                      index_t n, index_t k,
                                                                      std::uint32_t* hist) {
  using semfocus::detail::rank_key;
  const int lane = ctx.thread() % 32;
  std::uint32_t finite = 0;
  for (index_t j = lane; j < n; j += 32) finite += rank_key<Largest>(s[j]) != 0 ? 1u : 0u;
  if (index_t(warp_sum(ctx, finite)) <= k)
    return {Largest ? -semfocus::detail::infinity<float>() : semfocus::detail::infinity<float>(),
            n};
  std::uint32_t prefix = 0;  // the k-th key's digits found so far
  index_t rank = k;          // its rank among the keys sharing them
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int x = lane; x < 256; x += 32) hist[x] = 0;
    ctx.sync_warp();
    for (index_t j = lane; j < n; j += 32) {
      const std::uint32_t u = rank_key<Largest>(s[j]);
      if (u != 0 && (shift == 24 || (u >> (shift + 8)) == prefix))
        ctx.atomic_add(hist + ((u >> shift) & 0xffu), 1u);
    }
    ctx.sync_warp();
    // Lane l holds digits 255 - 8 l down to 248 - 8 l: the lane where the count of keys with a
    // larger digit reaches rank, then the digit within it (every lane finds the same).
    std::uint32_t mine = 0, before = 0;
    SEMFOCUS_UNROLL
    for (int x = 0; x < 8; ++x) mine += hist[255 - 8 * lane - x];
    for (int x = 0; x < 8 * lane; ++x) before += hist[255 - x];
    const bool here = index_t(before) < rank && rank <= index_t(before + mine);
    const std::uint32_t who = ctx.ballot(here);
    int owner = 0;
    while (((who >> owner) & 1u) == 0) ++owner;
    std::uint32_t cum = 0;
    for (int x = 0; x < 8 * owner; ++x) cum += hist[255 - x];
    int digit = 255 - 8 * owner;
    for (; index_t(cum + hist[digit]) < rank; --digit) cum += hist[digit];
    rank -= index_t(cum);
    prefix = (prefix << 8) | std::uint32_t(digit);
    ctx.sync_warp();  // hist is cleared by the next pass
  }
  // The rank-th key equal to prefix, in index order, by ballots over chunks of 32 keys.
  for (index_t j0 = 0; j0 < n; j0 += 32) {
    const index_t j = j0 + lane;
    const std::uint32_t eq = ctx.ballot(j < n && rank_key<Largest>(s[j]) == prefix);
    int c = 0;
    for (std::uint32_t w = eq; w != 0; w &= w - 1) ++c;
    if (c >= rank) {
      std::uint32_t w = eq;
      for (index_t r = 1; r < rank; ++r) w &= w - 1;  // drop the rank - 1 earlier ties
      int at = 0;
      while (((w >> at) & 1u) == 0) ++at;
      return {s[j0 + at], j0 + at};
    }
    rank -= c;
  }
  return {s[0], 0};  // unreachable: the key occurs rank more times
}

/// \brief The max of s[0, n) by the warp, NaN skipped (-inf for none), as threshold's loop (up to
/// the sign of a zero max). O(n / 32) per lane.
template <kernel_context Ctx>
SEMFOCUS_DEVICE float warp_row_max(Ctx& ctx, const float* s, index_t n) {
  float m = -semfocus::detail::infinity<float>();
  for (index_t j = ctx.thread() % 32; j < n; j += 32) m = s[j] > m ? s[j] : m;
  SEMFOCUS_UNROLL
  for (int x = 16; x >= 1; x /= 2) {
    const float o = ctx.shfl_xor(m, x);
    m = o > m ? o : m;
  }
  return m;
}

/// \brief The statistic of row i of slice hs from its n_k scores s, by the warp: the cooperative
/// selections above for top_k, bottom_k and threshold, the policy's row_statistic on lane 0
/// otherwise. The result is valid on lane 0 (on every lane for the cooperative ones).
template <class Policy, kernel_context Ctx>
SEMFOCUS_DEVICE row_statistic_t<Policy, float> warp_row_statistic(Ctx& ctx, const Policy& p,
                                                                  const head_slice& hs, index_t i,
                                                                  const float* s,
                                                                  std::uint32_t* hist) {
  if constexpr (std::is_same_v<Policy, rank_k<true>> || std::is_same_v<Policy, rank_k<false>>) {
    constexpr bool largest = std::is_same_v<Policy, rank_k<true>>;
    const auto cut = warp_select_rank<largest>(ctx, s, hs.n_k, p.k, hist);
    return {cut.value, cut.last};
  } else if constexpr (std::is_same_v<Policy, threshold>) {
    return p.floor_of(warp_row_max(ctx, s, hs.n_k));
  } else {
    row_statistic_t<Policy, float> st{};
    if (ctx.thread() % 32 == 0) st = p.row_statistic(hs, i, s);
    return st;
  }
}

}  // namespace semfocus::backend::cuda::tc
