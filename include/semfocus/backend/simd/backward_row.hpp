// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "semfocus/backend/simd/backward.hpp"
#include "semfocus/core/error.hpp"

namespace semfocus {

/// \brief SIMD backward for row policies. With the kept sets saved by the simd forward
/// (record.selection), it touches the kept pairs only, in three deterministic phases:
/// (1) per row i, over its kept keys j: s_ij, P_ij = exp(s_ij - lse_i), dP_ij = dO_i . V_j,
/// D_i = sum_j P_ij dP_ij, dS_ij = P_ij (dP_ij - D_i) scale, dQ_i = sum_j dS_ij K_j;
/// (2) per head, the kept pairs transposed to key order (a counting sort, rows ascending);
/// (3) per key j: dK_j = sum_i dS_ij Q_i, dV_j = sum_i P_ij dO_i.
/// Time O(kept (d + d_v)) plus O(n_k) per head; memory O(kept). Without a saved selection (a
/// reference record, or rows that keep many keys) it runs the tiled backward with the saved row
/// statistics as the mask: O(n_q n_k (d + d_v)).
/// \throws invalid_argument if record.selection is inconsistent (offsets not nondecreasing from 0
/// to selection.size(), or a key index >= n_k).
template <class Policy, class T>
requires row_policy<Policy, T>
struct backward_impl<exec::simd_t, Policy, T> {
  using K = backend::simd::kernels<T>;

  static void run(const exec::simd_t& ex, const Policy&, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<const T>& out, const tensor_view<const T>& d_out,
                  const forward_record_t<Policy, T>& rec, const tensor_view<T>& dq,
                  const tensor_view<T>& dk, const tensor_view<T>& dv) {
    if (!rec.has_selection()) {
      backend::simd::tiled_backward<T>(
          ex, [](const head_slice&, const tile&) { return tile_kind::partial; },
          [&](const head_slice& hs, index_t i, index_t j, T s) {
            return rec.stats[std::size_t(rec.row_index(hs.batch, hs.head, i))].keep(j, s);
          },
          q, k, v, out, d_out, rec, dq, dk, dv);
      return;
    }
    check_selection(rec);
    sparse(ex, q, k, v, d_out, rec, dq, dk, dv);
  }

 private:
  static void check_selection(const forward_record_t<Policy, T>& rec) {
    const auto& off = rec.selection_offsets;
    bool ok = off.front() == 0 && off.back() == std::int64_t(rec.selection.size());
    for (std::size_t r = 1; ok && r < off.size(); ++r) ok = off[r] >= off[r - 1];
    for (std::uint32_t j : rec.selection) ok = ok && index_t(j) < rec.shape.n_k;
    detail::require(ok,
                    "semfocus::backward: record.selection must hold ascending offsets from 0 to "
                    "selection.size() and key indices below n_k = ",
                    rec.shape.n_k, "; it was not made by forward");
  }

