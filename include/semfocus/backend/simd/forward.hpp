// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "semfocus/backend/dispatch.hpp"
#include "semfocus/backend/simd/common.hpp"
#include "semfocus/detail/numeric.hpp"

namespace semfocus {
namespace backend::simd {

/// \brief Block sizes and packed operands of a forward call, shared by both localities.
/// K and V are packed per head and key block of `bk` keys as gemm's B panels (kernels::nr
/// columns each, contiguous along the reduction): the score tile of block kb is
/// gemm(Q rows, kt_block(kb)) and its P V update gemm(P, v_block(kb)) (see score_cols).
template <class T>
struct forward_operands {
  using K = kernels<T>;
  static constexpr index_t bk = 64;  // keys per tile (a multiple of K::nr)
  static_assert(bk % K::nr == 0);

  const attention_shape& sh;
  index_t nkb, dvp;
  bool finite_v = true;  // every row of V finite; else the gemm operand zeroes the others
  std::size_t kt_off = 0, vp_off = 0;

  explicit forward_operands(const attention_shape& s)
      : sh(s), nkb((s.n_k + bk - 1) / bk), dvp(K::padded(s.d_v)) {}

  index_t heads() const noexcept { return sh.batch * sh.heads; }
  index_t kt_size() const noexcept { return K::panels_size(sh.d, bk); }    // per key block
  index_t vp_size() const noexcept { return K::panels_size(bk, sh.d_v); }  // per key block
  /// Panel strides of the packed K^T and V blocks (gemm's lpb).
  index_t kt_lpb() const noexcept { return sh.d * K::nr; }
  static constexpr index_t vp_lpb() noexcept { return bk * K::nr; }

  /// \brief Scans V: a non-finite row must not reach rows that do not keep its key through
  /// 0 x NaN in the P V gemm, so the packed operand has such rows zeroed, and the keys are added
  /// back, to the rows that keep them only, by the caller (see finite_v).
  void scan(const tensor_view<const T>& v) noexcept {
    for (index_t bh = 0; bh < heads() && finite_v; ++bh)
      finite_v = K::finite_rows(v, bh / sh.heads, bh % sh.heads);
  }

  void plan(arena_layout& l) {
    kt_off = l.take<T>(heads() * nkb * kt_size());
    vp_off = l.take<T>(heads() * nkb * vp_size());
  }

  /// \brief Packs head bh of k and v into the shared arena. O(n_k (d + d_v)).
  void pack(void* shared, const tensor_view<const T>& k, const tensor_view<const T>& v,
            index_t bh) const noexcept {
    const index_t b = bh / sh.heads, h = bh % sh.heads;
    for (index_t kb = 0; kb < nkb; ++kb) {
      const index_t j0 = kb * bk, n = std::min(bk, sh.n_k - j0);
      K::pack_b_transposed(k, b, h, j0, n, kt_block(shared, bh, kb), score_cols(n));
      K::pack_b_rows(v, b, h, j0, n, bk, v_block(shared, bh, kb), !finite_v, false);
    }
  }

  /// \brief Columns of a score tile against a block of n keys: n rounded up to the vector width
  /// (and to 8, the row localities' mask words), at most bk. The packed K^T block is zero in
  /// columns [n, score_cols(n)); no gemm reads further, nor V rows past n.
  static index_t score_cols(index_t n) noexcept {
    return std::min(bk, K::round_up(n, std::max<index_t>(K::width, 8)));
  }

  /// \brief Scores of a whole row: the score columns of every key block, n_k rounded up as in
  /// score_cols (all of it writable by the score gemms).
  index_t row_cols() const noexcept { return (nkb - 1) * bk + score_cols(sh.n_k - (nkb - 1) * bk); }

