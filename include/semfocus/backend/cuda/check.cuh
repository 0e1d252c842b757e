// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

#include <sstream>
#include <stdexcept>
#include <string>

#include "semfocus/core/error.hpp"
#include "semfocus/core/view.hpp"

namespace semfocus {

/// \brief Thrown when a CUDA runtime call or a kernel launch of the CUDA backend fails. what()
/// names the call (its source text), where it was made, and CUDA's error name and string; code()
/// is the cudaError_t. A sticky error (e.g. an illegal address) leaves the CUDA context unusable,
/// as it would for any CUDA code.
class cuda_error : public std::runtime_error {
 public:
  cuda_error(cudaError_t code, const std::string& what) : std::runtime_error(what), code_(code) {}

  /// \brief The CUDA error code.
  cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

namespace detail {

/// \brief Throws cuda_error unless `err` is cudaSuccess; `call` is the call's source text. O(1).
inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return;
  std::ostringstream os;
  os << "semfocus: CUDA call " << call << " failed (" << file << ':' << line
     << "): " << cudaGetErrorName(err) << ": " << cudaGetErrorString(err);
  throw cuda_error(err, os.str());
}

/// \brief Discards a non-sticky error recorded by an earlier failed CUDA call (which returned it to
/// its own caller), so that the check after a launch reports that launch only. A sticky error
/// (a corrupted context) is not cleared and is reported by the next check.
inline void discard_stale_error() noexcept { static_cast<void>(cudaGetLastError()); }

/// \brief Checks the launch just made of `kernel` (cudaGetLastError: a bad configuration, or an
/// earlier asynchronous error). \throws cuda_error.
inline void check_launch(const char* kernel, const char* file, int line) {
  const std::string call = std::string("launch of ") + kernel;
  cuda_check(cudaGetLastError(), call.c_str(), file, line);
}

/// \brief Throws invalid_argument unless the data of a non-empty view is memory the device can
/// read: cudaMalloc'ed, managed, or page-locked host memory (cudaHostAlloc, cudaHostRegister).
/// Pageable host memory (std::vector, new) is rejected even where the system could map it.
/// One cudaPointerGetAttributes call. \throws cuda_error if that call fails (no device).
template <class T>
void check_device_view(const char* fn, const char* name, const tensor_view<T>& v) {
  if (v.empty()) return;
  cudaPointerAttributes attr{};
  cuda_check(cudaPointerGetAttributes(&attr, v.data()), "cudaPointerGetAttributes", __FILE__,
             __LINE__);
  require(attr.type != cudaMemoryTypeUnregistered, fn, ": ", name,
          " must address device memory (cudaMalloc, cudaMallocManaged or page-locked host "
          "memory) with exec::cuda; got a pageable host pointer");
}

}  // namespace detail
}  // namespace semfocus

/// \brief Evaluates a CUDA runtime call and throws semfocus::cuda_error naming it on failure.
#define SEMFOCUS_CUDA_CHECK(call) ::semfocus::detail::cuda_check((call), #call, __FILE__, __LINE__)

/// \brief Checks the kernel launch just made (by name) and throws semfocus::cuda_error on failure.
#define SEMFOCUS_CUDA_CHECK_LAUNCH(kernel) \
  ::semfocus::detail::check_launch(kernel, __FILE__, __LINE__)
