// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

#include <concepts>

#include "semfocus/backend/cuda/scalar.cuh"
#include "semfocus/core/shape.hpp"
#include "semfocus/core/view.hpp"
#include "semfocus/policy/concepts.hpp"

// The tiled (flash-style) CUDA kernels, selected by exec::cuda (the default; exec::cuda.naive()
// selects the oracle kernels of naive.cuh). Elements float, __half or __nv_bfloat16; scores,
// statistics and every sum in float.
//  - Tiles: a block of `tile` threads (Br = Bc = tile, a launch parameter) owns one tile of query
//    rows (forward, dQ) or of key rows (dK, dV) of one (batch, head) slice, one row per thread;
//    the other side streams through shared memory tile by tile (grid-stride over the tiles).
//  - Scores: flash_score, a float fma chain over c in index order times the scale in double,
//    rounded to float: bit-identical in every kernel here, and to the reference backend's scores
//    whenever the float sum is exact; otherwise within float rounding, so selections agree with
//    the reference except for scores that close to a tie or a threshold.
//  - Fixed masks: each (query tile, key tile) pair is classified by the policy (classify_tile);
//    none_kept tiles are skipped (not even loaded), all_kept tiles skip the per-element test.
//  - Row policies: flash_forward_stats writes every score of a row into a workspace row and calls
//    the policy's own row_statistic on it (thread 0), so any user row policy runs unchanged; the
//    flash pass then keeps st.keep(j, s).
//  - Forward keeps FlashAttention's running max m, sum l and an unnormalised output row; an empty
//    row (or one whose kept scores are all -inf) gives out 0 and lse -inf, as the reference.
//  - Backward (FlashAttention-2): flash_backward_dq sweeps the key tiles twice per query tile,
//    first for D_i = sum_j P_ij dP_ij with P_ij = exp(s_ij - lse_i), then for
//    dQ_i = scale sum_j P_ij (dP_ij - D_i) K_j; flash_backward_dkdv owns a key tile and sweeps
//    the query tiles for dV_j = sum_i P_ij dO_i and dK_j = scale sum_i dS_ij Q_i.
//  - Deterministic: no atomics; every sum is one thread's loop in a fixed order, so results are
//    bit-reproducible for a given tile size (launch chooses it from the device and the shape).
// Launch configuration, shared memory and the record's transfers: flash_launch.cuh.
namespace semfocus::backend::cuda {

/// \brief The element types of the tiled kernels: float, __half, __nv_bfloat16 (double runs the
/// naive kernels).
template <class T>
concept cuda_half_scalar_or_float = std::same_as<T, float> || cuda_half_scalar<T>;

/// \brief Arguments of the tiled kernels. Views address device memory; per-row arrays have one
/// entry per score row ((b heads + h) n_q + i). Unused members (d_out and the gradients in
/// forward, out in backward) may be empty views.
template <class In, class Stat>
struct flash_args {
  tensor_view<const In> q, k, v, d_out;
  tensor_view<In> out, dq, dk, dv;
  attention_shape shape;
  double scale = 0;          // scores (flash_score)
  float grad_scale = 0;      // float(scale), for dQ and dK
  index_t tile = 0;          // Br = Bc = blockDim.x
  float* lse = nullptr;      // [rows]: written by forward, read by backward
  Stat* stats = nullptr;     // [rows] for a row policy, else null
  float* row_dot = nullptr;  // [rows] D_i: written by flash_backward_dq
  float* scores = nullptr;   // [gridDim.x, n_k] workspace of flash_forward_stats
};

namespace detail {

/// \brief x in float (exact for every element type of the tiled kernels); O(1).
template <class T>
__device__ SEMFOCUS_FORCEINLINE float to_float(T x) noexcept {
  return static_cast<float>(to_double(x));
}

/// \brief float(scale * sum_c q[c] k[c]): the sum a float fma chain in index order, the product
/// with the scale in double, rounded once to float (as the reference rounds its double score), so
/// that scores whose sum is exact in float (small dyadic inputs) equal the reference's bit for
/// bit. The same bits wherever q and k live. O(d).
template <class A, class B>
__device__ SEMFOCUS_FORCEINLINE float flash_score(const A* q, const B* k, index_t d,
                                                  double scale) noexcept {
  float acc = 0.f;
  for (index_t c = 0; c < d; ++c) acc = fmaf(to_float(q[c]), to_float(k[c]), acc);
  return static_cast<float>(scale * static_cast<double>(acc));
}

/// \brief sum_c a[c] b[c] as a float fma chain in index order; O(n).
__device__ SEMFOCUS_FORCEINLINE float flash_dot(const float* a, const float* b,
                                                index_t n) noexcept {
  float acc = 0.f;
  for (index_t c = 0; c < n; ++c) acc = fmaf(a[c], b[c], acc);
  return acc;
}

/// \brief Rows [r0, r0 + n) of slice (b, h) of x, as float, into dst (row stride ld); every
/// thread of the block takes part (no barrier inside). O(n cols / blockDim.x) per thread.
template <class In>
__device__ void load_rows(float* dst, index_t ld, const tensor_view<const In>& x, index_t b,
                          index_t h, index_t r0, index_t n, index_t cols) {
  for (index_t e = threadIdx.x; e < n * cols; e += blockDim.x) {
    const index_t r = e / cols, c = e % cols;
    dst[r * ld + c] = to_float(x(b, h, r0 + r, c));
  }
}

/// \brief Ceiling of n / t for n >= 0, t > 0.
__device__ SEMFOCUS_FORCEINLINE index_t tiles_of(index_t n, index_t t) noexcept {
  return (n + t - 1) / t;
}

/// \brief min(a, b) for tile extents.
__device__ SEMFOCUS_FORCEINLINE index_t imin(index_t a, index_t b) noexcept {
  return a < b ? a : b;
}

/// \brief Whether the score s of (i, j) is kept: no test on an all_kept tile.
template <class Policy, class Stat>
__device__ SEMFOCUS_FORCEINLINE bool flash_kept(const Policy& p, tile_kind kind,
                                                const head_slice& hs, index_t i, index_t j, float s,
                                                const Stat& st) {
  return kind == tile_kind::all_kept || is_kept(p, hs, i, j, s, st);
}

}  // namespace detail

/// \brief Row statistics of a row policy, one block per score row (grid-stride): the row's n_k
/// scores (flash_score) into the block's workspace row, then p.row_statistic on it (thread 0)
/// into stats. Dynamic shared memory: d floats. Per row O(n_k d / blockDim.x) per thread plus the
/// policy's own cost on one thread.
template <class Policy, class In>
__global__ void flash_forward_stats(Policy p, flash_args<In, row_statistic_t<Policy, float>> a) {
  extern __shared__ __align__(16) unsigned char flash_smem[];
  float* qs = reinterpret_cast<float*>(flash_smem);  // [d]
  const attention_shape& sh = a.shape;
  const index_t t = threadIdx.x, n_k = sh.n_k, d = sh.d;
  float* srow = a.scores + index_t(blockIdx.x) * n_k;  // (n_k)
  for (index_t r = blockIdx.x; r < sh.rows(); r += gridDim.x) {
    const index_t bh = r / sh.n_q, i = r % sh.n_q, b = bh / sh.heads, h = bh % sh.heads;
    detail::load_rows(qs, d, a.q, b, h, i, 1, d);
    __syncthreads();
    for (index_t j = t; j < n_k; j += blockDim.x)
      srow[j] = detail::flash_score(qs, a.k.row(b, h, j), d, a.scale);
    __syncthreads();
    if constexpr (row_policy<Policy, float>)
      if (t == 0) a.stats[r] = p.row_statistic(head_slice{b, h, sh.n_q, n_k}, i, srow);
    __syncthreads();  // qs and the workspace row are reused by the next row
  }
}

/// \brief Forward, one block of a.tile threads per (slice, query tile) (grid-stride): Q tile in
/// shared memory, K and V tiles streamed, online softmax per row; writes out, lse. Dynamic shared
/// memory: tile (2 d + 2 d_v + tile + 3) floats. O(tile n_k (d + d_v)) per block.
template <class Policy, class In>
__global__ void flash_forward(Policy p, flash_args<In, row_statistic_t<Policy, float>> a) {
  using Stat = row_statistic_t<Policy, float>;
  extern __shared__ __align__(16) unsigned char flash_smem[];
  const attention_shape& sh = a.shape;
  const index_t bt = a.tile, t = threadIdx.x, d = sh.d, dv = sh.d_v;
  const index_t ldq = d + 1, ldo = dv + 1, lds = bt + 1;  // padded: one row per thread
  float* qs = reinterpret_cast<float*>(flash_smem);       // [bt, d + 1]
  float* ks = qs + bt * ldq;                              // [bt, d]
  float* vs = ks + bt * d;                                // [bt, d_v]
  float* os = vs + bt * dv;                               // [bt, d_v + 1]
  float* ss = os + bt * ldo;                              // [bt, bt + 1]
  const index_t q_tiles = detail::tiles_of(sh.n_q, bt);
  for (index_t blk = blockIdx.x; blk < sh.batch * sh.heads * q_tiles; blk += gridDim.x) {
    const index_t bh = blk / q_tiles, i0 = (blk % q_tiles) * bt;
    const index_t b = bh / sh.heads, h = bh % sh.heads, nr = detail::imin(bt, sh.n_q - i0);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    const index_t i = i0 + t, r = bh * sh.n_q + i;
    const bool active = t < nr;
    detail::load_rows(qs, ldq, a.q, b, h, i0, nr, d);
    Stat st{};
    if constexpr (row_policy<Policy, float>)
      if (active) st = a.stats[r];
    float* orow = os + t * ldo;
    float* srow = ss + t * lds;
    const float* qrow = qs + t * ldq;
    for (index_t c = 0; active && c < dv; ++c) orow[c] = 0.f;
    float m = -INFINITY, l = 0.f;
    __syncthreads();
    for (index_t j0 = 0; j0 < sh.n_k; j0 += bt) {
      const index_t nc = detail::imin(bt, sh.n_k - j0);
      const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + nr, j0, j0 + nc});
      if (kind == tile_kind::none_kept) continue;  // the same for the whole block
      detail::load_rows(ks, d, a.k, b, h, j0, nc, d);
      detail::load_rows(vs, dv, a.v, b, h, j0, nc, dv);
      __syncthreads();
      if (active) {
        float mt = -INFINITY;
        for (index_t jj = 0; jj < nc; ++jj) {
          const float s = detail::flash_score(qrow, ks + jj * d, d, a.scale);
          const float x = detail::flash_kept(p, kind, hs, i, j0 + jj, s, st) ? s : -INFINITY;
          srow[jj] = x;
          mt = fmaxf(mt, x);
        }
        if (mt != -INFINITY) {
          const float m_new = fmaxf(m, mt);
          const float alpha = expf(m - m_new);  // 0 while m = -inf
          if (alpha != 1.f) {
            l *= alpha;
            for (index_t c = 0; c < dv; ++c) orow[c] *= alpha;
          }
          m = m_new;
          for (index_t jj = 0; jj < nc; ++jj) {
            if (srow[jj] == -INFINITY) continue;  // unkept, or a kept -inf (contributes 0)
            const float pj = expf(srow[jj] - m);
            l += pj;
            const float* vrow = vs + jj * dv;
            for (index_t c = 0; c < dv; ++c) orow[c] = fmaf(pj, vrow[c], orow[c]);
          }
        }
      }
      __syncthreads();  // ks, vs are reloaded
    }
    if (active) {
      const float inv = l == 0.f ? 0.f : 1.f / l;
      for (index_t c = 0; c < dv; ++c)
        a.out(b, h, i, c) = from_double<In>(static_cast<double>(orow[c] * inv));
      a.lse[r] = l == 0.f ? -INFINITY : m + logf(l);
    }
    __syncthreads();  // qs, os are reused by the next tile
  }
}

