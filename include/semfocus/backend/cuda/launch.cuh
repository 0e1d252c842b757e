// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "semfocus/backend/cuda/buffer.cuh"
#include "semfocus/backend/cuda/check.cuh"
#include "semfocus/backend/cuda/exec.cuh"
#include "semfocus/backend/cuda/naive.cuh"
#include "semfocus/backend/dispatch.hpp"

// Host drivers of the naive kernels (naive.cuh): launch configuration, scratch memory, the
// record's transfers. Arguments arrive validated by semfocus::forward / backward; here only the
// memory kind of the views is checked. Every call is stream-ordered on exec.stream and returns
// after the stream has finished the work (the record lives in host memory), so errors of the
// asynchronous work surface as exceptions of the call that caused them.
namespace semfocus::backend::cuda {

/// \brief Scratch budget of forward: blocks in flight x n_k x (score + double probability).
inline constexpr std::size_t forward_workspace_bytes = std::size_t(64) << 20;
/// \brief Scratch budget of backward: (batch x heads) slices per chunk x n_q x n_k x two doubles
/// (P and dS); at least one slice, whatever its size.
inline constexpr std::size_t backward_workspace_bytes = std::size_t(256) << 20;
/// \brief Most blocks of one launch (the kernels are grid-stride loops).
inline constexpr index_t max_grid = index_t(1) << 16;

namespace detail {

/// \brief How many items of `bytes_each` fit in `budget`, clamped to [1, cap]. O(1).
inline index_t fit(std::size_t budget, std::size_t bytes_each, index_t cap) {
  const std::size_t n = budget / std::max<std::size_t>(bytes_each, 1);
  return std::clamp<index_t>(static_cast<index_t>(std::min<std::size_t>(n, std::size_t(cap))), 1,
                             std::max<index_t>(cap, 1));
}

/// \brief Throws invalid_argument unless every listed view addresses device memory.
template <class... Views>
void check_device_views(const char* fn, const Views&... named) {
  (semfocus::detail::check_device_view(fn, named.first, named.second), ...);
}

/// \brief Raises kernel's dynamic shared memory limit to `bytes` and launches it on `grid`
/// blocks of `threads` (nothing when grid is 0). \throws cuda_error on a CUDA failure.
template <class Kernel, class... Args>
void flash_launch(Kernel* kernel, const char* name, index_t grid, index_t threads,
                  std::size_t bytes, cudaStream_t stream, const Args&... args) {
  if (grid == 0) return;
  SEMFOCUS_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  semfocus::detail::discard_stale_error();
  kernel<<<unsigned(grid), unsigned(threads), bytes, stream>>>(args...);
  semfocus::detail::check_launch(name, __FILE__, __LINE__);
}

/// \brief Blocks of a tiled kernel over n rows of every slice: min(slices ceil(n / t), max_grid).
inline index_t flash_grid(const attention_shape& s, index_t n, index_t t) {
  return std::min(s.batch * s.heads * ((n + t - 1) / t), max_grid);
}

/// \brief Copies a float forward's row log-sum-exp (device, `rows` floats) and statistics
/// (device; null for an elementwise policy) into the host record, then waits for the stream.
/// \throws cuda_error on a CUDA failure.
template <class Policy>
void copy_record_to_host(forward_record_t<Policy, float>& rec, const float* lse,
                         const row_statistic_t<Policy, float>* stats, cudaStream_t stream) {
  const std::size_t rows = rec.lse.size();
  std::vector<float> host_lse(rows);
  if (rows != 0)
    SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(host_lse.data(), lse, rows * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream));
  if constexpr (forward_record_t<Policy, float>::has_statistics)
    if (rows != 0)
      SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(rec.stats.data(), stats, rows * sizeof(*stats),
                                          cudaMemcpyDeviceToHost, stream));
  SEMFOCUS_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::copy(host_lse.begin(), host_lse.end(), rec.lse.begin());
}