  static void sparse(const exec::simd_t& ex, const tensor_view<const T>& q,
                     const tensor_view<const T>& k, const tensor_view<const T>& v,
                     const tensor_view<const T>& d_out, const forward_record_t<Policy, T>& rec,
                     const tensor_view<T>& dq, const tensor_view<T>& dk, const tensor_view<T>& dv) {
    namespace bs = backend::simd;
    constexpr index_t rows_per_task = 64, keys_per_task = 64;
    const attention_shape& sh = rec.shape;
    const index_t heads = sh.batch * sh.heads, nnz = index_t(rec.selection.size());
    const index_t nrb = (sh.n_q + rows_per_task - 1) / rows_per_task;
    const index_t nkb = (sh.n_k + keys_per_task - 1) / keys_per_task;
    bs::arena_layout shared;
    // P and dS of every kept pair (selection order); per head the key-major index: col[j] is the
    // first entry of key j in `pairs`, which holds positions into the selection, and
    // pair_row their rows.
    const std::size_t p_off = shared.take<T>(nnz), ds_off = shared.take<T>(nnz),
                      col_off = shared.take<std::int64_t>(heads * (sh.n_k + 1)),
                      pair_off = shared.take<std::int64_t>(nnz),
                      prow_off = shared.take<std::uint32_t>(nnz);
    const bs::call_context ctx(ex, std::max(heads * nrb, heads * nkb), shared.size, 0);
    T *pv = bs::at<T>(ctx.shared, p_off), *dsv = bs::at<T>(ctx.shared, ds_off);
    std::int64_t* col = bs::at<std::int64_t>(ctx.shared, col_off);
    std::int64_t* pairs = bs::at<std::int64_t>(ctx.shared, pair_off);
    std::uint32_t* pair_row = bs::at<std::uint32_t>(ctx.shared, prow_off);
    const auto& off = rec.selection_offsets;
    const T sc = T(rec.scale);

    ctx.run(heads * nrb, [&](index_t t, int) {  // (1) rows
      const index_t bh = t / nrb, b = bh / sh.heads, h = bh % sh.heads;
      const index_t i0 = (t % nrb) * rows_per_task, i1 = std::min(sh.n_q, i0 + rows_per_task);
      for (index_t i = i0; i < i1; ++i) {
        const index_t r = rec.row_index(b, h, i);
        const T lse = T(rec.lse[std::size_t(r)]);
        const T *qi = q.row(b, h, i), *gi = d_out.row(b, h, i);
        T D = 0;
        for (std::int64_t x = off[std::size_t(r)]; x < off[std::size_t(r) + 1]; ++x) {
          const index_t j = rec.selection[std::size_t(x)];
          pv[x] = std::exp(K::dot(qi, k.row(b, h, j), sh.d) * sc - lse);
          dsv[x] = K::dot(gi, v.row(b, h, j), sh.d_v);
          D += pv[x] * dsv[x];
        }
        T* dqi = dq.row(b, h, i);
        std::fill(dqi, dqi + sh.d, T(0));
        for (std::int64_t x = off[std::size_t(r)]; x < off[std::size_t(r) + 1]; ++x) {
          dsv[x] = pv[x] * (dsv[x] - D) * sc;
          K::axpy(dqi, k.row(b, h, rec.selection[std::size_t(x)]), sh.d, dsv[x]);
        }
      }
    });
    ctx.run(heads, [&](index_t bh, int) {  // (2) transpose
      const index_t b = bh / sh.heads, h = bh % sh.heads;
      std::int64_t* c = col + bh * (sh.n_k + 1);
      std::fill(c, c + sh.n_k + 1, 0);
      const std::int64_t x0 = off[std::size_t(rec.row_index(b, h, 0))];
      const std::int64_t x1 = off[std::size_t(rec.row_index(b, h, sh.n_q - 1)) + 1];
      for (std::int64_t x = x0; x < x1; ++x) ++c[rec.selection[std::size_t(x)] + 1];
      c[0] = x0;
      for (index_t j = 0; j < sh.n_k; ++j) c[j + 1] += c[j];
      // Fill in row order; c[j] advances to the end of key j's range, then is shifted back.
      const std::int64_t row0 = rec.row_index(b, h, 0);
      for (index_t i = 0; i < sh.n_q; ++i)
        for (std::int64_t x = off[std::size_t(row0 + i)]; x < off[std::size_t(row0 + i) + 1]; ++x) {
          const std::int64_t y = c[rec.selection[std::size_t(x)]]++;
          pairs[y] = x;
          pair_row[y] = std::uint32_t(i);
        }
      for (index_t j = sh.n_k; j > 0; --j) c[j] = c[j - 1];
      c[0] = x0;
    });
    ctx.run(heads * nkb, [&](index_t t, int) {  // (3) keys
      const index_t bh = t / nkb, b = bh / sh.heads, h = bh % sh.heads;
      const index_t j0 = (t % nkb) * keys_per_task, j1 = std::min(sh.n_k, j0 + keys_per_task);
      const std::int64_t* c = col + bh * (sh.n_k + 1);
      for (index_t j = j0; j < j1; ++j) {
        T *dkj = dk.row(b, h, j), *dvj = dv.row(b, h, j);
        std::fill(dkj, dkj + sh.d, T(0));
        std::fill(dvj, dvj + sh.d_v, T(0));
        for (std::int64_t y = c[j]; y < c[j + 1]; ++y) {
          const std::int64_t x = pairs[y];
          const index_t i = pair_row[y];
          K::axpy(dkj, q.row(b, h, i), sh.d, dsv[x]);
          K::axpy(dvj, d_out.row(b, h, i), sh.d_v, pv[x]);
        }
      }
    });
  }
};

}  // namespace semfocus