  /// \brief Packed K^T of key block kb of head bh: d x bk, panel stride kt_lpb().
  T* kt_block(void* shared, index_t bh, index_t kb) const noexcept {
    return at<T>(shared, kt_off) + (bh * nkb + kb) * kt_size();
  }
  /// \brief Packed V of key block kb of head bh: bk x d_v, panel stride vp_lpb().
  T* v_block(void* shared, index_t bh, index_t kb) const noexcept {
    return at<T>(shared, vp_off) + (bh * nkb + kb) * vp_size();
  }
};

/// \brief Task t of a forward over blocks of bq query rows: head bh = (b, h), rows
/// [i0, i0 + mq), and the head's slice for the policy.
struct row_block {
  index_t bh, b, h, i0, mq;
  head_slice slice;
  row_block(const attention_shape& sh, index_t t, index_t nqb, index_t bq) noexcept
      : bh(t / nqb),
        b(bh / sh.heads),
        h(bh % sh.heads),
        i0((t % nqb) * bq),
        mq(std::min(bq, sh.n_q - i0)),
        slice{b, h, sh.n_q, sh.n_k} {}
};

/// \brief Writes out = acc / l and lse = m + log l for rows [i0, i0 + n) of head (b, h); rows with
/// l = 0 (nothing kept) get zeros and lse = -inf; a NaN l gives NaN rows, as the reference.
template <class T, class Record>
void finish_rows(const tensor_view<T>& out, Record& rec, index_t b, index_t h, index_t i0,
                 index_t n, const T* acc, index_t ld, const T* m, const T* l) noexcept {
  for (index_t r = 0; r < n; ++r) {
    T* o = out.row(b, h, i0 + r);
    double& lse = rec.lse[std::size_t(rec.row_index(b, h, i0 + r))];
    if (l[r] == T(0)) {  // (a NaN l, from a kept NaN score, propagates below)
      std::fill(o, o + out.dim(), T(0));
      lse = -detail::infinity<double>();
      continue;
    }
    const T inv = T(1) / l[r];
    for (index_t c = 0; c < out.dim(); ++c) o[c] = acc[r * ld + c] * inv;
    lse = double(m[r]) + std::log(double(l[r]));
  }
}

}  // namespace backend::simd

/// \brief SIMD forward for elementwise policies (FlashAttention-style): tasks are (batch, head,
/// block of 48 or 24 query rows); each streams over key tiles of 64 with an online softmax,
/// skipping tiles the policy classifies none_kept and the per-element test on all_kept tiles, so
/// banded and block-local cost O(n k d). Scores s = fl(fl(q.k) scale), q.k one fma chain in c
/// order. Time O(batch heads n_q n_k(d + d_v)) for dense, of the kept tiles otherwise; memory:
/// packed copies of K and V (forward_operands) plus O(48 (64 + d_v))
/// per thread, from the workspace.
template <class Policy, class T>
requires elementwise_policy<Policy, T>
struct forward_impl<exec::simd_t, Policy, T> {
  using K = backend::simd::kernels<T>;
  static constexpr index_t bq_max = 48;  // query rows per task, a multiple of K::mr

  /// \brief Rows per task: 48, or 24 when the policy skips at least 3/4 of the 48 x 64 tiles of
  /// the first 64 row blocks of head (0, 0) (narrow windows such as banded: shorter row blocks span
  /// fewer key tiles). Only the task partition changes, never a row's arithmetic, so results do not
  /// depend on it.
  static index_t rows_per_task(const Policy& p, const attention_shape& sh) noexcept {
    constexpr index_t bk = backend::simd::forward_operands<T>::bk;
    const head_slice hs{0, 0, sh.n_q, sh.n_k};
    index_t none = 0, all = 0;
    for (index_t i0 = 0; i0 < std::min(sh.n_q, 64 * bq_max); i0 += bq_max)  // a sample
      for (index_t j0 = 0; j0 < sh.n_k; j0 += bk, ++all) {
        const tile t{i0, std::min(sh.n_q, i0 + bq_max), j0, std::min(sh.n_k, j0 + bk)};
        none += classify_tile(p, hs, t) == tile_kind::none_kept ? 1 : 0;
      }
    return 4 * none >= 3 * all ? bq_max / 2 : bq_max;
  }

