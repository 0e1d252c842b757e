// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstddef>

/// \brief Marks a function callable from host and device code (a policy member a kernel calls).
#if defined(__CUDACC__)
#define SEMFOCUS_HD __host__ __device__
#else
#define SEMFOCUS_HD
#endif

#if defined(_MSC_VER)
#define SEMFOCUS_FORCEINLINE __forceinline
#else
#define SEMFOCUS_FORCEINLINE inline __attribute__((always_inline))
#endif

namespace semfocus {

/// \brief Signed index and extent type of the library (as Eigen::Index).
using index_t = std::ptrdiff_t;

/// \brief The element types of the CPU backends' tensors: float or double.
template <class T>
concept real_scalar = std::same_as<T, float> || std::same_as<T, double>;

}  // namespace semfocus
