// SPDX-License-Identifier: MIT
#pragma once

// Policies defined outside the library, as a user would write them: only the public contract
// (policy/concepts.hpp) is used, and no library header is edited to make them work.

#include <semfocus/policy/concepts.hpp>

namespace user {

/// Elementwise and input-agnostic: row i keeps the keys of the same parity as i.
struct same_parity {
  static constexpr semfocus::locality locality_kind = semfocus::locality::elementwise;
  static constexpr bool input_agnostic = true;

  template <class T>
  SEMFOCUS_HD constexpr bool keep(const semfocus::head_slice&, semfocus::index_t i,
                                  semfocus::index_t j, T) const noexcept {
    return (i - j) % 2 == 0;
  }
};

/// The row statistic of above_mean: the mean score of the row.
template <class T>
struct mean_floor {
  T mean;
  SEMFOCUS_HD constexpr bool keep(semfocus::index_t, T s) const noexcept { return s >= mean; }
};

/// A row policy: keep the scores at or above the row mean (NaN-free rows assumed).
struct above_mean {
  static constexpr semfocus::locality locality_kind = semfocus::locality::row;

  template <class T>
  SEMFOCUS_HD mean_floor<T> row_statistic(const semfocus::head_slice& hs, semfocus::index_t,
                                          const T* s) const noexcept {
    T sum = 0;
    for (semfocus::index_t j = 0; j < hs.n_k; ++j) sum += s[j];
    return {sum / static_cast<T>(hs.n_k)};
  }
};

}  // namespace user
