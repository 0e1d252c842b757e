// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>

#include "semfocus/backend/cuda/tc/context.hpp"
#include "semfocus/core/shape.hpp"
#include "semfocus/core/view.hpp"
#include "semfocus/policy/concepts.hpp"

// Tiles and warp-level matrix products shared by the tensor-core kernels (tc/forward.hpp,
// tc/backward.hpp). A block of `warps` warps owns 16 rows per warp; every product is a chain of
// mma.m16n8k16 over k in index order, so an element's value depends only on its two operand
// rows and not on where the tile lies: the statistics pass, the forward and both backward
// kernels compute bit-identical scores.
namespace semfocus::backend::cuda::tc {

/// \brief Tile configuration: head dimensions d, d_v <= Head (padded with zeros to it), key tiles
/// of Keys (forward, dQ; the query tiles of dK, dV), 16 rows per warp. Shared-memory rows are
/// padded by 8 elements (16 bytes) so that the 8 rows a fragment load touches fall in different
/// banks.
template <int Head, int Keys, int Warps = 4>
struct tiles {
  static_assert(Head % 16 == 0 && Keys % 16 == 0 && Warps >= 1);
  static constexpr int head = Head, keys = Keys, warps = Warps;
  static constexpr int rows = 16 * Warps;     // query rows (forward, dQ) or key rows (dK, dV)
  static constexpr int threads = 32 * Warps;  // blockDim.x
  static constexpr int ld = Head + 8;         // a [rows][Head] tile's row stride
  static constexpr int ldt = Keys + 8;        // a transposed [Head][Keys] tile's row stride
};

/// \brief Arguments of the tensor-core kernels: 16-bit elements as bit patterns (the format is a
/// template parameter of each kernel), device memory. Per-row arrays have one entry per score row
/// ((b heads + h) n_q + i). Members a kernel does not use may be empty or null.
template <class Stat>
struct tc_args {
  tensor_view<const std::uint16_t> q, k, v;
  tensor_view<const std::uint16_t> o, d_out;  // backward: the forward's output and its gradient
  tensor_view<std::uint16_t> out, dq, dk, dv;
  attention_shape shape;
  float scale = 0;           // score = float(mma sum) * scale
  float* lse = nullptr;      // [rows]: natural log-sum-exp, written by forward
  Stat* stats = nullptr;     // [rows] for a row policy
  float* row_dot = nullptr;  // [rows]: D_i = dO_i . O_i, written by row_dot_body
  float* scores = nullptr;   // [grid, rows of a tile, n_k]: workspace of stats_body
};

/// \brief log2(e): exp(x) = exp2(x log2 e).
inline constexpr float log2e = 1.4426950408889634f;

/// \brief Ceiling of n / t for n >= 0, t > 0.
SEMFOCUS_HD SEMFOCUS_FORCEINLINE index_t tiles_of(index_t n, index_t t) noexcept {
  return (n + t - 1) / t;
}
/// \brief min(a, b).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE index_t imin(index_t a, index_t b) noexcept {
  return a < b ? a : b;
}

/// \brief The tile a block owns at grid-stride index blk: slice bh = b heads + h, rows
/// [r0, r0 + n) of `extent` (queries or keys) in tiles of `rows`, `per_slice` tiles per slice.
struct slice_tile {
  index_t bh, b, h, r0, n;
};
SEMFOCUS_HD SEMFOCUS_FORCEINLINE slice_tile tile_at(const attention_shape& sh, index_t blk,
                                                    index_t per_slice, index_t rows,
                                                    index_t extent) noexcept {
  const index_t bh = blk / per_slice, r0 = (blk % per_slice) * rows;
  return {bh, bh / sh.heads, bh % sh.heads, r0, imin(rows, extent - r0)};
}

/// \brief Whether every row of x starts on a 16-byte boundary (data 16-byte aligned, outer
/// strides multiples of 8 elements), so that stage moves 8 elements per load; O(1).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE bool rows_aligned(
    const tensor_view<const std::uint16_t>& x) noexcept {
  const tensor_strides& s = x.strides();
  return reinterpret_cast<std::uintptr_t>(x.data()) % alignof(vec8) == 0 &&
         (s.batch | s.heads | s.seq) % 8 == 0;
}