  static void run(const exec::simd_t& ex, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<T>& out, forward_record_t<Policy, T>& rec) {
    namespace bs = backend::simd;
    const attention_shape& sh = rec.shape;
    bs::forward_operands<T> ops(sh);
    constexpr index_t bk = bs::forward_operands<T>::bk;
    bs::arena_layout shared, scratch;
    ops.scan(v);
    ops.plan(shared);
    const index_t bq = rows_per_task(p, sh);
    const std::size_t s_off = scratch.take<T>(bq * bk), o_off = scratch.take<T>(bq * ops.dvp),
                      m_off = scratch.take<T>(bq), l_off = scratch.take<T>(bq);
    const index_t nqb = (sh.n_q + bq - 1) / bq, tasks = ops.heads() * nqb;
    const bs::call_context ctx(ex, tasks, shared.size, scratch.size);
    ctx.run(ops.heads(), [&](index_t bh, int) { ops.pack(ctx.shared, k, v, bh); });
    const T sc = T(rec.scale);
    ctx.run(tasks, [&](index_t t, int slot) {
      const bs::row_block rb(sh, t, nqb, bq);
      const index_t bh = rb.bh, b = rb.b, h = rb.h, i0 = rb.i0, mq = rb.mq;
      const head_slice& hs = rb.slice;
      void* mem = ctx.scratch(slot);
      T *s = bs::at<T>(mem, s_off), *o = bs::at<T>(mem, o_off), *m = bs::at<T>(mem, m_off),
        *l = bs::at<T>(mem, l_off);
      std::fill(o, o + mq * ops.dvp, T(0));
      std::fill(m, m + mq, -detail::infinity<T>());
      std::fill(l, l + mq, T(0));
      for (index_t kb = 0; kb < ops.nkb; ++kb) {
        // Scores of the nc = nj rounded up to the vector width columns only (<= score_cols(nj)):
        // the packed columns [nj, nc) are zero, and -inf (exp 0) past nj, so dropping the whole
        // vectors of them changes no max, sum or bit.
        const index_t j0 = kb * bk, nj = std::min(bk, sh.n_k - j0), nc = K::padded(nj);
        const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + mq, j0, j0 + nj});
        if (kind == tile_kind::none_kept) continue;
        K::template gemm<false>(mq, nc, sh.d, q.row(b, h, i0), q.strides().seq, 1,
                                ops.kt_block(ctx.shared, bh, kb), ops.kt_lpb(), s, bk);
        const bool fused = kind == tile_kind::all_kept && nj == bk;  // scale and max in one pass
        for (index_t r = 0; r < mq; ++r) {
          T* row = s + r * bk;
          if (!fused) {
            K::scale(row, nc, sc);
            if (kind == tile_kind::partial)
              for (index_t jj = 0; jj < nj; ++jj)
                if (!p.keep(hs, i0 + r, j0 + jj, row[jj])) row[jj] = -detail::infinity<T>();
            std::fill(row + nj, row + nc, -detail::infinity<T>());
          }
          const T row_max = fused ? K::scale_max(row, bk, sc) : K::max(row, nc);
          online_update(row, nc, row_max, o + r * ops.dvp, ops.dvp, m[r], l[r]);
        }
        K::template gemm<true>(mq, ops.dvp, nj, s, bk, 1, ops.v_block(ctx.shared, bh, kb),
                               ops.vp_lpb(), o, ops.dvp);
      }
      if (!ops.finite_v) add_nonfinite_values(p, rb, q, k, v, sc, o, ops.dvp, m);
      bs::finish_rows(out, rec, b, h, i0, mq, o, ops.dvp, m, l);
    });
  }

  /// \brief The keys whose V row is not finite (zeroed in the gemm operand), added to the rows of
  /// the block that keep them: acc_r += exp(s_rj - m_r) V_j, so the row becomes non-finite as in
  /// the reference, and rows that do not keep j stay finite. O(n_k d_v) per block plus O(rows d)
  /// per such key; only runs when V has a non-finite row.
  static void add_nonfinite_values(const Policy& p, const backend::simd::row_block& rb,
                                   const tensor_view<const T>& q, const tensor_view<const T>& k,
                                   const tensor_view<const T>& v, T sc, T* acc, index_t ld,
                                   const T* m) noexcept {
    for (index_t j = 0; j < k.seq(); ++j) {
      const T* vj = v.row(rb.b, rb.h, j);
      if (K::finite(vj, v.dim())) continue;
      for (index_t r = 0; r < rb.mq; ++r) {
        const index_t i = rb.i0 + r;
        if (classify_tile(p, rb.slice, tile{i, i + 1, j, j + 1}) == tile_kind::none_kept) continue;
        const T s = K::dot(q.row(rb.b, rb.h, i), k.row(rb.b, rb.h, j), q.dim()) * sc;
        if (p.keep(rb.slice, i, j, s)) K::axpy(acc + r * ld, vj, v.dim(), std::exp(s - m[r]));
      }
    }
  }

  /// \brief One tile of the online softmax for a row s[0, cols) (cols a multiple of the width)
  /// with row_max = K::max(s): m' = max(m, row_max), l' = l e^(m - m') + sum e^(s - m'),
  /// acc[0, n) *= e^(m - m'), and s becomes e^(s - m') (0 where s = -inf).
  static void online_update(T* row, index_t cols, T row_max, T* acc, index_t n, T& m,
                            T& l) noexcept {
    const T m_new = std::max(m, row_max);
    if (m_new == -detail::infinity<T>()) {  // nothing kept yet (or kept NaNs only): p = 0
      if (std::any_of(row, row + cols, [](T x) { return x != x; }))
        m = l = std::numeric_limits<T>::quiet_NaN();  // a kept NaN makes the row NaN
      std::fill(row, row + cols, T(0));
      return;
    }
    const T sum = K::exp_sum(row, cols, m_new);
    if (m_new != m && m != -detail::infinity<T>()) {  // else acc and l are still 0
      const T corr = std::exp(m - m_new);
      l *= corr;
      K::scale(acc, n, corr);
    }
    l += sum;
    m = m_new;
  }
};

}  // namespace semfocus
