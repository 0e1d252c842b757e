// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <vector>

#include "semfocus/core/view.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus::backend::reference {

/// \brief s_ij = T(scale * sum_c q_ic k_jc), the sum accumulated in double with std::fma in index
/// order: one deterministic formula, so forward and backward see bit-identical scores.
template <class T>
T score(const T* q, const T* k, index_t d, double scale) noexcept {
  double acc = 0;
  for (index_t c = 0; c < d; ++c)
    acc = std::fma(static_cast<double>(q[c]), static_cast<double>(k[c]), acc);
  return static_cast<T>(scale * acc);
}

/// \brief Fills s[0, n_k) with the scores of row (b, h, i).
template <class T>
void score_row(const tensor_view<const T>& q, const tensor_view<const T>& k, index_t b, index_t h,
               index_t i, double scale, std::vector<T>& s) {
  const T* qi = q.row(b, h, i);
  for (index_t j = 0; j < k.seq(); ++j)
    s[static_cast<std::size_t>(j)] = score(qi, k.row(b, h, j), q.dim(), scale);
}

}  // namespace semfocus::backend::reference
