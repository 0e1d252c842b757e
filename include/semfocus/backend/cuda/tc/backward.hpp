// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include "semfocus/backend/cuda/tc/tiles.hpp"

// The tensor-core backward (FlashAttention-2's, made deterministic): row_dot_body writes
// D_i = dO_i . O_i from the forward's output; dq_body owns a query tile and sweeps the key tiles
// for dQ_i = scale sum_j dS_ij K_j; dkdv_body owns a key tile and sweeps the query tiles for
// dV_j = sum_i P_ij dO_i and dK_j = scale sum_i dS_ij Q_i, where P_ij = exp(s_ij - lse_i) on the
// kept set (0 elsewhere) and dS_ij = P_ij (dO_i . V_j - D_i). No atomics: every gradient row is
// one warp's accumulator, so results are bit-reproducible; the price is that S and dP are
// computed twice (once per kernel), 7 matrix products per tile pair where FlashAttention-2's
// atomic dQ takes 5. Scores are recomputed with the forward's bits (tiles.hpp), so the kept sets
// are the forward's; dkdv_body computes them as K Q^T, the same products in the same k order
// (each element of an m16n8k16 product is a sum of the same 16 products, fixed-point aligned in
// the tensor core, whichever operand holds which row).
namespace semfocus::backend::cuda::tc {

/// \brief D_i = sum_c dO_ic O_ic in float (an fma chain in c order), one thread per row
/// (grid-stride). O(d_v) per row.
template <class Fmt, class Stat, kernel_context Ctx>
SEMFOCUS_DEVICE void row_dot_body(Ctx& ctx, const tc_args<Stat>& a) {
  const attention_shape& sh = a.shape;
  for (index_t r = ctx.block() * ctx.threads() + ctx.thread(); r < sh.rows();
       r += ctx.grid() * ctx.threads()) {
    const index_t bh = r / sh.n_q, i = r % sh.n_q, b = bh / sh.heads, h = bh % sh.heads;
    const std::uint16_t* o = a.o.row(b, h, i);
    const std::uint16_t* g = a.d_out.row(b, h, i);
    float acc = 0.f;
    for (index_t c = 0; c < sh.d_v; ++c) acc = fmaf(to_float<Fmt>(g[c]), to_float<Fmt>(o[c]), acc);
    a.row_dot[r] = acc;
  }
}

/// \brief P and dS of one warp's 16 x (8 N) tile in place: s holds raw scores (mma sums), dp the
/// products dO . V. Element e of fragment n, at `at` in the tile, pairs query qi(e, at) and key
/// kj(e, at), with the query's lse, D and statistic (e is a constant after unrolling, so the
/// functors index their two-row arrays by e / 2 without local memory). O(N) per lane.
template <class Policy, class Rows, class Cols, class Lse, class Dot, class St, int N>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE void probabilities(const Policy& p, tile_kind kind,
                                                        const head_slice& hs, float scale, int lane,
                                                        float (&s)[N][4], float (&dp)[N][4],
                                                        const Rows& qi, const Cols& kj,
                                                        const Lse& lse, const Dot& dot,
                                                        const St& st) {
  SEMFOCUS_UNROLL
  for (int n = 0; n < N; ++n) SEMFOCUS_UNROLL
  for (int e = 0; e < 4; ++e) {
    const frag_coord at = elem_at(lane, n, e);
    const float x = s[n][e] * scale, l = lse(e, at);
    const index_t i = qi(e, at), j = kj(e, at);
    const bool in = i < hs.n_q && j < hs.n_k && l != -semfocus::detail::infinity<float>() &&
                    kept(p, kind, hs, i, j, x, st(e, at));
    const float pe = in ? exp2f(fmaf(x, log2e, -l * log2e)) : 0.f;
    s[n][e] = pe;
    dp[n][e] = pe * (dp[n][e] - dot(e, at));
  }
}

/// \brief dQ: per block of Cfg::rows query rows (grid-stride), after row_dot_body. Shared memory:
/// dq_smem_bytes<Cfg>. O(rows n_k (d + d_v)) multiply-adds over the kept tiles.
template <class Fmt, class Cfg, class Policy, class Stat, kernel_context Ctx>
SEMFOCUS_DEVICE void dq_body(Ctx& ctx, const Policy& p, const tc_args<Stat>& a) {
  constexpr int D = Cfg::head, Bc = Cfg::keys, Br = Cfg::rows, ld = Cfg::ld, ldt = Cfg::ldt;
  auto* qs = reinterpret_cast<std::uint16_t*>(ctx.smem());  // [Br][ld]
  std::uint16_t* dos = qs + Br * ld;                        // [Br][ld]
  std::uint16_t* ks = dos + Br * ld;                        // [Bc][ld]
  std::uint16_t* vs = ks + Bc * ld;                         // [Bc][ld]
  std::uint16_t* kt = vs + Bc * ld;                         // [D][ldt]: K transposed
  const attention_shape& sh = a.shape;
  const int w = ctx.thread() / 32, lane = ctx.thread() % 32;
  const index_t q_tiles = tiles_of(sh.n_q, Br);
  for (index_t blk = ctx.block(); blk < sh.batch * sh.heads * q_tiles; blk += ctx.grid()) {
    const auto [bh, b, h, i0, nr] = tile_at(sh, blk, q_tiles, Br, sh.n_q);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    const index_t rows[2] = {i0 + 16 * w + lane / 4, i0 + 16 * w + lane / 4 + 8};
    Stat st[2];
    load_stats<Policy>(st, a, bh, rows);
    float lse[2], dot[2];
    SEMFOCUS_UNROLL
    for (int x = 0; x < 2; ++x) {
      const bool in = rows[x] < sh.n_q;
      lse[x] = in ? a.lse[bh * sh.n_q + rows[x]] : -semfocus::detail::infinity<float>();
      dot[x] = in ? a.row_dot[bh * sh.n_q + rows[x]] : 0.f;
    }
    stage<Br, D, false>(ctx, qs, ld, a.q, b, h, i0, nr, sh.d);
    stage<Br, D, false>(ctx, dos, ld, a.d_out, b, h, i0, nr, sh.d_v);
    float dq[D / 8][4];
    zero(dq);
    for (index_t j0 = 0; j0 < sh.n_k; j0 += Bc) {
      const index_t nc = imin(Bc, sh.n_k - j0);
      const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + nr, j0, j0 + nc});
      if (kind == tile_kind::none_kept) continue;
      stage<Bc, D, false>(ctx, ks, ld, a.k, b, h, j0, nc, sh.d);
      stage<Bc, D, false>(ctx, vs, ld, a.v, b, h, j0, nc, sh.d_v);
      stage<Bc, D, true>(ctx, kt, ldt, a.k, b, h, j0, nc, sh.d);
      ctx.sync();
      float s[Bc / 8][4], dp[Bc / 8][4];
      zero(s);
      zero(dp);
      gemm_rows<Fmt, D, Bc>(ctx, s, qs + 16 * w * ld, ld, ks, ld);
      gemm_rows<Fmt, D, Bc>(ctx, dp, dos + 16 * w * ld, ld, vs, ld);
      probabilities(
          p, kind, hs, a.scale, lane, s, dp, [&](int e, frag_coord) { return rows[e / 2]; },
          [&](int, frag_coord at) { return j0 + at.col; },
          [&](int e, frag_coord) { return lse[e / 2]; },
          [&](int e, frag_coord) { return dot[e / 2]; },
          [&](int e, frag_coord) -> const Stat& { return st[e / 2]; });
      gemm_regs<Fmt, Bc, D>(ctx, dq, dp, kt, ldt);
      ctx.sync();  // ks, vs, kt are restaged
    }
    store_tile<Fmt>(a.dq, b, h, lane, rows, sh.n_q, dq, {a.scale, a.scale});
    ctx.sync();  // qs, dos are restaged
  }
}

