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
/// a mask: tasks are (batch, head, block of 96 or 48 keys, keys_per_task); each sweeps the query
/// tiles of 64 and recomputes, transposed, S^T = K Q^T (same fma chains as forward, so the same
/// bits and the same selection), P^T = exp(scale S^T - lse) on the kept set, dP^T = V dO^T, dS^T =
/// P^T (dP^T - D) scale with D_i = dO_i . out_i, then dV += P^T dO, dK += dS^T Q and dQ_tile = dS
/// K. dQ_tile is added to dQ in key-block order: the task of key block kb waits until block kb - 1
/// has added its tile (an ordered handshake per query tile), so dQ has the same bits for any thread
/// count. `mask(hs, tile)` returns the tile's kind; `keep(hs, i, j, s)` decides partial tiles. Time
/// O(batch heads n_q n_k (d + d_v)) over the kept tiles; memory: Q and dO packed twice (as Q^T,
/// dO^T and by rows) plus O(96 (64 + d + d_v)) per thread. \brief Keys per task of tiled_backward:
/// 96, or 48 when the mask skips at least 3/4 of the 96 x bqt tiles of the first 64 key blocks of
/// head (0, 0) (narrow windows such as banded: shorter key blocks span fewer query tiles). Longer
/// blocks halve how often Q and dO stream through the cache per flop (dense backward about 4%
/// faster on Zen 3 than with 48). It sets the blocks over which dQ's tiles are summed, so dQ's bits
/// depend on it (never on the threads).
template <class Classify>
index_t keys_per_task(const Classify& classify, const attention_shape& sh, index_t bqt) {
  constexpr index_t wide = 96;  // a multiple of kernels<T>::mr for every T and arch
  const head_slice hs{0, 0, sh.n_q, sh.n_k};
  index_t none = 0, all = 0;
  for (index_t j0 = 0; j0 < std::min(sh.n_k, 64 * wide); j0 += wide)  // a sample
    for (index_t i0 = 0; i0 < sh.n_q; i0 += bqt, ++all) {
      const tile t{i0, std::min(sh.n_q, i0 + bqt), j0, std::min(sh.n_k, j0 + wide)};
      none += classify(hs, t) == tile_kind::none_kept ? 1 : 0;
    }
  return 4 * none >= 3 * all ? wide / 2 : wide;
}