/// \brief Enqueues copies of a float record's log-sum-exp and statistics to device memory (`lse`,
/// and `stats` for a row policy). The host copy of the log-sum-exp is kept alive until the
/// stream is synchronised by the caller's last step, so the caller must synchronise before
/// returning. \throws cuda_error on a CUDA failure.
template <class Policy>
std::vector<float> copy_record_to_device(const forward_record_t<Policy, float>& rec, float* lse,
                                         row_statistic_t<Policy, float>* stats,
                                         cudaStream_t stream) {
  std::vector<float> host_lse(rec.lse.begin(), rec.lse.end());
  const std::size_t rows = host_lse.size();
  if (rows != 0)
    SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(lse, host_lse.data(), rows * sizeof(float),
                                        cudaMemcpyHostToDevice, stream));
  if constexpr (forward_record_t<Policy, float>::has_statistics)
    if (rows != 0)
      SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(stats, rec.stats.data(), rows * sizeof(*stats),
                                          cudaMemcpyHostToDevice, stream));
  return host_lse;
}

}  // namespace detail

/// \brief Naive forward on the device (naive_forward_rows), filling `rec` (already reset to the
/// shape and scale) with the row log-sum-exp and statistics copied back to its host arrays.
/// Time O(batch heads n_q n_k (d + d_v)) on the device; device scratch
/// O(rows + min(rows, forward_workspace_bytes / n_k) n_k). Blocks until the stream is done.
/// \throws invalid_argument if a view is pageable host memory; cuda_error on a CUDA failure. After
/// a throw the record is left unfilled (backward rejects it).
template <class Policy, cuda_scalar In>
void run_forward(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                 const tensor_view<const In>& k, const tensor_view<const In>& v,
                 const tensor_view<In>& out, forward_record_t<Policy, cuda_score_t<In>>& rec) try {
  using S = cuda_score_t<In>;
  using Stat = row_statistic_t<Policy, S>;
  using view = std::pair<const char*, tensor_view<const In>>;
  detail::check_device_views("semfocus::forward", view{"q", q}, view{"k", k}, view{"v", v},
                             view{"out", out});
  const attention_shape& sh = rec.shape;
  const index_t rows = sh.rows();
  if (rows == 0) return;
  const cudaStream_t stream = ex.stream;
  constexpr bool has_stats = forward_record_t<Policy, S>::has_statistics;
  const index_t grid =
      detail::fit(forward_workspace_bytes, std::size_t(sh.n_k) * (sizeof(S) + sizeof(double)),
                  std::min(rows, max_grid));
  const auto ws = std::size_t(grid * sh.n_k);
  device_buffer<double> lse(std::size_t(rows), stream);
  device_buffer<Stat> stats(has_stats ? std::size_t(rows) : 0, stream);
  device_buffer<S> scores(ws, stream);
  device_buffer<double> probs(ws, stream);
  const forward_args<In, Stat> a{.q = q,
                                 .k = k,
                                 .v = v,
                                 .out = out,
                                 .shape = sh,
                                 .scale = rec.scale,
                                 .lse = lse.get(),
                                 .stats = stats.get(),
                                 .scores = scores.get(),
                                 .probs = probs.get()};
  semfocus::detail::discard_stale_error();
  naive_forward_rows<Policy, In><<<unsigned(grid), naive_block, 0, stream>>>(p, a);
  SEMFOCUS_CUDA_CHECK_LAUNCH("semfocus::backend::cuda::naive_forward_rows");
  SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(rec.lse.data(), lse.get(), std::size_t(rows) * sizeof(double),
                                      cudaMemcpyDeviceToHost, stream));
  if constexpr (has_stats)
    SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(rec.stats.data(), stats.get(),
                                        std::size_t(rows) * sizeof(Stat), cudaMemcpyDeviceToHost,
                                        stream));
  SEMFOCUS_CUDA_CHECK(cudaStreamSynchronize(stream));
} catch (...) {
  rec.policy.reset();
  throw;
}

