// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "support/tensors.hpp"

namespace semfocus::test {

/// \brief kept(b, h, i, j, scores_of_row_i) -> bool: a mask written in the test, independently of
/// the library's policy code.
using mask_fn = std::function<bool(index_t, index_t, index_t, index_t, const std::vector<double>&)>;

/// \brief The plain dense-with-mask formula in long double: S = scale Q K^T, P = softmax of S over
/// the kept set (0 elsewhere, a row with nothing kept is 0), O = P V. Returns O (and P if asked,
/// as [batch, heads, n_q, n_k]).
template <class T>
tensor<double> masked_attention(const problem<T>& pr, double scale, const mask_fn& kept,
                                tensor<double>* probabilities = nullptr) {
  const attention_shape& s = pr.shape;
  tensor<double> out(s.out());
  if (probabilities) *probabilities = tensor<double>({s.batch, s.heads, s.n_q, s.n_k});
  std::vector<double> row(static_cast<std::size_t>(s.n_k));
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        test_scores(pr, b, h, i, scale, row);
        long double mx = -INFINITY, z = 0;
        for (index_t j = 0; j < s.n_k; ++j)
          if (kept(b, h, i, j, row) && row[std::size_t(j)] > mx) mx = row[std::size_t(j)];
        for (index_t j = 0; j < s.n_k; ++j)
          if (kept(b, h, i, j, row)) z += std::exp(row[std::size_t(j)] - mx);
        for (index_t j = 0; j < s.n_k; ++j) {
          const long double p =
              (z > 0 && kept(b, h, i, j, row)) ? std::exp(row[std::size_t(j)] - mx) / z : 0.0L;
          if (probabilities) (*probabilities)(b, h, i, j) = static_cast<double>(p);
          for (index_t c = 0; c < s.d_v; ++c)
            out(b, h, i, c) += static_cast<double>(p * pr.v(b, h, j, c));
        }
      }
  return out;
}

/// \brief Largest |a - b| / (1 + |b|) over two equally long arrays.
template <class A, class B>
double max_rel_diff(const std::vector<A>& a, const std::vector<B>& b) {
  double worst = 0;
  for (std::size_t x = 0; x < a.size() && x < b.size(); ++x) {
    const double d = std::abs(double(a[x]) - double(b[x])) / (1.0 + std::abs(double(b[x])));
    if (!(d <= worst)) worst = d;  // NaN propagates as the worst
  }
  return a.size() == b.size() ? worst : INFINITY;
}

}  // namespace semfocus::test
