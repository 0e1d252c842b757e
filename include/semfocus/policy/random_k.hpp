// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include "semfocus/core/error.hpp"
#include "semfocus/detail/numeric.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief Input-agnostic random selection: each row (b, h, i) keeps exactly k distinct keys, a
/// pseudo-random subset fixed by (seed, b, h, i). Key j is kept when pi(j) < k, where pi is a
/// pseudo-random permutation of [0, n_k): an 8-round Feistel network over the smallest
/// power-of-four domain >= n_k, cycle-walked back into range (expected <= 4 steps, O(1) per key,
/// no state). Our choice: the paper's code draws k indices with replacement at every call;
/// this one is reproducible from the seed and keeps exactly k. Requires 1 <= k <= n_k.
struct random_k {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = true;

  index_t k = 1;
  std::uint64_t seed = 0;

  /// \throws invalid_argument if k < 1.
  random_k(index_t k_, std::uint64_t seed_) : k(k_), seed(seed_) {
    detail::require(k >= 1, "semfocus::random_k: k must be >= 1, got ", k);
  }

  /// \throws invalid_argument unless 1 <= k <= n_k.
  void validate(const attention_shape& s) const {
    detail::require(k >= 1 && k <= s.n_k,
                    "semfocus::random_k: k must be in [1, n_k] with n_k = ", s.n_k, ", got ", k);
  }

  /// \brief pi(j) for row (hs.batch, hs.head, i): a bijection of [0, n_k).
  SEMFOCUS_HD constexpr index_t permute(const head_slice& hs, index_t i, index_t j) const noexcept {
    using detail::mix64;
    const std::uint64_t row =
        mix64(mix64(mix64(mix64(seed) ^ std::uint64_t(hs.batch)) ^ std::uint64_t(hs.head)) ^
              std::uint64_t(i));
    int half = 1;
    while ((std::uint64_t(1) << (2 * half)) < std::uint64_t(hs.n_k)) ++half;
    const std::uint64_t mask = (std::uint64_t(1) << half) - 1;
    std::uint64_t x = std::uint64_t(j);
    do {
      std::uint64_t l = x >> half, r = x & mask;
      for (std::uint64_t round = 0; round < 8; ++round) {
        const std::uint64_t f = mix64(row + round * 0x9e3779b97f4a7c15ull + r) & mask;
        const std::uint64_t next_r = l ^ f;
        l = r;
        r = next_r;
      }
      x = (l << half) | r;
    } while (x >= std::uint64_t(hs.n_k));
    return index_t(x);
  }

  /// \brief Whether key j of row i is kept; O(1) expected.
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const head_slice& hs, index_t i, index_t j, T) const noexcept {
    return permute(hs, i, j) < k;
  }

  /// \brief All kept when k = n_k, else partial.
  SEMFOCUS_HD constexpr tile_kind classify(const head_slice& hs, const tile&) const noexcept {
    return k >= hs.n_k ? tile_kind::all_kept : tile_kind::partial;
  }

  friend constexpr bool operator==(const random_k&, const random_k&) = default;
};

}  // namespace semfocus
