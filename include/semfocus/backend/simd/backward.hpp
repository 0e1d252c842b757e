// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <new>

#include "semfocus/backend/dispatch.hpp"
#include "semfocus/backend/simd/common.hpp"
#include "semfocus/detail/numeric.hpp"

namespace semfocus::backend::simd {

/// \brief The tiled backward (FlashAttention-2 order, made deterministic), for every policy given
/// a mask: tasks are (batch, head, block of 48 keys); each sweeps the query tiles of 64 and
/// recomputes, transposed, S^T = K Q^T (same fma chains as forward, so the same bits and the
/// same selection), P^T = exp(scale S^T - lse) on the kept set, dP^T = V dO^T,
/// dS^T = P^T (dP^T - D) scale with D_i = dO_i . out_i, then dV += P^T dO, dK += dS^T Q and
/// dQ_tile = dS K. dQ_tile is added to dQ in key-block order: the task of key block kb waits
/// until block kb - 1 has added its tile (an ordered handshake per query tile), so dQ has the
/// same bits for any thread count.
/// `mask(hs, tile)` returns the tile's kind; `keep(hs, i, j, s)` decides partial tiles.
/// Time O(batch heads n_q n_k (d + d_v)) over the kept tiles; memory: packed Q^T, dO^T (and
/// padded copies when d or d_v is not a multiple of the vector width) plus O(48 (64 + d + d_v))
/// per thread.
template <class T, class Classify, class Keep, class Record>
void tiled_backward(const exec::simd_t& ex, const Classify& classify, const Keep& keep,
                    const tensor_view<const T>& q, const tensor_view<const T>& k,
                    const tensor_view<const T>& v, const tensor_view<const T>& out,
                    const tensor_view<const T>& d_out, const Record& rec, const tensor_view<T>& dq,
                    const tensor_view<T>& dk, const tensor_view<T>& dv) {
  using K = kernels<T>;
  constexpr index_t bkt = 48, bqt = 64;  // keys per task (multiple of mr), queries per tile
  const attention_shape& sh = rec.shape;
  const index_t heads = sh.batch * sh.heads, nqb = (sh.n_q + bqt - 1) / bqt;
  const index_t nkt = (sh.n_k + bkt - 1) / bkt, tasks = heads * nkt;
  const index_t dp = K::padded(sh.d), dvp = K::padded(sh.d_v), nqp = nqb * bqt;
  const bool pad_d = sh.d % K::width != 0, pad_dv = sh.d_v % K::width != 0;
  // dQ = dS K and dK = dS^T Q sum over whole tiles, unkept entries with dS = 0; the reference sums
  // kept entries only, so a non-finite row of K or Q (whose scores are all NaN or infinite, hence
  // either unkept or already non-finite in dS) is replaced by zeros in the gemm operand.
  bool finite_q = true, finite_k = true;
  for (index_t bh = 0; bh < sh.batch * sh.heads; ++bh) {
    finite_q = finite_q && K::finite_rows(q, bh / sh.heads, bh % sh.heads);
    finite_k = finite_k && K::finite_rows(k, bh / sh.heads, bh % sh.heads);
  }
  const bool copy_q = pad_d || !finite_q, copy_k = pad_d || !finite_k;
  // Shared, per head: Q^T and dO^T in query tiles, lse (+inf where the row is empty or padding:
  // exp(s - lse) = 0) and D, padded rows of Q, K, dO if needed, and the dQ turns.
  arena_layout shared, scratch;
  const std::size_t qt_off = shared.take<T>(heads * nqp * sh.d),
                    dot_off = shared.take<T>(heads * nqp * sh.d_v),
                    lse_off = shared.take<T>(heads * nqp), dd_off = shared.take<T>(heads * nqp),
                    qp_off = shared.take<T>(copy_q ? heads * sh.n_q * dp : 0),
                    kp_off = shared.take<T>(copy_k ? heads * sh.n_k * dp : 0),
                    dop_off = shared.take<T>(pad_dv ? heads * sh.n_q * dvp : 0),
                    turn_off = shared.take<std::atomic<index_t>>(heads * nqb);
  const std::size_t st_off = scratch.take<T>(bkt * bqt), dpt_off = scratch.take<T>(bkt * bqt),
                    dk_off = scratch.take<T>(bkt * dp), dv_off = scratch.take<T>(bkt * dvp),
                    c_off = scratch.take<T>(bqt * dp);
  const call_context ctx(ex, tasks, shared.size, scratch.size);
  void* const sh_mem = ctx.shared;
  auto turn = [&](index_t bh, index_t qb) -> std::atomic<index_t>& {
    return at<std::atomic<index_t>>(sh_mem, turn_off)[bh * nqb + qb];
  };
  // B operands by rows: in place when the dim is a multiple of the width, else padded copies.
  auto rows_of = [&](const tensor_view<const T>& t, bool pad, std::size_t off, index_t n,
                     index_t ld, index_t bh) -> std::pair<const T*, index_t> {
    if (pad) return {at<T>(sh_mem, off) + bh * n * ld, ld};
    return {t.row(bh / sh.heads, bh % sh.heads, 0), t.strides().seq};
  };

  ctx.run(heads, [&](index_t bh, int) {
    const index_t b = bh / sh.heads, h = bh % sh.heads;
    for (index_t qb = 0; qb < nqb; ++qb) {
      const index_t i0 = qb * bqt, n = std::min(bqt, sh.n_q - i0);
      K::pack_transposed(q, b, h, i0, n, at<T>(sh_mem, qt_off) + (bh * nqp + i0) * sh.d, bqt);
      K::pack_transposed(d_out, b, h, i0, n, at<T>(sh_mem, dot_off) + (bh * nqp + i0) * sh.d_v,
                         bqt);
      new (&turn(bh, qb)) std::atomic<index_t>(0);
    }
    T *lse = at<T>(sh_mem, lse_off) + bh * nqp, *dd = at<T>(sh_mem, dd_off) + bh * nqp;
    for (index_t i = 0; i < nqp; ++i) {
      const double l =
          i < sh.n_q ? rec.lse[std::size_t(rec.row_index(b, h, i))] : -detail::infinity<double>();
      lse[i] = l == -detail::infinity<double>() ? detail::infinity<T>() : T(l);
      dd[i] = i < sh.n_q ? K::dot(d_out.row(b, h, i), out.row(b, h, i), sh.d_v) : T(0);
      if (i < sh.n_q) std::fill(dq.row(b, h, i), dq.row(b, h, i) + sh.d, T(0));
    }
    if (copy_q)
      K::pack_rows(q, b, h, 0, sh.n_q, at<T>(sh_mem, qp_off) + bh * sh.n_q * dp, dp, true);
    if (copy_k)
      K::pack_rows(k, b, h, 0, sh.n_k, at<T>(sh_mem, kp_off) + bh * sh.n_k * dp, dp, true);
    if (pad_dv)
      K::pack_rows(d_out, b, h, 0, sh.n_q, at<T>(sh_mem, dop_off) + bh * sh.n_q * dvp, dvp);
  });

  const T sc = T(rec.scale);
  ctx.run(tasks, [&](index_t t, int slot) {
    const index_t bh = t / nkt, kt = t % nkt, b = bh / sh.heads, h = bh % sh.heads;
    const index_t j0 = kt * bkt, mk = std::min(bkt, sh.n_k - j0);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    void* mem = ctx.scratch(slot);
    T *st = at<T>(mem, st_off), *dpt = at<T>(mem, dpt_off), *dka = at<T>(mem, dk_off),
      *dva = at<T>(mem, dv_off), *c = at<T>(mem, c_off);
    std::fill(dka, dka + mk * dp, T(0));
    std::fill(dva, dva + mk * dvp, T(0));
    const auto [qr, ldq] = rows_of(q, copy_q, qp_off, sh.n_q, dp, bh);
    const auto [kr, ldk] = rows_of(k, copy_k, kp_off, sh.n_k, dp, bh);
    const auto [dor, ldo] = rows_of(d_out, pad_dv, dop_off, sh.n_q, dvp, bh);
    const T* lse = at<T>(sh_mem, lse_off) + bh * nqp;
    const T* dd = at<T>(sh_mem, dd_off) + bh * nqp;
    for (index_t qb = 0; qb < nqb; ++qb) {
      const index_t i0 = qb * bqt, mq = std::min(bqt, sh.n_q - i0);
      const tile_kind kind = classify(hs, tile{i0, i0 + mq, j0, j0 + mk});
      std::atomic<index_t>& tr = turn(bh, qb);
      if (kind == tile_kind::none_kept) {
        wait_turn(tr, kt);
        tr.store(kt + 1, std::memory_order_release);
        continue;
      }
      K::template gemm<false>(mk, bqt, sh.d, k.row(b, h, j0), k.strides().seq, 1,
                              at<T>(sh_mem, qt_off) + (bh * nqp + i0) * sh.d, bqt, st, bqt);
      K::template gemm<false>(mk, bqt, sh.d_v, v.row(b, h, j0), v.strides().seq, 1,
                              at<T>(sh_mem, dot_off) + (bh * nqp + i0) * sh.d_v, bqt, dpt, bqt);
      for (index_t r = 0; r < mk; ++r) {
        T* srow = st + r * bqt;
        K::scale(srow, bqt, sc);
        if (kind == tile_kind::partial)
          for (index_t x = 0; x < mq; ++x)
            if (!keep(hs, i0 + x, j0 + r, srow[x])) srow[x] = -detail::infinity<T>();
        K::softmax_grad(srow, dpt + r * bqt, lse + i0, dd + i0, bqt, sc);
      }
      K::template gemm<true>(mk, dvp, mq, st, bqt, 1, dor + i0 * ldo, ldo, dva, dvp);
      K::template gemm<true>(mk, dp, mq, dpt, bqt, 1, qr + i0 * ldq, ldq, dka, dp);
      K::template gemm<false>(mq, dp, mk, dpt, 1, bqt, kr + j0 * ldk, ldk, c, dp);
      wait_turn(tr, kt);
      for (index_t x = 0; x < mq; ++x) K::add(dq.row(b, h, i0 + x), c + x * dp, sh.d);
      tr.store(kt + 1, std::memory_order_release);
    }
    for (index_t r = 0; r < mk; ++r) {
      std::copy(dka + r * dp, dka + r * dp + sh.d, dk.row(b, h, j0 + r));
      std::copy(dva + r * dvp, dva + r * dvp + sh.d_v, dv.row(b, h, j0 + r));
    }
  });
}

}  // namespace semfocus::backend::simd

namespace semfocus {

/// \brief SIMD backward for elementwise policies: backend::simd::tiled_backward with the policy's
/// classify and keep. Cost O(n k d) for banded and block-local, as forward.
template <class Policy, class T>
requires elementwise_policy<Policy, T>
struct backward_impl<exec::simd_t, Policy, T> {
  static void run(const exec::simd_t& ex, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<const T>& out, const tensor_view<const T>& d_out,
                  const forward_record_t<Policy, T>& rec, const tensor_view<T>& dq,
                  const tensor_view<T>& dk, const tensor_view<T>& dv) {
    backend::simd::tiled_backward<T>(
        ex, [&](const head_slice& hs, const tile& t) { return classify_tile(p, hs, t); },
        [&](const head_slice& hs, index_t i, index_t j, T s) { return p.keep(hs, i, j, s); }, q, k,
        v, out, d_out, rec, dq, dk, dv);
  }
};

}  // namespace semfocus
