// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "semfocus/backend/cuda/buffer.cuh"
#include "semfocus/backend/cuda/check.cuh"
#include "semfocus/backend/cuda/exec.cuh"
#include "semfocus/backend/cuda/flash.cuh"
#include "semfocus/backend/cuda/launch.cuh"
#include "semfocus/backend/cuda/tc_launch.cuh"
#include "semfocus/backend/dispatch.hpp"

// Host drivers of the tiled kernels (flash.cuh) and the choice between them and the naive ones
// (launch.cuh) by exec::cuda_t::kernels. As launch.cuh: arguments arrive validated, the views'
// memory kind is checked here, every call is stream-ordered on exec.stream and returns when the
// stream has finished it, and every CUDA call and launch is checked.
namespace semfocus::backend::cuda {

/// \brief Threads per block of flash_forward_stats.
inline constexpr int flash_stats_block = 128;

/// \brief Tile sizes tried, largest first: Br = Bc = threads per block of the tiled kernels.
inline constexpr index_t flash_tiles[] = {64, 32, 16};

namespace detail {

/// \brief Dynamic shared memory of flash_forward, flash_backward_dq and flash_backward_dkdv for
/// tile t, in bytes (see their comments); O(1).
struct flash_smem {
  std::size_t forward, backward_dq, backward_dkdv;
  std::size_t most() const noexcept { return std::max({forward, backward_dq, backward_dkdv}); }
};
inline flash_smem flash_smem_bytes(index_t t, const attention_shape& s, std::size_t stat_bytes) {
  const auto f = [](index_t floats) { return std::size_t(floats) * sizeof(float); };
  return {f(t * (2 * s.d + 2 * s.d_v + t + 3)), f(t * (3 * s.d + 2 * s.d_v + 3)),
          (std::size_t(t) * stat_bytes + 15) / 16 * 16 + f(t * (3 * s.d + 3 * s.d_v + 6))};
}

/// \brief The largest tile of flash_tiles whose kernels (forward and backward alike, so that both
/// use one tiling) fit the current device's opt-in shared memory per block. One
/// cudaGetDevice and one cudaDeviceGetAttribute. \throws invalid_argument when none fits (d or
/// d_v too large; exec::cuda.naive() has no such limit); cuda_error on a CUDA failure.
template <class Stat>
index_t choose_flash_tile(const char* fn, const attention_shape& s) {
  int dev = 0, limit = 0;
  SEMFOCUS_CUDA_CHECK(cudaGetDevice(&dev));
  SEMFOCUS_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  for (const index_t t : flash_tiles)
    if (flash_smem_bytes(t, s, sizeof(Stat)).most() <= std::size_t(limit)) return t;
  semfocus::detail::require(false, fn,
                            ": the tiled CUDA kernels need more shared memory than the device's ",
                            limit, " bytes per block for d = ", s.d, ", d_v = ", s.d_v,
                            "; use exec::cuda.naive() for such head dimensions");
  return 0;
}

}  // namespace detail

/// \brief Tiled forward on the device (flash_forward_stats for a row policy, then
/// flash_forward), filling `rec` (already reset to the shape and scale) with the row
/// log-sum-exp and statistics. Elements float, __half or __nv_bfloat16.
/// Time O(batch heads n_q n_k (d + d_v)) on the device (plus the policy's row_statistic per row,
/// on one thread each); device scratch O(rows + min(rows, forward_workspace_bytes / n_k) n_k)
/// floats. Blocks until the stream is done. \throws invalid_argument for pageable host memory or
/// too large d, d_v; cuda_error on a CUDA failure. After a throw the record is left unfilled.
template <class Policy, cuda_half_scalar_or_float In>
void run_flash_forward(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                       const tensor_view<const In>& k, const tensor_view<const In>& v,
                       const tensor_view<In>& out, forward_record_t<Policy, float>& rec) try {
  using Stat = row_statistic_t<Policy, float>;
  using view = std::pair<const char*, tensor_view<const In>>;
  constexpr const char* fn = "semfocus::forward";
  detail::check_device_views(fn, view{"q", q}, view{"k", k}, view{"v", v}, view{"out", out});
  const attention_shape& sh = rec.shape;
  const index_t rows = sh.rows();
  if (rows == 0) return;
  const cudaStream_t stream = ex.stream;
  constexpr bool has_stats = forward_record_t<Policy, float>::has_statistics;
  const index_t t = detail::choose_flash_tile<Stat>(fn, sh);
  device_buffer<float> lse(std::size_t(rows), stream);
  device_buffer<Stat> stats(has_stats ? std::size_t(rows) : 0, stream);
  const index_t stat_grid =
      has_stats ? detail::fit(forward_workspace_bytes, std::size_t(sh.n_k) * sizeof(float),
                              std::min(rows, max_grid))
                : 0;
  device_buffer<float> scores(std::size_t(stat_grid * sh.n_k), stream);
  flash_args<In, Stat> a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.shape = sh;
  a.scale = rec.scale;
  a.grad_scale = static_cast<float>(rec.scale);
  a.tile = t;
  a.lse = lse.get();
  a.stats = stats.get();
  a.scores = scores.get();
  if constexpr (has_stats)
    detail::flash_launch(&flash_forward_stats<Policy, In>,
                         "semfocus::backend::cuda::flash_forward_stats", stat_grid,
                         flash_stats_block, std::size_t(sh.d) * sizeof(float), stream, p, a);
  detail::flash_launch(&flash_forward<Policy, In>, "semfocus::backend::cuda::flash_forward",
                       detail::flash_grid(sh, sh.n_q, t), t,
                       detail::flash_smem_bytes(t, sh, sizeof(Stat)).forward, stream, p, a);
  detail::copy_record_to_host(rec, lse.get(), stats.get(), stream);
} catch (...) {
  rec.policy.reset();
  throw;
}

/// \brief Tiled backward on the device: flash_backward_dq (D and dQ) then flash_backward_dkdv
/// (dK, dV). The record's log-sum-exp (rounded to float) and statistics are copied to the
/// device; kept sets are re-derived from recomputed float scores (a saved selection is not
/// used). Time O(batch heads n_q n_k (d + d_v)) on the device; device scratch O(rows) floats.
/// Blocks until the stream is done. \throws invalid_argument for pageable host memory or too
/// large d, d_v; cuda_error on a CUDA failure.
template <class Policy, cuda_half_scalar_or_float In>
void run_flash_backward(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                        const tensor_view<const In>& k, const tensor_view<const In>& v,
                        const tensor_view<const In>& out, const tensor_view<const In>& d_out,
                        const forward_record_t<Policy, float>& rec, const tensor_view<In>& dq,
                        const tensor_view<In>& dk, const tensor_view<In>& dv) {
  using Stat = row_statistic_t<Policy, float>;
  using view = std::pair<const char*, tensor_view<const In>>;
  constexpr const char* fn = "semfocus::backward";
  detail::check_device_views(fn, view{"q", q}, view{"k", k}, view{"v", v}, view{"out", out},
                             view{"d_out", d_out}, view{"dq", dq}, view{"dk", dk}, view{"dv", dv});
  const attention_shape& sh = rec.shape;
  const index_t rows = sh.rows();
  if (sh.batch * sh.heads == 0) return;
  const cudaStream_t stream = ex.stream;
  constexpr bool has_stats = forward_record_t<Policy, float>::has_statistics;
  const index_t t = detail::choose_flash_tile<Stat>(fn, sh);
  device_buffer<float> lse(std::size_t(rows), stream);
  device_buffer<float> row_dot(std::size_t(rows), stream);
  device_buffer<Stat> stats(has_stats ? std::size_t(rows) : 0, stream);
  const std::vector<float> staged =
      detail::copy_record_to_device(rec, lse.get(), stats.get(), stream);
  flash_args<In, Stat> a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.d_out = d_out;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  a.shape = sh;
  a.scale = rec.scale;
  a.grad_scale = static_cast<float>(rec.scale);
  a.tile = t;
  a.lse = lse.get();
  a.stats = stats.get();
  a.row_dot = row_dot.get();
  const detail::flash_smem bytes = detail::flash_smem_bytes(t, sh, sizeof(Stat));
  detail::flash_launch(&flash_backward_dq<Policy, In>, "semfocus::backend::cuda::flash_backward_dq",
                       detail::flash_grid(sh, sh.n_q, t), t, bytes.backward_dq, stream, p, a);
  detail::flash_launch(&flash_backward_dkdv<Policy, In>,
                       "semfocus::backend::cuda::flash_backward_dkdv",
                       detail::flash_grid(sh, sh.n_k, t), t, bytes.backward_dkdv, stream, p, a);
  SEMFOCUS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

/// \brief Forward by the kernels ex.kernels names: tiled for float and 16-bit elements, naive
/// otherwise (double, or exec::cuda.naive()). Costs and errors of run_flash_forward /
/// run_forward.
template <class Policy, cuda_scalar In>
void forward_on_device(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                       const tensor_view<const In>& k, const tensor_view<const In>& v,
                       const tensor_view<In>& out,
                       forward_record_t<Policy, cuda_score_t<In>>& rec) {
  if constexpr (cuda_half_scalar_or_float<In>)
    if (ex.kernels == exec::cuda_kernels::tiled) {
      if constexpr (cuda_half_scalar<In>)
        if (detail::tc_supported(rec.shape)) return run_tc_forward(ex, p, q, k, v, out, rec);
      return run_flash_forward(ex, p, q, k, v, out, rec);
    }
  run_forward(ex, p, q, k, v, out, rec);
}

/// \brief Backward by the kernels ex.kernels names, as forward_on_device. Costs and errors of
/// run_flash_backward / run_backward.
template <class Policy, cuda_scalar In>
void backward_on_device(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                        const tensor_view<const In>& k, const tensor_view<const In>& v,
                        const tensor_view<const In>& out, const tensor_view<const In>& d_out,
                        const forward_record_t<Policy, cuda_score_t<In>>& rec,
                        const tensor_view<In>& dq, const tensor_view<In>& dk,
                        const tensor_view<In>& dv) {
  if constexpr (cuda_half_scalar_or_float<In>)
    if (ex.kernels == exec::cuda_kernels::tiled) {
      if constexpr (cuda_half_scalar<In>)
        if (detail::tc_supported(rec.shape))
          return run_tc_backward(ex, p, q, k, v, out, d_out, rec, dq, dk, dv);
      return run_flash_backward(ex, p, q, k, v, out, d_out, rec, dq, dk, dv);
    }
  run_backward(ex, p, q, k, v, out, d_out, rec, dq, dk, dv);
}

}  // namespace semfocus::backend::cuda