/// \brief Rows [r0, r0 + nr) and columns [0, nc) of slice (b, h) of x into an R x C tile of
/// shared memory, zeros outside (row stride ld; transposed: dst[c ld + r]). Every thread takes
/// part; no barrier inside. O(R C / threads).
///  - Rows aligned (rows_aligned): 16-byte loads of 8 columns. Untransposed, consecutive threads
///    take consecutive 8-column chunks of a row (coalesced loads, 16-byte stores without bank
///    conflicts: dst and ld are multiples of 8 elements). Transposed, consecutive threads take
///    consecutive rows of a chunk, so that each of the 8 two-byte stores of a warp fills 32
///    consecutive elements of one shared-memory row (no bank conflict).
///  - Otherwise one element per load, consecutive threads reading consecutive columns.
template <int R, int C, bool Transposed, kernel_context Ctx>
SEMFOCUS_DEVICE void stage(Ctx& ctx, std::uint16_t* dst, int ld,
                           const tensor_view<const std::uint16_t>& x, index_t b, index_t h,
                           index_t r0, index_t nr, index_t nc) {
  static_assert(C % 8 == 0);
  if (!rows_aligned(x)) {
    for (int e = ctx.thread(); e < R * C; e += ctx.threads()) {
      const int r = e / C, c = e % C;
      const std::uint16_t v = r < nr && c < nc ? x(b, h, r0 + r, c) : std::uint16_t(0);
      (Transposed ? dst[c * ld + r] : dst[r * ld + c]) = v;
    }
    return;
  }
  constexpr int chunks = C / 8;
  for (int e = ctx.thread(); e < R * chunks; e += ctx.threads()) {
    const int r = Transposed ? e % R : e / chunks, c = 8 * (Transposed ? e / R : e % chunks);
    vec8 v{};
    if (r < nr && c < nc) {
      const std::uint16_t* src = x.row(b, h, r0 + r) + c;
      if (c + 8 <= nc) {
        v = load8(src);
      } else {
        SEMFOCUS_UNROLL
        for (int j = 0; j < 8; j += 2)
          v.w[j / 2] = pack(c + j < nc ? src[j] : std::uint16_t(0),
                            c + j + 1 < nc ? src[j + 1] : std::uint16_t(0));
      }
    }
    if constexpr (Transposed) {
      SEMFOCUS_UNROLL
      for (int j = 0; j < 8; ++j) dst[(c + j) * ld + r] = element(v, j);
    } else {
      store8(dst + r * ld + c, v);
    }
  }
}

/// \brief acc[n / 8] += A B for the warp: A the 16 x K rows at a (row stride lda, in shared
/// memory), B[k][n] = bt[n ldb + k] (N columns, shared memory): K / 16 chained mma per 8
/// columns, k ascending. O(K N / 32) multiply-adds per lane.
template <class Fmt, int K, int N, kernel_context Ctx>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE void gemm_rows(Ctx& ctx, float (&acc)[N / 8][4],
                                                    const std::uint16_t* a, int lda,
                                                    const std::uint16_t* bt, int ldb) {
  const int lane = ctx.thread() % 32, g = lane / 4, t = lane % 4;
  SEMFOCUS_UNROLL
  for (int kk = 0; kk < K; kk += 16) {
    const std::uint16_t* a0 = a + g * lda + kk + 2 * t;
    const std::uint32_t af[4] = {load_pair(a0), load_pair(a0 + 8 * lda), load_pair(a0 + 8),
                                 load_pair(a0 + 8 * lda + 8)};
    SEMFOCUS_UNROLL
    for (int n = 0; n < N / 8; ++n) {
      const std::uint16_t* b0 = bt + (8 * n + g) * ldb + kk + 2 * t;
      const std::uint32_t bf[2] = {load_pair(b0), load_pair(b0 + 8)};
      ctx.template mma<Fmt>(acc[n], af, bf);
    }
  }
}

