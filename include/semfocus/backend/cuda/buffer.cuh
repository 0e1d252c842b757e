// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "semfocus/backend/cuda/check.cuh"

namespace semfocus::backend::cuda {

/// \brief Stream-ordered device scratch memory of n elements of a trivially copyable T
/// (cudaMallocAsync / cudaFreeAsync on one stream): owned, movable, not copyable. Uninitialised.
/// n = 0 allocates nothing and get() is null.
template <class T>
class device_buffer {
 public:
  /// \throws cuda_error if the allocation fails.
  device_buffer(std::size_t n, cudaStream_t stream) : stream_(stream), size_(n) {
    if (n != 0) SEMFOCUS_CUDA_CHECK(cudaMallocAsync(&ptr_, n * sizeof(T), stream_));
  }
  device_buffer(device_buffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)),
        stream_(o.stream_),
        size_(std::exchange(o.size_, 0)) {}
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer& operator=(device_buffer&&) = delete;
  /// Frees in stream order; a failure cannot be reported from a destructor and is dropped.
  ~device_buffer() {
    if (ptr_ != nullptr) static_cast<void>(cudaFreeAsync(ptr_, stream_));
  }

  /// \brief The device pointer (null when empty).
  T* get() const noexcept { return ptr_; }
  /// \brief Number of elements.
  std::size_t size() const noexcept { return size_; }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace semfocus::backend::cuda
