// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "semfocus/backend/simd/forward.hpp"
#include "semfocus/backend/simd/rank_rows.hpp"

namespace semfocus {

/// \brief SIMD forward for row policies (top-k, bottom-k, threshold, user row policies): tasks
/// are (batch, head, block of 24 query rows). Pass 1 computes the rows' scores (gemm over every
/// key tile), the row statistic (for top_k and bottom_k with k <= 8 and n_k <= 256, rank_rows:
/// the cuts of a vector of rows at once, the same as the policy's) and the kept set; pass 2
/// normalises over the kept keys and forms P V over them only: when the block keeps at most a
/// quarter of its scores, the softmax and a gather of V's rows run over the kept lists, else a
/// vector softmax and a gemm with zeros at the unkept keys. When every row keeps at most
/// max(1, n_k / 4) keys, the kept sets are saved in the record (forward_record::selection), and
/// backward then touches the kept pairs only.
/// Time O(batch heads n_q n_k d) for the scores plus the statistic (O(n_k) per row for the
/// built-in policies, O(n_k k) vector operations per vector of rows with rank_rows) plus
/// O(kept d_v); memory: packed copies of K and V, O(32 n_k) scores per thread and the kept
/// lists.
template <class Policy, class T>
requires row_policy<Policy, T>
struct forward_impl<exec::simd_t, Policy, T> {
  using K = backend::simd::kernels<T>;
  static constexpr index_t bq = 24;  // a multiple of K::mr

