// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include "semfocus/config.hpp"
#include "semfocus/detail/numeric.hpp"

namespace semfocus::detail {

/// \brief Result of select_rank: the k-th best score and the index of the last kept tie.
template <class T>
struct rank_result {
  T value;
  index_t last;
};

/// \brief Exact k-th best of n scores (k >= 1) by an MSB-first radix selection on order_key,
/// 8 bits per pass (4 passes for float, 8 for double), then one scan for the tie cut-off.
/// Cost O(n sizeof(T)), 1 KiB of stack, no allocation, deterministic; runs on host and device.
/// Fewer than k non-NaN scores: returns the cut that keeps every non-NaN score.
template <bool Largest, class T>
SEMFOCUS_HD rank_result<T> select_rank(const T* s, index_t n, index_t k) noexcept {
  using U = bits_t<T>;
  constexpr int bits = 8 * int(sizeof(U));
  // Transformed key: larger is better in both directions.
  auto key = [](T x) -> U { return Largest ? order_key(x) : U(~order_key(x)); };
  index_t finite = 0;
  for (index_t j = 0; j < n; ++j) finite += is_nan(s[j]) ? 0 : 1;
  if (finite <= k) return {Largest ? -infinity<T>() : infinity<T>(), n};

  U prefix = 0;      // the digits of the k-th key chosen so far, in its top `done` bits
  index_t rank = k;  // rank of the k-th key among keys that share the prefix
  for (int done = 0; done < bits; done += 8) {
    const int shift = bits - done - 8;
    std::uint32_t count[256] = {};  // n < 2^32 per row
    for (index_t j = 0; j < n; ++j) {
      if (is_nan(s[j])) continue;
      const U u = key(s[j]);
      if (done == 0 || (u >> (shift + 8)) == prefix) ++count[(u >> shift) & 0xff];
    }
    int digit = 255;
    for (; digit > 0 && index_t(count[digit]) < rank; --digit) rank -= index_t(count[digit]);
    prefix = (prefix << 8) | U(digit);
  }
  // prefix is the k-th key; `rank` of its ties (in index order) are kept.
  index_t last = 0;
  for (index_t j = 0; j < n; ++j) {
    if (!is_nan(s[j]) && key(s[j]) == prefix && --rank == 0) {
      last = j;
      break;
    }
  }
  return {s[last], last};
}

}  // namespace semfocus::detail
