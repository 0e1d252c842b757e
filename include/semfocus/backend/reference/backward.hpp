// SPDX-License-Identifier: MIT
#pragma once

#include <vector>

#include "semfocus/backend/dispatch.hpp"
#include "semfocus/backend/reference/scores.hpp"
#include "semfocus/core/softmax.hpp"

namespace semfocus {

/// \brief Reference backward, for both localities, by the definitions (core/softmax.hpp):
/// P_ij = exp(s_ij - lse_i) on the forward's kept set (recomputed scores, saved statistic),
/// dP = dO V^T, D_i = sum_j P_ij dP_ij, dS = P (dP - D), dQ = scale dS K, dK = scale dS^T Q,
/// dV = P^T dO, all in double, summing over kept entries only (an unkept NaN key stays out).
/// `out` is not read (D comes from P and dP).
/// Time O(batch heads n_q n_k (d + d_v)), extra memory O(n_q n_k + n_k (d + d_v)) doubles.
template <class Policy, class T>
requires attention_policy<Policy, T>
struct backward_impl<exec::reference_t, Policy, T> {
  static void run(const exec::reference_t&, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<const T>&, const tensor_view<const T>& d_out,
                  const forward_record_t<Policy, T>& rec, const tensor_view<T>& dq,
                  const tensor_view<T>& dk, const tensor_view<T>& dv) {
    const attention_shape& sh = rec.shape;
    const auto nq = std::size_t(sh.n_q), nk = std::size_t(sh.n_k);
    std::vector<T> s(nk);
    std::vector<double> prob(nq * nk), ds(nq * nk);
    std::vector<unsigned char> kept(nq * nk);
    for (index_t b = 0; b < sh.batch; ++b)
      for (index_t h = 0; h < sh.heads; ++h) {
        const head_slice hs{b, h, sh.n_q, sh.n_k};
        for (index_t i = 0; i < sh.n_q; ++i) {
          backend::reference::score_row(q, k, b, h, i, rec.scale, s);
          const index_t r = rec.row_index(b, h, i);
          row_statistic_t<Policy, T> st{};
          if constexpr (row_policy<Policy, T>) st = rec.stats[std::size_t(r)];
          const double lse = rec.lse[std::size_t(r)];
          double* pi = prob.data() + std::size_t(i) * nk;
          double* dsi = ds.data() + std::size_t(i) * nk;
          unsigned char* ki = kept.data() + std::size_t(i) * nk;
          double row_dot = 0;  // D_i
          for (index_t j = 0; j < sh.n_k; ++j) {
            const T sij = s[std::size_t(j)];
            ki[j] = is_kept(p, hs, i, j, sij, st);
            pi[j] = ki[j] ? softmax_probability<double>(sij, lse) : 0.0;
            double dp = 0;
            if (ki[j])
              for (index_t c = 0; c < sh.d_v; ++c)
                dp += double(d_out(b, h, i, c)) * double(v(b, h, j, c));
            dsi[j] = dp;
            row_dot += pi[j] * dp;
          }
          for (index_t j = 0; j < sh.n_k; ++j) dsi[j] = softmax_backward(pi[j], dsi[j], row_dot);
        }
        gemm_rows(kept, prob, ds, q, k, d_out, b, h, rec.scale, dq, dk, dv);
      }
  }

 private:
  // dQ_i = scale sum_j dS_ij K_j;  dK_j = scale sum_i dS_ij Q_i;  dV_j = sum_i P_ij dO_i.
  static void gemm_rows(const std::vector<unsigned char>& kept, const std::vector<double>& prob,
                        const std::vector<double>& ds, const tensor_view<const T>& q,
                        const tensor_view<const T>& k, const tensor_view<const T>& d_out, index_t b,
                        index_t h, double scale, const tensor_view<T>& dq, const tensor_view<T>& dk,
                        const tensor_view<T>& dv) {
    const index_t nq = q.seq(), nk = k.seq(), d = q.dim(), dvd = d_out.dim();
    for (index_t i = 0; i < nq; ++i)
      for (index_t c = 0; c < d; ++c) {
        double acc = 0;
        for (index_t j = 0; j < nk; ++j)
          if (kept[std::size_t(i * nk + j)])
            acc += ds[std::size_t(i * nk + j)] * double(k(b, h, j, c));
        dq(b, h, i, c) = static_cast<T>(scale * acc);
      }
    for (index_t j = 0; j < nk; ++j) {
      for (index_t c = 0; c < d; ++c) {
        double acc = 0;
        for (index_t i = 0; i < nq; ++i)
          if (kept[std::size_t(i * nk + j)])
            acc += ds[std::size_t(i * nk + j)] * double(q(b, h, i, c));
        dk(b, h, j, c) = static_cast<T>(scale * acc);
      }
      for (index_t c = 0; c < dvd; ++c) {
        double acc = 0;
        for (index_t i = 0; i < nq; ++i)
          if (kept[std::size_t(i * nk + j)])
            acc += prob[std::size_t(i * nk + j)] * double(d_out(b, h, i, c));
        dv(b, h, j, c) = static_cast<T>(acc);
      }
    }
  }
};

}  // namespace semfocus
