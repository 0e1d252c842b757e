// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include "semfocus/backend/cuda/tc/row_select.hpp"
#include "semfocus/backend/cuda/tc/tiles.hpp"

// The tensor-core forward: the statistics pass of a row policy and the flash pass, as kernel
// bodies over a context (tc/context.hpp). FlashAttention-2's schedule: a block owns a tile of
// Cfg::rows query rows of one (batch, head) slice, 16 per warp, and streams the key tiles
// through shared memory; S = Q K^T and O += P V by mma.m16n8k16 with float accumulators, P
// rounded to the element format as the A operand of P V (as FlashAttention).
//  - Scores: s_ij = float(sum_c q_ic k_jc) * scale, the sum a chain of mma over c in steps of 16
//    (tiles.hpp), so the same bits in every pass; equal to the reference backend's float score
//    whenever the sum is exact in float and the scale a power of two.
//  - Fixed masks: tiles classified by the policy, none_kept ones skipped (not loaded), the
//    per-element test dropped on all_kept ones. Row policies: stats_body first writes each
//    row's statistic, then the flash pass keeps st.keep(j, s).
//  - Online softmax in base 2 (exp2(s log2 e - m log2 e)); an empty row (or one whose kept
//    scores are all -inf) gives out 0 and lse -inf.
namespace semfocus::backend::cuda::tc {

/// \brief Statistics pass of a row policy: per block of Cfg::rows query rows (grid-stride), the
/// rows' n_k scores into the block's workspace rows (a.scores + block Cfg::rows n_k), then each
/// warp derives the statistics of its 16 rows (warp_row_statistic) into a.stats. Shared memory:
/// stats_smem_bytes<Cfg>. O(rows n_k d) multiply-adds plus the selections.
template <class Fmt, class Cfg, class Policy, class Stat, kernel_context Ctx>
SEMFOCUS_DEVICE void stats_body(Ctx& ctx, const Policy& p, const tc_args<Stat>& a) {
  constexpr int D = Cfg::head, Bc = Cfg::keys, Br = Cfg::rows, ld = Cfg::ld;
  auto* qs = reinterpret_cast<std::uint16_t*>(ctx.smem());      // [Br][ld]
  std::uint16_t* ks = qs + Br * ld;                             // [Bc][ld]
  auto* hist = reinterpret_cast<std::uint32_t*>(ks + Bc * ld);  // [warps][256]
  const attention_shape& sh = a.shape;
  const int w = ctx.thread() / 32, lane = ctx.thread() % 32;
  float* ws = a.scores + ctx.block() * Br * sh.n_k;
  const index_t q_tiles = tiles_of(sh.n_q, Br);
  for (index_t blk = ctx.block(); blk < sh.batch * sh.heads * q_tiles; blk += ctx.grid()) {
    const auto [bh, b, h, i0, nr] = tile_at(sh, blk, q_tiles, Br, sh.n_q);
    stage<Br, D, false>(ctx, qs, ld, a.q, b, h, i0, nr, sh.d);
    for (index_t j0 = 0; j0 < sh.n_k; j0 += Bc) {
      const index_t nc = imin(Bc, sh.n_k - j0);
      stage<Bc, D, false>(ctx, ks, ld, a.k, b, h, j0, nc, sh.d);
      ctx.sync();
      float s[Bc / 8][4];
      zero(s);
      gemm_rows<Fmt, D, Bc>(ctx, s, qs + 16 * w * ld, ld, ks, ld);
      SEMFOCUS_UNROLL
      for (int n = 0; n < Bc / 8; ++n) SEMFOCUS_UNROLL
      for (int e = 0; e < 4; ++e) {
        const frag_coord at = elem_at(lane, n, e);
        if (at.col < nc) ws[(16 * w + at.row) * sh.n_k + j0 + at.col] = s[n][e] * a.scale;
      }
      ctx.sync();  // ks is restaged
    }
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    for (int rr = 0; rr < 16; ++rr) {
      const index_t i = i0 + 16 * w + rr;
      if (i >= sh.n_q) break;  // the same for the whole warp
      const Stat st =
          warp_row_statistic(ctx, p, hs, i, ws + (16 * w + rr) * sh.n_k, hist + 256 * w);
      if (lane == 0) a.stats[bh * sh.n_q + i] = st;
    }
    ctx.sync();  // qs is restaged, the workspace rewritten
  }
}

/// \brief Flash forward: per block of Cfg::rows query rows (grid-stride), out and lse (the
/// natural log-sum-exp) of every row. Shared memory: forward_smem_bytes<Cfg>.
/// O(rows n_k (d + d_v)) multiply-adds over the kept tiles.
template <class Fmt, class Cfg, class Policy, class Stat, kernel_context Ctx>
SEMFOCUS_DEVICE void forward_body(Ctx& ctx, const Policy& p, const tc_args<Stat>& a) {
  constexpr int D = Cfg::head, Bc = Cfg::keys, Br = Cfg::rows, ld = Cfg::ld, ldt = Cfg::ldt;
  constexpr float inf = semfocus::detail::infinity<float>();
  auto* qs = reinterpret_cast<std::uint16_t*>(ctx.smem());  // [Br][ld]
  std::uint16_t* ks = qs + Br * ld;                         // [Bc][ld]
  std::uint16_t* vt = ks + Bc * ld;                         // [D][ldt]: V transposed
  const attention_shape& sh = a.shape;
  const int w = ctx.thread() / 32, lane = ctx.thread() % 32;
  const index_t q_tiles = tiles_of(sh.n_q, Br);
  for (index_t blk = ctx.block(); blk < sh.batch * sh.heads * q_tiles; blk += ctx.grid()) {
    const auto [bh, b, h, i0, nr] = tile_at(sh, blk, q_tiles, Br, sh.n_q);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    const index_t rows[2] = {i0 + 16 * w + lane / 4, i0 + 16 * w + lane / 4 + 8};
    Stat st[2];
    load_stats<Policy>(st, a, bh, rows);
    stage<Br, D, false>(ctx, qs, ld, a.q, b, h, i0, nr, sh.d);
    float o[D / 8][4];
    zero(o);
    float m[2] = {-inf, -inf}, l[2] = {0.f, 0.f};
    for (index_t j0 = 0; j0 < sh.n_k; j0 += Bc) {
      const index_t nc = imin(Bc, sh.n_k - j0);
      const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + nr, j0, j0 + nc});
      if (kind == tile_kind::none_kept) continue;  // the same for the whole block
      stage<Bc, D, false>(ctx, ks, ld, a.k, b, h, j0, nc, sh.d);
      stage<Bc, D, true>(ctx, vt, ldt, a.v, b, h, j0, nc, sh.d_v);
      ctx.sync();
      float s[Bc / 8][4];
      zero(s);
      gemm_rows<Fmt, D, Bc>(ctx, s, qs + 16 * w * ld, ld, ks, ld);
      float mt[2] = {-inf, -inf};
      SEMFOCUS_UNROLL
      for (int n = 0; n < Bc / 8; ++n) SEMFOCUS_UNROLL
      for (int e = 0; e < 4; ++e) {
        const frag_coord at = elem_at(lane, n, e);
        const index_t i = rows[e / 2], j = j0 + at.col;
        const float x = s[n][e] * a.scale;
        const bool in = at.col < nc && i < sh.n_q && kept(p, kind, hs, i, j, x, st[e / 2]);
        s[n][e] = in ? x : -inf;
        mt[e / 2] = s[n][e] > mt[e / 2] ? s[n][e] : mt[e / 2];
      }
      float ms[2];  // m log2 e, 0 while m = -inf (every p is then 0)
      SEMFOCUS_UNROLL
      for (int x = 0; x < 2; ++x) {
        SEMFOCUS_UNROLL
        for (int q = 1; q <= 2; q *= 2) {  // the row's 4 lanes
          const float other = ctx.shfl_xor(mt[x], q);
          mt[x] = other > mt[x] ? other : mt[x];
        }
        const float m_new = mt[x] > m[x] ? mt[x] : m[x];
        const float alpha = m_new == -inf ? 1.f : exp2f((m[x] - m_new) * log2e);
        m[x] = m_new;
        l[x] *= alpha;
        SEMFOCUS_UNROLL
        for (int n = 0; n < D / 8; ++n) {
          o[n][2 * x] *= alpha;
          o[n][2 * x + 1] *= alpha;
        }
        ms[x] = m_new == -inf ? 0.f : m_new * log2e;
      }
      SEMFOCUS_UNROLL
      for (int n = 0; n < Bc / 8; ++n) SEMFOCUS_UNROLL
      for (int e = 0; e < 4; ++e) {
        const float pe = exp2f(fmaf(s[n][e], log2e, -ms[e / 2]));  // exp2(-inf) = 0
        s[n][e] = pe;
        l[e / 2] += pe;
      }
      gemm_regs<Fmt, Bc, D>(ctx, o, s, vt, ldt);
      ctx.sync();  // ks, vt are restaged
    }
    float inv[2];
    SEMFOCUS_UNROLL
    for (int x = 0; x < 2; ++x) {
      SEMFOCUS_UNROLL
      for (int q = 1; q <= 2; q *= 2) l[x] += ctx.shfl_xor(l[x], q);
      inv[x] = l[x] == 0.f ? 0.f : 1.f / l[x];
      if (rows[x] < sh.n_q && lane % 4 == 0)
        a.lse[bh * sh.n_q + rows[x]] = l[x] == 0.f ? -inf : m[x] + logf(l[x]);
    }
    store_tile<Fmt>(a.out, b, h, lane, rows, sh.n_q, o, inv);
    ctx.sync();  // qs is restaged
  }
}

/// \brief Dynamic shared memory of stats_body, in bytes.
template <class Cfg>
constexpr std::size_t stats_smem_bytes() {
  return 2 * std::size_t(Cfg::rows + Cfg::keys) * Cfg::ld + 4 * 256 * std::size_t(Cfg::warps);
}
/// \brief Dynamic shared memory of forward_body, in bytes.
template <class Cfg>
constexpr std::size_t forward_smem_bytes() {
  return 2 * (std::size_t(Cfg::rows + Cfg::keys) * Cfg::ld + std::size_t(Cfg::head) * Cfg::ldt);
}

}  // namespace semfocus::backend::cuda::tc