template <class T, class Classify, class Keep, class Record>
void tiled_backward(const exec::simd_t& ex, const Classify& classify, const Keep& keep,
                    const tensor_view<const T>& q, const tensor_view<const T>& k,
                    const tensor_view<const T>& v, const tensor_view<const T>& out,
                    const tensor_view<const T>& d_out, const Record& rec, const tensor_view<T>& dq,
                    const tensor_view<T>& dk, const tensor_view<T>& dv) {
  using K = kernels<T>;
  constexpr index_t bqt = 64;  // queries per tile
  const attention_shape& sh = rec.shape;
  const index_t bkt = keys_per_task(classify, sh, bqt);
  const index_t heads = sh.batch * sh.heads, nqb = (sh.n_q + bqt - 1) / bqt;
  const index_t nkt = (sh.n_k + bkt - 1) / bkt, tasks = heads * nkt;
  const index_t dp = K::padded(sh.d), dvp = K::padded(sh.d_v), nqp = nqb * bqt;
  // Shared, per head and query tile, packed as gemm's B panels: Q^T and dO^T (the recomputed
  // scores and dP^T), rows of Q and dO (dK and dV); then lse (+inf where the row is empty or
  // padding: exp(s - lse) = 0), D and the dQ turns. Per task: its key block's rows of K (dQ).
  // dQ = dS K and dK = dS^T Q sum over whole tiles, unkept entries with dS = 0; the reference sums
  // kept entries only, so a non-finite row of K or Q (whose scores are all NaN or infinite, hence
  // either unkept or already non-finite in dS) is a zero row in those two operands.
  const index_t qt_tile = K::panels_size(sh.d, bqt), dot_tile = K::panels_size(sh.d_v, bqt),
                qr_tile = K::panels_size(bqt, sh.d), dor_tile = K::panels_size(bqt, sh.d_v);
  arena_layout shared, scratch;
  const std::size_t qt_off = shared.take<T>(heads * nqb * qt_tile),
                    dot_off = shared.take<T>(heads * nqb * dot_tile),
                    qr_off = shared.take<T>(heads * nqb * qr_tile),
                    dor_off = shared.take<T>(heads * nqb * dor_tile),
                    lse_off = shared.take<T>(heads * nqp), dd_off = shared.take<T>(heads * nqp),
                    turn_off = shared.take<std::atomic<index_t>>(heads * nqb);
  const std::size_t st_off = scratch.take<T>(bkt * bqt), dpt_off = scratch.take<T>(bkt * bqt),
                    dk_off = scratch.take<T>(bkt * dp), dv_off = scratch.take<T>(bkt * dvp),
                    c_off = scratch.take<T>(bqt * dp),
                    kr_off = scratch.take<T>(K::panels_size(bkt, sh.d));
  const call_context ctx(ex, tasks, shared.size, scratch.size);
  void* const sh_mem = ctx.shared;
  auto turn = [&](index_t bh, index_t qb) -> std::atomic<index_t>& {
    return at<std::atomic<index_t>>(sh_mem, turn_off)[bh * nqb + qb];
  };
  auto tile_of = [&](std::size_t off, index_t size, index_t bh, index_t qb) {
    return at<T>(sh_mem, off) + (bh * nqb + qb) * size;
  };

  ctx.run(heads, [&](index_t bh, int) {
    const index_t b = bh / sh.heads, h = bh % sh.heads;
    for (index_t qb = 0; qb < nqb; ++qb) {
      const index_t i0 = qb * bqt, n = std::min(bqt, sh.n_q - i0);
      K::pack_b_transposed(q, b, h, i0, n, tile_of(qt_off, qt_tile, bh, qb), bqt);
      K::pack_b_transposed(d_out, b, h, i0, n, tile_of(dot_off, dot_tile, bh, qb), bqt);
      K::pack_b_rows(q, b, h, i0, n, bqt, tile_of(qr_off, qr_tile, bh, qb), true);
      K::pack_b_rows(d_out, b, h, i0, n, bqt, tile_of(dor_off, dor_tile, bh, qb));
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
    T* kr = at<T>(mem, kr_off);
    K::pack_b_rows(k, b, h, j0, mk, bkt, kr, true);
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
                              tile_of(qt_off, qt_tile, bh, qb), sh.d * K::nr, st, bqt);
      K::template gemm<false>(mk, bqt, sh.d_v, v.row(b, h, j0), v.strides().seq, 1,
                              tile_of(dot_off, dot_tile, bh, qb), sh.d_v * K::nr, dpt, bqt);
      for (index_t r = 0; r < mk; ++r) {
        T* srow = st + r * bqt;
        K::scale(srow, bqt, sc);
        if (kind == tile_kind::partial)
          for (index_t x = 0; x < mq; ++x)
            if (!keep(hs, i0 + x, j0 + r, srow[x])) srow[x] = -detail::infinity<T>();
        K::softmax_grad(srow, dpt + r * bqt, lse + i0, dd + i0, bqt, sc);
      }
      K::template gemm<true>(mk, dvp, mq, st, bqt, 1, tile_of(dor_off, dor_tile, bh, qb),
                             bqt * K::nr, dva, dvp);
      K::template gemm<true>(mk, dp, mq, dpt, bqt, 1, tile_of(qr_off, qr_tile, bh, qb), bqt * K::nr,
                             dka, dp);
      K::template gemm<false>(mq, dp, mk, dpt, 1, bqt, kr, bkt * K::nr, c, dp);
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