/// \brief Naive backward on the device: per chunk of (batch, head) slices, naive_backward_rows
/// (P, dS, dQ) then naive_backward_columns (dK, dV). The record's log-sum-exp and statistics are
/// copied to the device; its kept sets are re-derived from recomputed scores (bit-identical to
/// forward's). Time O(batch heads n_q n_k (d + d_v)) on the device; device scratch
/// O(rows + max(1, backward_workspace_bytes / (16 n_q n_k)) n_q n_k). Blocks until the stream is
/// done. \throws invalid_argument if a view is pageable host memory; cuda_error on a CUDA failure.
template <class Policy, cuda_scalar In>
void run_backward(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                  const tensor_view<const In>& k, const tensor_view<const In>& v,
                  const tensor_view<const In>& out, const tensor_view<const In>& d_out,
                  const forward_record_t<Policy, cuda_score_t<In>>& rec, const tensor_view<In>& dq,
                  const tensor_view<In>& dk, const tensor_view<In>& dv) {
  using S = cuda_score_t<In>;
  using Stat = row_statistic_t<Policy, S>;
  using view = std::pair<const char*, tensor_view<const In>>;
  detail::check_device_views("semfocus::backward", view{"q", q}, view{"k", k}, view{"v", v},
                             view{"out", out}, view{"d_out", d_out}, view{"dq", dq}, view{"dk", dk},
                             view{"dv", dv});
  const attention_shape& sh = rec.shape;
  const index_t total = sh.batch * sh.heads, rows = sh.rows();
  if (total == 0) return;
  const cudaStream_t stream = ex.stream;
  constexpr bool has_stats = forward_record_t<Policy, S>::has_statistics;
  device_buffer<double> lse(std::size_t(rows), stream);
  device_buffer<Stat> stats(has_stats ? std::size_t(rows) : 0, stream);
  if (rows != 0)
    SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(lse.get(), rec.lse.data(),
                                        std::size_t(rows) * sizeof(double), cudaMemcpyHostToDevice,
                                        stream));
  if constexpr (has_stats)
    if (rows != 0)
      SEMFOCUS_CUDA_CHECK(cudaMemcpyAsync(stats.get(), rec.stats.data(),
                                          std::size_t(rows) * sizeof(Stat), cudaMemcpyHostToDevice,
                                          stream));
  const index_t cells = sh.n_q * sh.n_k;  // of one slice
  const index_t chunk =
      detail::fit(backward_workspace_bytes, std::size_t(cells) * 2 * sizeof(double), total);
  device_buffer<double> probs(std::size_t(chunk * cells), stream);
  device_buffer<double> dscores(std::size_t(chunk * cells), stream);
  for (index_t slice0 = 0; slice0 < total; slice0 += chunk) {
    const backward_args<In, Stat> a{.q = q,
                                    .k = k,
                                    .v = v,
                                    .d_out = d_out,
                                    .dq = dq,
                                    .dk = dk,
                                    .dv = dv,
                                    .shape = sh,
                                    .scale = rec.scale,
                                    .lse = lse.get(),
                                    .stats = stats.get(),
                                    .slice0 = slice0,
                                    .slices = std::min(chunk, total - slice0),
                                    .probs = probs.get(),
                                    .dscores = dscores.get()};
    if (const index_t blocks = std::min(a.slices * sh.n_q, max_grid); blocks > 0) {
      semfocus::detail::discard_stale_error();
      naive_backward_rows<Policy, In><<<unsigned(blocks), naive_block, 0, stream>>>(p, a);
      SEMFOCUS_CUDA_CHECK_LAUNCH("semfocus::backend::cuda::naive_backward_rows");
    }
    if (const index_t blocks = std::min(a.slices * sh.n_k, max_grid); blocks > 0) {
      semfocus::detail::discard_stale_error();
      naive_backward_columns<In, Stat><<<unsigned(blocks), naive_block, 0, stream>>>(a);
      SEMFOCUS_CUDA_CHECK_LAUNCH("semfocus::backend::cuda::naive_backward_columns");
    }
  }
  SEMFOCUS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace semfocus::backend::cuda
