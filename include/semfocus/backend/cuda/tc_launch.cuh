// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "semfocus/backend/cuda/buffer.cuh"
#include "semfocus/backend/cuda/check.cuh"
#include "semfocus/backend/cuda/exec.cuh"
#include "semfocus/backend/cuda/launch.cuh"
#include "semfocus/backend/cuda/scalar.cuh"
#include "semfocus/backend/cuda/tc/backward.hpp"
#include "semfocus/backend/cuda/tc/forward.hpp"
#include "semfocus/backend/dispatch.hpp"

// The tensor-core kernels (tc/*.hpp bodies) on a GPU: the device context, the __global__
// wrappers and their host drivers. Used by exec::cuda (tiled kernels) for __half and
// __nv_bfloat16 elements on devices of compute capability 8.0 or newer with d, d_v <= 128;
// other cases run the scalar tiled kernels (flash.cuh). Calls are ordered on exec.stream and
// return when it has finished; every CUDA call and launch is checked.
namespace semfocus::backend::cuda {

/// \brief The kernel_context of a thread of a CUDA block (tc/context.hpp): threadIdx, blockIdx,
/// __syncthreads, full-mask warp intrinsics and mma.sync.aligned.m16n8k16 (sm_80 and newer;
/// older targets trap, and the drivers never launch there).
struct device_context {
  __device__ int thread() const { return int(threadIdx.x); }
  __device__ int threads() const { return int(blockDim.x); }
  __device__ index_t block() const { return index_t(blockIdx.x); }
  __device__ index_t grid() const { return index_t(gridDim.x); }
  __device__ unsigned char* smem() const {
    extern __shared__ __align__(16) unsigned char tc_smem[];
    return tc_smem;
  }
  __device__ void sync() { __syncthreads(); }
  __device__ void sync_warp() { __syncwarp(); }
  __device__ float shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
  __device__ std::uint32_t ballot(bool b) { return __ballot_sync(0xffffffffu, b); }
  __device__ std::uint32_t atomic_add(std::uint32_t* p, std::uint32_t v) { return atomicAdd(p, v); }
  template <class Fmt>
  __device__ void mma(float* c, const std::uint32_t* a, const std::uint32_t* b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (std::is_same_v<Fmt, tc::bf16>)
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
          "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
          "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)c;
    (void)a;
    (void)b;
    __trap();
#endif
  }
};

/// \name The tensor-core kernels: one block of Cfg::threads threads; see the bodies in
/// tc/forward.hpp and tc/backward.hpp.
/// \{
template <class Fmt, class Cfg, class Policy, class Stat>
__global__ void __launch_bounds__(Cfg::threads, 1) tc_stats(Policy p, tc::tc_args<Stat> a) {
  device_context ctx;
  tc::stats_body<Fmt, Cfg>(ctx, p, a);
}
template <class Fmt, class Cfg, class Policy, class Stat>
__global__ void __launch_bounds__(Cfg::threads, 1) tc_forward(Policy p, tc::tc_args<Stat> a) {
  device_context ctx;
  tc::forward_body<Fmt, Cfg>(ctx, p, a);
}
template <class Fmt, class Stat>
__global__ void tc_row_dot(tc::tc_args<Stat> a) {
  device_context ctx;
  tc::row_dot_body<Fmt>(ctx, a);
}
template <class Fmt, class Cfg, class Policy, class Stat>
__global__ void __launch_bounds__(Cfg::threads, 1) tc_dq(Policy p, tc::tc_args<Stat> a) {
  device_context ctx;
  tc::dq_body<Fmt, Cfg>(ctx, p, a);
}
template <class Fmt, class Cfg, class Policy, class Stat>
__global__ void __launch_bounds__(Cfg::threads, 1) tc_dkdv(Policy p, tc::tc_args<Stat> a) {
  device_context ctx;
  tc::dkdv_body<Fmt, Cfg>(ctx, p, a);
}
/// \}

/// \brief The two tile configurations: head dimensions up to 64 with key tiles of 64, up to 128
/// with key tiles of 32 (fewer registers for the larger accumulators).
using tc_tiles_64 = tc::tiles<64, 64>;
using tc_tiles_128 = tc::tiles<128, 32>;

/// \brief Scratch budget of the statistics pass: blocks in flight x 64 rows x n_k float scores.
inline constexpr std::size_t tc_stats_workspace_bytes = std::size_t(256) << 20;

/// \brief The tensor-core format of a 16-bit element type.
template <class T>
using tc_format_t = std::conditional_t<std::is_same_v<T, __half>, tc::f16, tc::bf16>;

namespace detail {

/// \brief Whether the tensor-core kernels run this problem on the current device: compute
/// capability >= 8.0 and d, d_v <= 128. One cudaGetDevice and one attribute query.
/// \throws cuda_error on a CUDA failure.
inline bool tc_supported(const attention_shape& s) {
  int dev = 0, major = 0;
  SEMFOCUS_CUDA_CHECK(cudaGetDevice(&dev));
  SEMFOCUS_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major >= 8 && s.d <= 128 && s.d_v <= 128;
}

/// \brief A view of 16-bit elements as their bit patterns (same shape and strides); O(1).
template <class T>
tensor_view<std::conditional_t<std::is_const_v<T>, const std::uint16_t, std::uint16_t>> as_bits(
    const tensor_view<T>& x) {
  using U = std::conditional_t<std::is_const_v<T>, const std::uint16_t, std::uint16_t>;
  return {reinterpret_cast<U*>(x.data()), x.shape(), x.strides()};
}

template <class Cfg, class Fmt, class Policy, class In>
void tc_forward_with(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                     const tensor_view<const In>& k, const tensor_view<const In>& v,
                     const tensor_view<In>& out, forward_record_t<Policy, float>& rec) {
  using Stat = row_statistic_t<Policy, float>;
  constexpr bool has_stats = forward_record_t<Policy, float>::has_statistics;
  const attention_shape& sh = rec.shape;
  const index_t rows = sh.rows();
  const cudaStream_t stream = ex.stream;
  const index_t grid = flash_grid(sh, sh.n_q, Cfg::rows);
  const index_t stat_grid = has_stats ? fit(tc_stats_workspace_bytes,
                                            std::size_t(Cfg::rows * sh.n_k) * sizeof(float), grid)
                                      : 0;
  device_buffer<float> lse(std::size_t(rows), stream);
  device_buffer<Stat> stats(has_stats ? std::size_t(rows) : 0, stream);
  device_buffer<float> scores(std::size_t(stat_grid * Cfg::rows * sh.n_k), stream);
  tc::tc_args<Stat> a{};
  a.q = as_bits(q);
  a.k = as_bits(k);
  a.v = as_bits(v);
  a.out = as_bits(out);
  a.shape = sh;
  a.scale = static_cast<float>(rec.scale);
  a.lse = lse.get();
  a.stats = stats.get();
  a.scores = scores.get();
  if constexpr (has_stats)
    flash_launch(&tc_stats<Fmt, Cfg, Policy, Stat>, "semfocus::backend::cuda::tc_stats", stat_grid,
                 Cfg::threads, tc::stats_smem_bytes<Cfg>(), stream, p, a);
  flash_launch(&tc_forward<Fmt, Cfg, Policy, Stat>, "semfocus::backend::cuda::tc_forward", grid,
               Cfg::threads, tc::forward_smem_bytes<Cfg>(), stream, p, a);
  copy_record_to_host(rec, lse.get(), stats.get(), stream);
}

template <class Cfg, class Fmt, class Policy, class In>
void tc_backward_with(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                      const tensor_view<const In>& k, const tensor_view<const In>& v,
                      const tensor_view<const In>& out, const tensor_view<const In>& d_out,
                      const forward_record_t<Policy, float>& rec, const tensor_view<In>& dq,
                      const tensor_view<In>& dk, const tensor_view<In>& dv) {
  using Stat = row_statistic_t<Policy, float>;
  const attention_shape& sh = rec.shape;
  const cudaStream_t stream = ex.stream;
  const index_t rows = sh.rows();
  device_buffer<float> lse(std::size_t(rows), stream);
  device_buffer<float> row_dot(std::size_t(rows), stream);
  device_buffer<Stat> stats(forward_record_t<Policy, float>::has_statistics ? std::size_t(rows) : 0,
                            stream);
  const std::vector<float> staged = copy_record_to_device(rec, lse.get(), stats.get(), stream);
  tc::tc_args<Stat> a{};
  a.q = as_bits(q);
  a.k = as_bits(k);
  a.v = as_bits(v);
  a.o = as_bits(out);
  a.d_out = as_bits(d_out);
  a.dq = as_bits(dq);
  a.dk = as_bits(dk);
  a.dv = as_bits(dv);
  a.shape = sh;
  a.scale = static_cast<float>(rec.scale);
  a.lse = lse.get();
  a.stats = stats.get();
  a.row_dot = row_dot.get();
  flash_launch(&tc_row_dot<Fmt, Stat>, "semfocus::backend::cuda::tc_row_dot",
               std::min((rows + 255) / 256, max_grid), 256, 0, stream, a);
  flash_launch(&tc_dq<Fmt, Cfg, Policy, Stat>, "semfocus::backend::cuda::tc_dq",
               flash_grid(sh, sh.n_q, Cfg::rows), Cfg::threads, tc::dq_smem_bytes<Cfg>(), stream, p,
               a);
  flash_launch(&tc_dkdv<Fmt, Cfg, Policy, Stat>, "semfocus::backend::cuda::tc_dkdv",
               flash_grid(sh, sh.n_k, Cfg::rows), Cfg::threads, tc::dkdv_smem_bytes<Cfg, Stat>(),
               stream, p, a);
  SEMFOCUS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace detail

/// \brief Tensor-core forward on the device for __half / __nv_bfloat16 (tc_stats for a row
/// policy, then tc_forward), filling `rec` (already reset) with the row log-sum-exp and
/// statistics. Requires tc_supported(rec.shape). Time O(batch heads n_q n_k (d + d_v)) on the
/// device at tensor-core rate over the kept tiles; device scratch O(rows) floats plus, for a row
/// policy, min(tiles, tc_stats_workspace_bytes / (256 n_k)) x 64 n_k floats. Blocks until the
/// stream is done. \throws invalid_argument for pageable host memory; cuda_error on a CUDA
/// failure. After a throw the record is left unfilled.
template <class Policy, cuda_half_scalar In>
void run_tc_forward(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                    const tensor_view<const In>& k, const tensor_view<const In>& v,
                    const tensor_view<In>& out, forward_record_t<Policy, float>& rec) try {
  using view = std::pair<const char*, tensor_view<const In>>;
  detail::check_device_views("semfocus::forward", view{"q", q}, view{"k", k}, view{"v", v},
                             view{"out", out});
  const attention_shape& sh = rec.shape;
  if (sh.rows() == 0) return;
  using Fmt = tc_format_t<In>;
  if (std::max(sh.d, sh.d_v) <= 64)
    detail::tc_forward_with<tc_tiles_64, Fmt>(ex, p, q, k, v, out, rec);
  else
    detail::tc_forward_with<tc_tiles_128, Fmt>(ex, p, q, k, v, out, rec);
} catch (...) {
  rec.policy.reset();
  throw;
}

/// \brief Tensor-core backward on the device for __half / __nv_bfloat16: tc_row_dot
/// (D_i = dO_i . O_i from `out`), tc_dq, then tc_dkdv. The record's log-sum-exp and statistics
/// are copied to the device; kept sets are re-derived from recomputed scores, bit-identical to
/// the forward's. Requires tc_supported(rec.shape). Time O(batch heads n_q n_k (d + d_v)) on the
/// device; device scratch O(rows) floats. Blocks until the stream is done.
/// \throws invalid_argument for pageable host memory; cuda_error on a CUDA failure.
template <class Policy, cuda_half_scalar In>
void run_tc_backward(const exec::cuda_t& ex, const Policy& p, const tensor_view<const In>& q,
                     const tensor_view<const In>& k, const tensor_view<const In>& v,
                     const tensor_view<const In>& out, const tensor_view<const In>& d_out,
                     const forward_record_t<Policy, float>& rec, const tensor_view<In>& dq,
                     const tensor_view<In>& dk, const tensor_view<In>& dv) {
  using view = std::pair<const char*, tensor_view<const In>>;
  detail::check_device_views("semfocus::backward", view{"q", q}, view{"k", k}, view{"v", v},
                             view{"out", out}, view{"d_out", d_out}, view{"dq", dq}, view{"dk", dk},
                             view{"dv", dv});
  const attention_shape& sh = rec.shape;
  if (sh.batch * sh.heads == 0) return;
  using Fmt = tc_format_t<In>;
  if (std::max(sh.d, sh.d_v) <= 64)
    detail::tc_backward_with<tc_tiles_64, Fmt>(ex, p, q, k, v, out, d_out, rec, dq, dk, dv);
  else
    detail::tc_backward_with<tc_tiles_128, Fmt>(ex, p, q, k, v, out, d_out, rec, dq, dk, dv);
}

}  // namespace semfocus::backend::cuda
