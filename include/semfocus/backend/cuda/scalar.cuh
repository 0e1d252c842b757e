// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <concepts>
#include <type_traits>

#include "semfocus/config.hpp"

// Element types of the CUDA backend. Besides float and double (real_scalar, as on the CPU), the
// 16-bit storage types __half and __nv_bfloat16 are accepted; their scores, the policies'
// statistics and the record are float, and every sum is accumulated in double (the naive kernels
// are the GPU's oracle, so accuracy comes before speed).
namespace semfocus {

/// \brief The 16-bit storage types of the CUDA backend: __half and __nv_bfloat16.
template <class T>
concept cuda_half_scalar = std::same_as<T, __half> || std::same_as<T, __nv_bfloat16>;

/// \brief Every element type of the CUDA backend: float, double, __half, __nv_bfloat16.
template <class T>
concept cuda_scalar = real_scalar<T> || cuda_half_scalar<T>;

/// \brief The score type for elements of type T: T itself for float and double, float for the
/// 16-bit types. Policies select on scores of this type and the record is
/// forward_record_t<Policy, cuda_score_t<T>>.
template <cuda_scalar T>
using cuda_score_t = std::conditional_t<real_scalar<T>, T, float>;

}  // namespace semfocus

namespace semfocus::backend::cuda {

/// \brief The exact value of x in double (every element type converts exactly); O(1).
template <cuda_scalar T>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE double to_double(T x) noexcept {
  if constexpr (std::same_as<T, __half>)
    return static_cast<double>(__half2float(x));
  else if constexpr (std::same_as<T, __nv_bfloat16>)
    return static_cast<double>(__bfloat162float(x));
  else
    return static_cast<double>(x);
}

/// \brief x rounded to T (to nearest, ties to even); O(1).
template <cuda_scalar T>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE T from_double(double x) noexcept {
  if constexpr (std::same_as<T, __half>)
    return __double2half(x);
  else if constexpr (std::same_as<T, __nv_bfloat16>)
    return __double2bfloat16(x);
  else
    return static_cast<T>(x);
}

}  // namespace semfocus::backend::cuda
