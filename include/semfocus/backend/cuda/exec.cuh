// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

// The CUDA execution tag (backend/tags.hpp holds the tags g++ can see).
namespace semfocus::exec {

/// \brief The CUDA backend (backend/cuda): every tensor view passed with it addresses device
/// memory; the work is ordered on `stream` (0: the legacy default stream).
///
/// Use the value `semfocus::exec::cuda`, or `semfocus::exec::cuda.on(stream)` for another stream,
/// as Eigen's GpuDevice carries its stream. A trivially copyable value; O(1) to copy.
struct cuda_t {
  cudaStream_t stream = nullptr;

  /// \brief The same backend on `s`; O(1), no CUDA call (the stream is not checked).
  constexpr cuda_t on(cudaStream_t s) const noexcept { return cuda_t{s}; }
};

/// \brief The CUDA backend on the legacy default stream.
inline constexpr cuda_t cuda{};

}  // namespace semfocus::exec