/// \brief Backward for dQ and D, one block of a.tile threads per (slice, query tile)
/// (grid-stride): two sweeps over the key tiles, the first for D_i = sum_j P_ij dP_ij (written to
/// row_dot), the second for dQ_i. Dynamic shared memory: tile (3 d + 2 d_v + 3) floats.
/// O(tile n_k (d + d_v)) per block.
template <class Policy, class In>
__global__ void flash_backward_dq(Policy p, flash_args<In, row_statistic_t<Policy, float>> a) {
  using Stat = row_statistic_t<Policy, float>;
  extern __shared__ __align__(16) unsigned char flash_smem[];
  const attention_shape& sh = a.shape;
  const index_t bt = a.tile, t = threadIdx.x, d = sh.d, dv = sh.d_v;
  const index_t ldq = d + 1, ldo = dv + 1;
  float* qs = reinterpret_cast<float*>(flash_smem);  // [bt, d + 1]
  float* dqs = qs + bt * ldq;                        // [bt, d + 1]
  float* dos = dqs + bt * ldq;                       // [bt, d_v + 1]
  float* ks = dos + bt * ldo;                        // [bt, d]
  float* vs = ks + bt * d;                           // [bt, d_v]
  const index_t q_tiles = detail::tiles_of(sh.n_q, bt);
  for (index_t blk = blockIdx.x; blk < sh.batch * sh.heads * q_tiles; blk += gridDim.x) {
    const index_t bh = blk / q_tiles, i0 = (blk % q_tiles) * bt;
    const index_t b = bh / sh.heads, h = bh % sh.heads, nr = detail::imin(bt, sh.n_q - i0);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    const index_t i = i0 + t, r = bh * sh.n_q + i;
    const bool active = t < nr;
    detail::load_rows(qs, ldq, a.q, b, h, i0, nr, d);
    detail::load_rows(dos, ldo, a.d_out, b, h, i0, nr, dv);
    Stat st{};
    if constexpr (row_policy<Policy, float>)
      if (active) st = a.stats[r];
    const float lse = active ? a.lse[r] : -INFINITY;
    const bool live = lse != -INFINITY;  // an empty row has P = 0 and zero gradients
    float* dqrow = dqs + t * ldq;
    const float* qrow = qs + t * ldq;
    const float* dorow = dos + t * ldo;
    for (index_t c = 0; active && c < d; ++c) dqrow[c] = 0.f;
    float row_dot = 0.f;
    __syncthreads();
    for (int sweep = 0; sweep < 2; ++sweep) {
      for (index_t j0 = 0; j0 < sh.n_k; j0 += bt) {
        const index_t nc = detail::imin(bt, sh.n_k - j0);
        const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + nr, j0, j0 + nc});
        if (kind == tile_kind::none_kept) continue;
        detail::load_rows(ks, d, a.k, b, h, j0, nc, d);
        detail::load_rows(vs, dv, a.v, b, h, j0, nc, dv);
        __syncthreads();
        for (index_t jj = 0; live && jj < nc; ++jj) {
          const float s = detail::flash_score(qrow, ks + jj * d, d, a.scale);
          if (!detail::flash_kept(p, kind, hs, i, j0 + jj, s, st)) continue;
          const float pij = expf(s - lse);
          const float dp = detail::flash_dot(dorow, vs + jj * dv, dv);
          if (sweep == 0) {
            row_dot = fmaf(pij, dp, row_dot);
          } else {
            const float ds = pij * (dp - row_dot);
            const float* krow = ks + jj * d;
            for (index_t c = 0; c < d; ++c) dqrow[c] = fmaf(ds, krow[c], dqrow[c]);
          }
        }
        __syncthreads();
      }
    }
    if (active) {
      a.row_dot[r] = row_dot;
      for (index_t c = 0; c < d; ++c)
        a.dq(b, h, i, c) = from_double<In>(static_cast<double>(a.grad_scale * dqrow[c]));
    }
    __syncthreads();
  }
}

