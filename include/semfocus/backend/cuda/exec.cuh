// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

// The CUDA execution tag (backend/tags.hpp holds the tags g++ can see).
namespace semfocus::exec {

/// \brief Which kernels the CUDA backend runs.
///  - tiled (the default): flash-style kernels (backend/cuda/flash.cuh): query and key tiles in
///    shared memory, float scores and accumulation, online softmax, fixed-mask tiles skipped,
///    row policies by a row-statistic pass then the masked flash pass; backward recomputes P from
///    the saved log-sum-exp. For float, __half and __nv_bfloat16 elements; double always runs the
///    naive kernels.
///  - naive: one block per score row with double sums and scores bit-identical to the reference
///    backend's (backend/cuda/naive.cuh): the GPU's own oracle.
enum class cuda_kernels { tiled, naive };

/// \brief The CUDA backend (backend/cuda): every tensor view passed with it addresses device
/// memory; the work is ordered on `stream` (0: the legacy default stream) and runs the kernels
/// named by `kernels`.
///
/// Use the value `semfocus::exec::cuda` (tiled kernels, default stream),
/// `semfocus::exec::cuda.on(stream)` for another stream, as Eigen's GpuDevice carries its stream,
/// and `semfocus::exec::cuda.naive()` for the naive oracle kernels (they combine:
/// `exec::cuda.naive().on(s)`). A trivially copyable value; O(1) to copy.
struct cuda_t {
  cudaStream_t stream = nullptr;
  cuda_kernels kernels = cuda_kernels::tiled;

  /// \brief The same backend on `s`; O(1), no CUDA call (the stream is not checked).
  constexpr cuda_t on(cudaStream_t s) const noexcept { return cuda_t{s, kernels}; }
  /// \brief The same backend with the naive kernels; O(1).
  constexpr cuda_t naive() const noexcept { return cuda_t{stream, cuda_kernels::naive}; }
  /// \brief The same backend with the tiled kernels (the default); O(1).
  constexpr cuda_t tiled() const noexcept { return cuda_t{stream, cuda_kernels::tiled}; }
};

/// \brief The CUDA backend on the legacy default stream, tiled kernels.
inline constexpr cuda_t cuda{};

}  // namespace semfocus::exec