/// \brief acc[n / 8] += P B for the warp, P the 16 x K float tile held in C fragments
/// (p[k / 8]), rounded to Fmt as an A operand (two C fragments side by side are one A fragment),
/// B[k][n] = bt[n ldb + k] as gemm_rows. O(K N / 32) multiply-adds per lane.
template <class Fmt, int K, int N, kernel_context Ctx>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE void gemm_regs(Ctx& ctx, float (&acc)[N / 8][4],
                                                    const float (&p)[K / 8][4],
                                                    const std::uint16_t* bt, int ldb) {
  const int lane = ctx.thread() % 32, g = lane / 4, t = lane % 4;
  SEMFOCUS_UNROLL
  for (int kk = 0; kk < K / 16; ++kk) {
    const float* lo = p[2 * kk];
    const float* hi = p[2 * kk + 1];
    const std::uint32_t af[4] = {pack_floats<Fmt>(lo[0], lo[1]), pack_floats<Fmt>(lo[2], lo[3]),
                                 pack_floats<Fmt>(hi[0], hi[1]), pack_floats<Fmt>(hi[2], hi[3])};
    SEMFOCUS_UNROLL
    for (int n = 0; n < N / 8; ++n) {
      const std::uint16_t* b0 = bt + (8 * n + g) * ldb + 16 * kk + 2 * t;
      const std::uint32_t bf[2] = {load_pair(b0), load_pair(b0 + 8)};
      ctx.template mma<Fmt>(acc[n], af, bf);
    }
  }
}

/// \brief Zeros every element of a fragment array.
template <int N>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE void zero(float (&acc)[N][4]) {
  SEMFOCUS_UNROLL
  for (int n = 0; n < N; ++n) SEMFOCUS_UNROLL
  for (int e = 0; e < 4; ++e) acc[n][e] = 0.f;
}

/// \brief Row and column within the warp's 16 x (8 N) tile of element e of fragment n.
SEMFOCUS_HD SEMFOCUS_FORCEINLINE frag_coord elem_at(int lane, int n, int e) noexcept {
  const frag_coord c = mma_c_at(lane, e);
  return {c.row, 8 * n + c.col};
}

/// \brief Writes the warp's 16 x (8 N) float tile acc to rows rows[0], rows[1] (the lane's two
/// rows, as elem_at: elements 0-1 and 2-3) of slice (b, h) of dst, scaled by f[0], f[1] and
/// rounded to Fmt; rows at or past n and columns at or past dst.dim() are skipped. O(N) stores
/// per lane.
template <class Fmt, int N>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE void store_tile(const tensor_view<std::uint16_t>& dst,
                                                     index_t b, index_t h, int lane,
                                                     const index_t (&rows)[2], index_t n,
                                                     const float (&acc)[N][4],
                                                     const float (&f)[2]) {
  SEMFOCUS_UNROLL
  for (int k = 0; k < N; ++k) SEMFOCUS_UNROLL
  for (int e = 0; e < 4; ++e) {
    const int c = elem_at(lane, k, e).col;
    if (rows[e / 2] < n && c < dst.dim())
      dst(b, h, rows[e / 2], c) = from_float<Fmt>(acc[k][e] * f[e / 2]);
  }
}

/// \brief Whether score s of (i, j) is kept: no test on an all_kept tile.
template <class Policy, class Stat>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE bool kept(const Policy& p, tile_kind kind, const head_slice& hs,
                                           index_t i, index_t j, float s, const Stat& st) {
  return kind == tile_kind::all_kept || is_kept(p, hs, i, j, s, st);
}

/// \brief The statistics of rows i_a and i_b (no_statistic for elementwise policies; rows at or
/// past n_q get a default value).
template <class Policy, class Stat>
SEMFOCUS_DEVICE SEMFOCUS_FORCEINLINE void load_stats(Stat (&st)[2], const tc_args<Stat>& a,
                                                     index_t bh, const index_t (&i)[2]) {
  SEMFOCUS_UNROLL
  for (int x = 0; x < 2; ++x) {
    st[x] = Stat{};
    if constexpr (row_policy<Policy, float>)
      if (i[x] < a.shape.n_q) st[x] = a.stats[bh * a.shape.n_q + i[x]];
  }
}

}  // namespace semfocus::backend::cuda::tc