/// \brief dK and dV: per block of Cfg::rows key rows (grid-stride), sweeping query tiles of
/// Cfg::keys, after row_dot_body. Shared memory: dkdv_smem_bytes<Cfg, Stat>.
/// O(rows n_q (d + d_v)) multiply-adds over the kept tiles.
template <class Fmt, class Cfg, class Policy, class Stat, kernel_context Ctx>
SEMFOCUS_DEVICE void dkdv_body(Ctx& ctx, const Policy& p, const tc_args<Stat>& a) {
  constexpr int D = Cfg::head, Bq = Cfg::keys, Br = Cfg::rows, ld = Cfg::ld, ldt = Cfg::ldt;
  auto* ks = reinterpret_cast<std::uint16_t*>(ctx.smem());  // [Br][ld]
  std::uint16_t* vs = ks + Br * ld;                         // [Br][ld]
  std::uint16_t* qs = vs + Br * ld;                         // [Bq][ld]
  std::uint16_t* dos = qs + Bq * ld;                        // [Bq][ld]
  std::uint16_t* qt = dos + Bq * ld;                        // [D][ldt]: Q transposed
  std::uint16_t* dot_t = qt + D * ldt;                      // [D][ldt]: dO transposed
  auto* lses = reinterpret_cast<float*>(dot_t + D * ldt);   // [Bq]
  float* dots = lses + Bq;                                  // [Bq]
  auto* sts = reinterpret_cast<Stat*>(dots + Bq);           // [Bq]
  const attention_shape& sh = a.shape;
  const int w = ctx.thread() / 32, lane = ctx.thread() % 32;
  const index_t k_tiles = tiles_of(sh.n_k, Br);
  for (index_t blk = ctx.block(); blk < sh.batch * sh.heads * k_tiles; blk += ctx.grid()) {
    const auto [bh, b, h, j0, nk] = tile_at(sh, blk, k_tiles, Br, sh.n_k);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    stage<Br, D, false>(ctx, ks, ld, a.k, b, h, j0, nk, sh.d);
    stage<Br, D, false>(ctx, vs, ld, a.v, b, h, j0, nk, sh.d_v);
    float dk[D / 8][4], dv[D / 8][4];
    zero(dk);
    zero(dv);
    const index_t keys[2] = {j0 + 16 * w + lane / 4, j0 + 16 * w + lane / 4 + 8};
    for (index_t i0 = 0; i0 < sh.n_q; i0 += Bq) {
      const index_t nq = imin(Bq, sh.n_q - i0);
      const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + nq, j0, j0 + nk});
      if (kind == tile_kind::none_kept) continue;
      stage<Bq, D, false>(ctx, qs, ld, a.q, b, h, i0, nq, sh.d);
      stage<Bq, D, false>(ctx, dos, ld, a.d_out, b, h, i0, nq, sh.d_v);
      stage<Bq, D, true>(ctx, qt, ldt, a.q, b, h, i0, nq, sh.d);
      stage<Bq, D, true>(ctx, dot_t, ldt, a.d_out, b, h, i0, nq, sh.d_v);
      for (int x = ctx.thread(); x < Bq; x += ctx.threads()) {
        const bool in = x < nq;
        const index_t r = bh * sh.n_q + i0 + x;
        lses[x] = in ? a.lse[r] : -semfocus::detail::infinity<float>();
        dots[x] = in ? a.row_dot[r] : 0.f;
        sts[x] = Stat{};
        if constexpr (row_policy<Policy, float>)
          if (in) sts[x] = a.stats[r];
      }
      ctx.sync();
      float s[Bq / 8][4], dp[Bq / 8][4];  // transposed: rows keys, columns queries
      zero(s);
      zero(dp);
      gemm_rows<Fmt, D, Bq>(ctx, s, ks + 16 * w * ld, ld, qs, ld);
      gemm_rows<Fmt, D, Bq>(ctx, dp, vs + 16 * w * ld, ld, dos, ld);
      probabilities(
          p, kind, hs, a.scale, lane, s, dp, [&](int, frag_coord at) { return i0 + at.col; },
          [&](int e, frag_coord) { return keys[e / 2]; },
          [&](int, frag_coord at) { return lses[at.col]; },
          [&](int, frag_coord at) { return dots[at.col]; },
          [&](int, frag_coord at) -> const Stat& { return sts[at.col]; });
      gemm_regs<Fmt, Bq, D>(ctx, dv, s, dot_t, ldt);
      gemm_regs<Fmt, Bq, D>(ctx, dk, dp, qt, ldt);
      ctx.sync();  // the query tile is restaged
    }
    store_tile<Fmt>(a.dk, b, h, lane, keys, sh.n_k, dk, {a.scale, a.scale});
    store_tile<Fmt>(a.dv, b, h, lane, keys, sh.n_k, dv, {1.f, 1.f});
    ctx.sync();  // ks, vs are restaged
  }
}

/// \brief Dynamic shared memory of dq_body, in bytes.
template <class Cfg>
constexpr std::size_t dq_smem_bytes() {
  return 2 *
         (std::size_t(2 * Cfg::rows + 2 * Cfg::keys) * Cfg::ld + std::size_t(Cfg::head) * Cfg::ldt);
}
/// \brief Dynamic shared memory of dkdv_body, in bytes (Stat aligned to at most 16 bytes).
template <class Cfg, class Stat>
constexpr std::size_t dkdv_smem_bytes() {
  return 2 * (std::size_t(2 * Cfg::rows + 2 * Cfg::keys) * Cfg::ld +
              2 * std::size_t(Cfg::head) * Cfg::ldt) +
         std::size_t(Cfg::keys) * (2 * sizeof(float) + sizeof(Stat));
}

}  // namespace semfocus::backend::cuda::tc