  static void run(const exec::simd_t& ex, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<T>& out, forward_record_t<Policy, T>& rec) {
    namespace bs = backend::simd;
    const attention_shape& sh = rec.shape;
    bs::forward_operands<T> ops(sh);
    constexpr index_t bk = bs::forward_operands<T>::bk;
    // Row length: n_k padded for the vector passes and the mask's 8-byte reads (the last key
    // block's score gemm is that much narrower than bk: n_k = 40 computes 48 scores, not 64).
    const index_t nkp = ops.row_cols();
    bs::arena_layout shared, scratch;
    ops.scan(v);
    ops.plan(shared);
    // top_k and bottom_k with k <= 8 on rows of <= 256 keys: the cuts of a vector of rows at once
    using rows_cut = bs::rank_rows<bs::rank_rows_policy<Policy>::largest, T>;
    bool by_rows = false;
    if constexpr (bs::rank_rows_policy<Policy>::value)
      by_rows = p.k <= rows_cut::max_k && sh.n_k <= rows_cut::max_n;
    const index_t bqr = K::round_up(bq, K::width);  // rows of s (whole vectors of rows)
    const std::size_t s_off = scratch.take<T>(bqr * nkp), o_off = scratch.take<T>(bq * ops.dvp),
                      m_off = scratch.take<T>(bq), l_off = scratch.take<T>(bq),
                      mask_off = scratch.take<unsigned char>(bq * nkp),
                      tile_off = scratch.take<T>(by_rows ? rows_cut::scratch_size(sh.n_k) : 0),
                      cut_off = scratch.take<row_statistic_t<Policy, T>>(by_rows ? bqr : 0);
    const index_t nqb = (sh.n_q + bq - 1) / bq, tasks = ops.heads() * nqb;
    const bs::call_context ctx(ex, tasks, shared.size, scratch.size);
    std::vector<std::vector<std::uint32_t>>& lists = ctx.ws->lists;
    if (lists.size() < std::size_t(tasks)) lists.resize(std::size_t(tasks));
    // Row r's kept count goes to selection_offsets[r + 1]; prefix sums come after the tasks.
    rec.selection_offsets.assign(std::size_t(sh.rows()) + 1, 0);
    const index_t sparse_cap = std::max<index_t>(1, sh.n_k / 4);
    ctx.run(ops.heads(), [&](index_t bh, int) { ops.pack(ctx.shared, k, v, bh); });
    const T sc = T(rec.scale);
    ctx.run(tasks, [&](index_t t, int slot) {
      const bs::row_block rb(sh, t, nqb, bq);
      const index_t bh = rb.bh, b = rb.b, h = rb.h, i0 = rb.i0, mq = rb.mq;
      const head_slice& hs = rb.slice;
      void* mem = ctx.scratch(slot);
      T *s = bs::at<T>(mem, s_off), *o = bs::at<T>(mem, o_off), *m = bs::at<T>(mem, m_off),
        *l = bs::at<T>(mem, l_off);
      unsigned char* mask = bs::at<unsigned char>(mem, mask_off);
      std::vector<std::uint32_t>& kept = lists[std::size_t(t)];
      kept.clear();
      for (index_t kb = 0; kb < ops.nkb; ++kb)
        K::template gemm<false>(mq, std::min(bk, nkp - kb * bk), sh.d, q.row(b, h, i0),
                                q.strides().seq, 1, ops.kt_block(ctx.shared, bh, kb), ops.kt_lpb(),
                                s + kb * bk, nkp);
      for (index_t r = 0; r < mq; ++r) K::scale(s + r * nkp, nkp, sc);
      row_statistic_t<Policy, T>* cuts = bs::at<row_statistic_t<Policy, T>>(mem, cut_off);
      if constexpr (bs::rank_rows_policy<Policy>::value)
        if (by_rows) {
          std::fill(s + mq * nkp, s + K::round_up(mq, K::width) * nkp, T(0));
          for (index_t r0 = 0; r0 < mq; r0 += K::width)
            rows_cut::run(s + r0 * nkp, nkp, std::min(K::width, mq - r0), sh.n_k, p.k,
                          bs::at<T>(mem, tile_off), cuts + r0);
        }
      for (index_t r = 0; r < mq; ++r) {
        T* row = s + r * nkp;
        const index_t ri = rec.row_index(b, h, i0 + r);
        const row_statistic_t<Policy, T> st = by_rows ? cuts[r] : p.row_statistic(hs, i0 + r, row);
        rec.stats[std::size_t(ri)] = st;
        // The predicate over the row (a loop the compiler vectorises for the built-in
        // statistics), then the kept indices read off the mask 8 keys at a time.
        unsigned char* mrow = mask + r * nkp;
        const index_t nk = sh.n_k;  // a local: mrow (unsigned char) may alias sh
        for (index_t j = 0; j < nk; ++j) mrow[j] = st.keep(j, row[j]) ? 1 : 0;
        std::fill(mrow + sh.n_k, mrow + nkp, static_cast<unsigned char>(0));
        const std::size_t first = kept.size();
        for (index_t j0 = 0; j0 < nkp; j0 += 8) {
          std::uint64_t w;
          std::memcpy(&w, mrow + j0, sizeof w);
          for (; w != 0; w &= w - 1) kept.push_back(std::uint32_t(j0 + (std::countr_zero(w) >> 3)));
        }
        rec.selection_offsets[std::size_t(ri) + 1] = std::int64_t(kept.size() - first);
      }
      if (index_t(kept.size()) * 4 > mq * sh.n_k) {  // dense block: vector softmax and a gemm
        for (index_t r = 0; r < mq; ++r) {
          T* row = s + r * nkp;
          const unsigned char* mrow = mask + r * nkp;
          for (index_t j = 0; j < nkp; ++j) row[j] = mrow[j] ? row[j] : -detail::infinity<T>();
          m[r] = K::max(row, nkp);
          l[r] = m[r] == -detail::infinity<T>() ? T(0) : K::exp_sum(row, nkp, m[r]);
        }
        std::fill(o, o + mq * ops.dvp, T(0));  // one fma chain per entry over the key blocks
        for (index_t kb = 0; kb < ops.nkb; ++kb)
          K::template gemm<true>(mq, ops.dvp, std::min(bk, sh.n_k - kb * bk), s + kb * bk, nkp, 1,
                                 ops.v_block(ctx.shared, bh, kb), ops.vp_lpb(), o, ops.dvp);
        if (!ops.finite_v)  // keys with a non-finite V row (zeroed in vb), to the rows keeping them
          for (index_t j = 0; j < sh.n_k; ++j)
            if (!K::finite(v.row(b, h, j), sh.d_v))
              for (index_t r = 0; r < mq; ++r)
                if (mask[r * nkp + j])
                  K::axpy(o + r * ops.dvp, v.row(b, h, j), sh.d_v, s[r * nkp + j]);
      } else {  // sparse block: softmax over the kept list, then a gather of V's rows
        std::size_t x0 = 0;
        for (index_t r = 0; r < mq; ++r) {
          const T* row = s + r * nkp;
          const std::size_t x1 =
              x0 + std::size_t(rec.selection_offsets[std::size_t(rec.row_index(b, h, i0 + r)) + 1]);
          T mx = -detail::infinity<T>(), sum = 0;
          for (std::size_t x = x0; x < x1; ++x) mx = std::max(mx, row[kept[x]]);
          T* acc = o + r * ops.dvp;
          std::fill(acc, acc + ops.dvp, T(0));
          if (mx != -detail::infinity<T>())
            for (std::size_t x = x0; x < x1; ++x) {
              const T pj = std::exp(row[kept[x]] - mx);
              sum += pj;
              K::axpy(acc, v.row(b, h, index_t(kept[x])), sh.d_v, pj);
            }
          m[r] = mx;
          l[r] = sum;
          x0 = x1;
        }
      }
      bs::finish_rows(out, rec, b, h, i0, mq, o, ops.dvp, m, l);
    });
    save_selection(rec, lists, nqb, sparse_cap);
  }

 private:
  /// \brief Prefix-sums the kept counts and concatenates the task lists into the record when every
  /// row keeps at most `cap` keys; otherwise leaves no selection.
  static void save_selection(forward_record_t<Policy, T>& rec,
                             const std::vector<std::vector<std::uint32_t>>& lists, index_t nqb,
                             index_t cap) {
    std::vector<std::int64_t>& off = rec.selection_offsets;
    for (std::size_t r = 1; r < off.size(); ++r)
      if (off[r] > cap) {
        off.clear();
        rec.selection.clear();
        return;
      }
    for (std::size_t r = 1; r < off.size(); ++r) off[r] += off[r - 1];
    rec.selection.resize(std::size_t(off.back()));
    std::size_t x = 0;
    for (index_t t = 0; t < rec.shape.batch * rec.shape.heads * nqb; ++t) {
      const std::vector<std::uint32_t>& l = lists[std::size_t(t)];
      std::copy(l.begin(), l.end(), rec.selection.begin() + std::ptrdiff_t(x));
      x += l.size();
    }
  }
};

}  // namespace semfocus
