// SPDX-License-Identifier: MIT
#pragma once

#include <vector>

#include "semfocus/backend/dispatch.hpp"
#include "semfocus/backend/reference/scores.hpp"
#include "semfocus/core/softmax.hpp"

namespace semfocus {

/// \brief Reference forward, for both localities: per row, the scores in T (scores.hpp), the
/// row statistic for a row policy, then the softmax over the kept set and P V in double.
/// Time O(batch heads n_q n_k (d + d_v)), extra memory O(n_k + d_v).
template <class Policy, class T>
requires attention_policy<Policy, T>
struct forward_impl<exec::reference_t, Policy, T> {
  static void run(const exec::reference_t&, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<T>& out, forward_record_t<Policy, T>& rec) {
    const attention_shape& sh = rec.shape;
    std::vector<T> s(static_cast<std::size_t>(sh.n_k));
    std::vector<unsigned char> kept(static_cast<std::size_t>(sh.n_k));
    std::vector<double> o(static_cast<std::size_t>(sh.d_v));
    for (index_t b = 0; b < sh.batch; ++b)
      for (index_t h = 0; h < sh.heads; ++h) {
        const head_slice hs{b, h, sh.n_q, sh.n_k};
        for (index_t i = 0; i < sh.n_q; ++i) {
          backend::reference::score_row(q, k, b, h, i, rec.scale, s);
          row_statistic_t<Policy, T> st{};
          if constexpr (row_policy<Policy, T>) st = p.row_statistic(hs, i, s.data());
          online_softmax<double> acc;
          for (index_t j = 0; j < sh.n_k; ++j) {
            kept[std::size_t(j)] = is_kept(p, hs, i, j, s[std::size_t(j)], st);
            if (kept[std::size_t(j)]) acc.add(s[std::size_t(j)]);
          }
          const double lse = acc.lse();
          std::fill(o.begin(), o.end(), 0.0);
          for (index_t j = 0; j < sh.n_k; ++j) {
            if (!kept[std::size_t(j)]) continue;
            const double pij = softmax_probability<double>(s[std::size_t(j)], lse);
            const T* vj = v.row(b, h, j);
            for (index_t c = 0; c < sh.d_v; ++c) o[std::size_t(c)] += pij * vj[c];
          }
          T* oi = out.row(b, h, i);
          for (index_t c = 0; c < sh.d_v; ++c) oi[c] = static_cast<T>(o[std::size_t(c)]);
          const index_t r = rec.row_index(b, h, i);
          rec.lse[std::size_t(r)] = lse;
          if constexpr (row_policy<Policy, T>) rec.stats[std::size_t(r)] = st;
        }
      }
  }
};

}  // namespace semfocus
