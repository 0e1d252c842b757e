// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

#include <cstring>

#include "semfocus/backend/cuda/scalar.cuh"
#include "semfocus/core/shape.hpp"
#include "semfocus/core/softmax.hpp"
#include "semfocus/core/view.hpp"
#include "semfocus/policy/concepts.hpp"

// The naive CUDA kernels: the reference backend's algorithm (backend/reference) on the GPU, one
// thread block per score row, so that the tiled kernels have an oracle on the device itself.
//  - Scores are computed exactly as the reference computes them (scores.hpp): a double fma chain
//    over c in index order, times the scale in double, rounded once to the score type. Device and
//    host double fma and multiply are correctly rounded, so the scores, hence every policy's
//    selection and row statistic, are bit-identical to the reference backend's (ties included).
//  - Log-sum-exp, probabilities, P V and every gradient sum are accumulated in double.
//  - Deterministic: every sum has a fixed order (per thread in index order, then a fixed tree
//    over the block of naive_block threads), so results are bit-reproducible run to run and do
//    not depend on the grid size. No atomics: dK and dV are column sums by a kernel per key.
// Launch configuration and workspace sizes: launch.cuh.
namespace semfocus::backend::cuda {

/// \brief Threads per block of every naive kernel (a power of two: the reduction tree needs it).
inline constexpr int naive_block = 128;

/// \brief Marks an unkept entry in the probability workspace (no probability is negative).
inline constexpr double unkept = -1.0;

/// \brief s = S(scale * sum_c q[c] k[c]), the sum a double fma chain in index order: the
/// reference backend's score formula (backend/reference/scores.hpp), bit for bit. O(d).
template <class S, class In>
__device__ S score(const In* q, const In* k, index_t d, double scale) noexcept {
  double acc = 0;
  for (index_t c = 0; c < d; ++c) acc = fma(to_double(q[c]), to_double(k[c]), acc);
  return static_cast<S>(scale * acc);
}

/// \brief The arguments of naive_forward_rows. Views address device memory; lse and stats have
/// one entry per score row ((b heads + h) n_q + i); scores and probs are [gridDim.x, n_k].
template <class In, class Stat>
struct forward_args {
  tensor_view<const In> q, k, v;
  tensor_view<In> out;
  attention_shape shape;
  double scale = 0;
  double* lse = nullptr;               // [rows]
  Stat* stats = nullptr;               // [rows] for a row policy, else null
  cuda_score_t<In>* scores = nullptr;  // [gridDim.x, n_k] workspace
  double* probs = nullptr;             // [gridDim.x, n_k] workspace
};

/// \brief The arguments of naive_backward_rows and naive_backward_columns: the slices
/// [slice0, slice0 + slices) of batch x heads; probs and dscores hold P and dS of those slices,
/// [slices, n_q, n_k] (unkept entries: probs = unkept, dscores = 0).
template <class In, class Stat>
struct backward_args {
  tensor_view<const In> q, k, v, d_out;
  tensor_view<In> dq, dk, dv;
  attention_shape shape;
  double scale = 0;
  const double* lse = nullptr;  // [rows]
  const Stat* stats = nullptr;  // [rows] for a row policy, else null
  index_t slice0 = 0, slices = 0;
  double* probs = nullptr;    // [slices, n_q, n_k] workspace
  double* dscores = nullptr;  // [slices, n_q, n_k] workspace
};

namespace detail {

/// \brief Sum of x over the block, by a fixed tree (bit-reproducible); every thread gets it.
/// `sh` holds naive_block doubles. Contains __syncthreads: call from every thread.
__device__ inline double block_sum(double x, double* sh) {
  sh[threadIdx.x] = x;
  __syncthreads();
  for (unsigned w = naive_block / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

/// \brief The merge of every thread's online_softmax by the same fixed tree; `mx` and `sum` hold
/// naive_block doubles each. Contains __syncthreads: call from every thread.
__device__ inline online_softmax<double> block_softmax(online_softmax<double> a, double* mx,
                                                       double* sum) {
  mx[threadIdx.x] = a.max;
  sum[threadIdx.x] = a.sum;
  __syncthreads();
  for (unsigned w = naive_block / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      online_softmax<double> l, r;
      l.max = mx[threadIdx.x];
      l.sum = sum[threadIdx.x];
      r.max = mx[threadIdx.x + w];
      r.sum = sum[threadIdx.x + w];
      l.merge(r);
      mx[threadIdx.x] = l.max;
      sum[threadIdx.x] = l.sum;
    }
    __syncthreads();
  }
  online_softmax<double> r;
  r.max = mx[0];
  r.sum = sum[0];
  __syncthreads();
  return r;
}

/// \brief Uninitialised storage for a T (a trivially copyable statistic) in shared memory, where
/// a type with default member initialisers cannot be declared.
template <class T>
struct alignas(T) raw_storage {
  unsigned char bytes[sizeof(T)];
};

/// \brief (b, h, i) of flat score row r = (b heads + h) n_q + i.
struct row_coords {
  index_t b, h, i;
};
__device__ inline row_coords split_row(index_t r, const attention_shape& s) noexcept {
  const index_t bh = r / s.n_q;
  return {bh / s.heads, bh % s.heads, r % s.n_q};
}

}  // namespace detail

/// \brief Forward, one block per score row (grid-stride over the rows): the scores of the row
/// into the block's workspace row, the row statistic (thread 0, the policy's own code) for a row
/// policy, the kept set, the log-sum-exp over it, P, and O_i = sum_j P_ij V_j (threads over the
/// d_v columns, j in index order). Writes out, lse and stats. An empty row gets O_i = 0 and
/// lse = -inf. Per row O(n_k (d + d_v)) work; launch with naive_block threads.
template <class Policy, class In>
__global__ void __launch_bounds__(naive_block)
    naive_forward_rows(Policy p, forward_args<In, row_statistic_t<Policy, cuda_score_t<In>>> a) {
  using S = cuda_score_t<In>;
  using Stat = row_statistic_t<Policy, S>;
  __shared__ double mx[naive_block], sum[naive_block];
  __shared__ detail::raw_storage<Stat> st_shared;
  const attention_shape& sh = a.shape;
  const index_t t = threadIdx.x, n_k = sh.n_k;
  S* s = a.scores + index_t(blockIdx.x) * n_k;       // (n_k)
  double* pr = a.probs + index_t(blockIdx.x) * n_k;  // (n_k)
  for (index_t r = blockIdx.x; r < sh.rows(); r += gridDim.x) {
    const auto [b, h, i] = detail::split_row(r, sh);
    const head_slice hs{b, h, sh.n_q, n_k};
    const In* qi = a.q.row(b, h, i);
    for (index_t j = t; j < n_k; j += naive_block)
      s[j] = score<S>(qi, a.k.row(b, h, j), sh.d, a.scale);
    __syncthreads();
    Stat st{};
    if constexpr (row_policy<Policy, S>) {
      if (t == 0) {
        st = p.row_statistic(hs, i, s);
        std::memcpy(st_shared.bytes, &st, sizeof(Stat));
        a.stats[r] = st;
      }
      __syncthreads();
      std::memcpy(&st, st_shared.bytes, sizeof(Stat));
    }
    online_softmax<double> acc;
    for (index_t j = t; j < n_k; j += naive_block) {
      const bool kept = is_kept(p, hs, i, j, s[j], st);
      if (kept) acc.add(s[j]);
      pr[j] = kept ? 0.0 : unkept;
    }
    const double lse = detail::block_softmax(acc, mx, sum).lse();
    for (index_t j = t; j < n_k; j += naive_block)
      if (pr[j] != unkept) pr[j] = softmax_probability<double>(s[j], lse);
    __syncthreads();
    for (index_t c = t; c < sh.d_v; c += naive_block) {
      double o = 0;
      for (index_t j = 0; j < n_k; ++j)
        if (pr[j] != unkept) o += pr[j] * to_double(a.v(b, h, j, c));
      a.out(b, h, i, c) = from_double<In>(o);
    }
    if (t == 0) a.lse[r] = lse;
    __syncthreads();  // the workspace row and st_shared are reused by the next row
  }
}

/// \brief Backward, one block per score row of the chunk's slices (grid-stride): recomputes the
/// scores and the forward's kept set (saved statistic), P_ij = exp(s_ij - lse_i),
/// dP_ij = dO_i . V_j, D_i = sum_j P_ij dP_ij, dS_ij = P_ij (dP_ij - D_i) on the kept set, stores
/// P and dS in the workspace and writes dQ_i = scale sum_j dS_ij K_j (threads over d, j in index
/// order). Per row O(n_k (d + d_v)) work; launch with naive_block threads.
template <class Policy, class In>
__global__ void __launch_bounds__(naive_block)
    naive_backward_rows(Policy p, backward_args<In, row_statistic_t<Policy, cuda_score_t<In>>> a) {
  using S = cuda_score_t<In>;
  using Stat = row_statistic_t<Policy, S>;
  __shared__ double red[naive_block];
  const attention_shape& sh = a.shape;
  const index_t t = threadIdx.x, n_k = sh.n_k;
  for (index_t lr = blockIdx.x; lr < a.slices * sh.n_q; lr += gridDim.x) {
    const index_t r = a.slice0 * sh.n_q + lr;
    const auto [b, h, i] = detail::split_row(r, sh);
    const head_slice hs{b, h, sh.n_q, n_k};
    Stat st{};
    if constexpr (row_policy<Policy, S>) st = a.stats[r];
    const double lse = a.lse[r];
    double* pr = a.probs + lr * n_k;    // (n_k)
    double* ds = a.dscores + lr * n_k;  // (n_k)
    const In* qi = a.q.row(b, h, i);
    const In* doi = a.d_out.row(b, h, i);
    double dot = 0;  // this thread's part of D_i
    for (index_t j = t; j < n_k; j += naive_block) {
      const S sij = score<S>(qi, a.k.row(b, h, j), sh.d, a.scale);
      if (!is_kept(p, hs, i, j, sij, st)) {
        pr[j] = unkept;
        ds[j] = 0;
        continue;
      }
      const In* vj = a.v.row(b, h, j);
      double dp = 0;
      for (index_t c = 0; c < sh.d_v; ++c) dp += to_double(doi[c]) * to_double(vj[c]);
      pr[j] = softmax_probability<double>(sij, lse);
      ds[j] = dp;
      dot += pr[j] * dp;
    }
    const double row_dot = detail::block_sum(dot, red);
    for (index_t j = t; j < n_k; j += naive_block)
      if (pr[j] != unkept) ds[j] = softmax_backward(pr[j], ds[j], row_dot);
    __syncthreads();
    for (index_t c = t; c < sh.d; c += naive_block) {
      double acc = 0;
      for (index_t j = 0; j < n_k; ++j)
        if (pr[j] != unkept) acc += ds[j] * to_double(a.k(b, h, j, c));
      a.dq(b, h, i, c) = from_double<In>(a.scale * acc);
    }
  }
}

/// \brief Backward, one block per key column of the chunk's slices (grid-stride), after
/// naive_backward_rows: dK_j = scale sum_i dS_ij Q_i and dV_j = sum_i P_ij dO_i over the rows
/// that kept j, i in index order (threads over the columns of dK and dV). Independent of the
/// policy. Per key O(n_q (d + d_v)) work; launch with naive_block threads.
template <class In, class Stat>
__global__ void __launch_bounds__(naive_block) naive_backward_columns(backward_args<In, Stat> a) {
  const attention_shape& sh = a.shape;
  const index_t t = threadIdx.x, n_k = sh.n_k;
  for (index_t col = blockIdx.x; col < a.slices * n_k; col += gridDim.x) {
    const index_t ls = col / n_k, j = col % n_k, bh = a.slice0 + ls;
    const index_t b = bh / sh.heads, h = bh % sh.heads;
    const double* pr = a.probs + ls * sh.n_q * n_k + j;    // (n_q), stride n_k
    const double* ds = a.dscores + ls * sh.n_q * n_k + j;  // (n_q), stride n_k
    for (index_t c = t; c < sh.d || c < sh.d_v; c += naive_block) {
      double dk = 0, dv = 0;
      for (index_t i = 0; i < sh.n_q; ++i) {
        const double pij = pr[i * n_k];
        if (pij == unkept) continue;
        if (c < sh.d) dk += ds[i * n_k] * to_double(a.q(b, h, i, c));
        if (c < sh.d_v) dv += pij * to_double(a.d_out(b, h, i, c));
      }
      if (c < sh.d) a.dk(b, h, j, c) = from_double<In>(a.scale * dk);
      if (c < sh.d_v) a.dv(b, h, j, c) = from_double<In>(dv);
    }
  }
}

}  // namespace semfocus::backend::cuda