/// \brief Backward for dK and dV, one block of a.tile threads per (slice, key tile)
/// (grid-stride), after flash_backward_dq: sweeps the query tiles (Q, dO, lse, D and the row
/// statistics staged in shared memory). Dynamic shared memory:
/// tile (sizeof(Stat) rounded up to 16 bytes) + tile (3 d + 3 d_v + 6) floats.
/// O(tile n_q (d + d_v)) per block.
template <class Policy, class In>
__global__ void flash_backward_dkdv(Policy p, flash_args<In, row_statistic_t<Policy, float>> a) {
  using Stat = row_statistic_t<Policy, float>;
  static_assert(alignof(Stat) <= 16, "row statistics must not need more than 16-byte alignment");
  extern __shared__ __align__(16) unsigned char flash_smem[];
  const attention_shape& sh = a.shape;
  const index_t bt = a.tile, t = threadIdx.x, d = sh.d, dv = sh.d_v;
  const index_t ldk = d + 1, ldv = dv + 1;
  Stat* sts = reinterpret_cast<Stat*>(flash_smem);  // [bt]
  float* ks = reinterpret_cast<float*>(flash_smem + (bt * index_t(sizeof(Stat)) + 15) / 16 * 16);
  float* vs = ks + bt * ldk;    // [bt, d_v + 1]
  float* dks = vs + bt * ldv;   // [bt, d + 1]
  float* dvs = dks + bt * ldk;  // [bt, d_v + 1]
  float* qs = dvs + bt * ldv;   // [bt, d]
  float* dos = qs + bt * d;     // [bt, d_v]
  float* lses = dos + bt * dv;  // [bt]
  float* dots = lses + bt;      // [bt]
  const index_t k_tiles = detail::tiles_of(sh.n_k, bt);
  for (index_t blk = blockIdx.x; blk < sh.batch * sh.heads * k_tiles; blk += gridDim.x) {
    const index_t bh = blk / k_tiles, j0 = (blk % k_tiles) * bt;
    const index_t b = bh / sh.heads, h = bh % sh.heads, nc = detail::imin(bt, sh.n_k - j0);
    const head_slice hs{b, h, sh.n_q, sh.n_k};
    const index_t j = j0 + t;
    const bool active = t < nc;
    detail::load_rows(ks, ldk, a.k, b, h, j0, nc, d);
    detail::load_rows(vs, ldv, a.v, b, h, j0, nc, dv);
    float* dkrow = dks + t * ldk;
    float* dvrow = dvs + t * ldv;
    const float* krow = ks + t * ldk;
    const float* vrow = vs + t * ldv;
    for (index_t c = 0; active && c < d; ++c) dkrow[c] = 0.f;
    for (index_t c = 0; active && c < dv; ++c) dvrow[c] = 0.f;
    __syncthreads();
    for (index_t i0 = 0; i0 < sh.n_q; i0 += bt) {
      const index_t nr = detail::imin(bt, sh.n_q - i0);
      const tile_kind kind = classify_tile(p, hs, tile{i0, i0 + nr, j0, j0 + nc});
      if (kind == tile_kind::none_kept) continue;
      detail::load_rows(qs, d, a.q, b, h, i0, nr, d);
      detail::load_rows(dos, dv, a.d_out, b, h, i0, nr, dv);
      if (t < nr) {
        const index_t r = bh * sh.n_q + i0 + t;
        lses[t] = a.lse[r];
        dots[t] = a.row_dot[r];
        if constexpr (row_policy<Policy, float>) sts[t] = a.stats[r];
      }
      __syncthreads();
      for (index_t ii = 0; active && ii < nr; ++ii) {
        if (lses[ii] == -INFINITY) continue;
        const float* qrow = qs + ii * d;
        const float s = detail::flash_score(qrow, krow, d, a.scale);
        if (!detail::flash_kept(p, kind, hs, i0 + ii, j, s, sts[ii])) continue;
        const float pij = expf(s - lses[ii]);
        const float* dorow = dos + ii * dv;
        const float ds = pij * (detail::flash_dot(dorow, vrow, dv) - dots[ii]);
        for (index_t c = 0; c < dv; ++c) dvrow[c] = fmaf(pij, dorow[c], dvrow[c]);
        for (index_t c = 0; c < d; ++c) dkrow[c] = fmaf(ds, qrow[c], dkrow[c]);
      }
      __syncthreads();
    }
    if (active) {
      for (index_t c = 0; c < d; ++c)
        a.dk(b, h, j, c) = from_double<In>(static_cast<double>(a.grad_scale * dkrow[c]));
      for (index_t c = 0; c < dv; ++c)
        a.dv(b, h, j, c) = from_double<In>(static_cast<double>(dvrow[c]));
    }
    __syncthreads();
  }
}

}  // namespace semfocus::backend::cuda
