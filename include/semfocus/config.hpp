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

/// \brief Bracket the #include of a third-party header (Eigen, xsimd) in semfocus headers.
///
/// Third-party headers are system headers (-isystem), so their ordinary warnings never show.
/// g++'s middle-end warnings are the exception: they are issued after inlining, at the innermost
/// location of the inlining stack, and g++ keeps them unless every location of that stack is in
/// a system header. g++ 12 (GCC PR 105593) then reports `__Y` as (maybe) used uninitialized
/// inside its own avx512fintrin.h / avxintrin.h (the deliberately undefined pass-through of
/// _mm512_cvttps_epi32, _mm512_extractf64x4_pd, ...) wherever Eigen's or xsimd's AVX-512 code is
/// inlined into a function of ours or a user's: a false positive that -Werror turns into a
/// broken build on every AVX-512 machine. g++ consults `#pragma GCC diagnostic` at each location
/// of the inlining stack, so silencing these warnings for the lines of the third-party headers
/// removes exactly them; the including code keeps every warning. The header must be included
/// for the first time inside the bracket (a later include is a no-op once its guards are set).
// clang-format off
#if defined(__GNUC__) && !defined(__clang__)
#define SEMFOCUS_THIRD_PARTY_BEGIN                                \
  _Pragma("GCC diagnostic push")                                  \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")     \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")           \
  _Pragma("GCC diagnostic ignored \"-Warray-bounds\"")            \
  _Pragma("GCC diagnostic ignored \"-Wstringop-overflow\"")
#define SEMFOCUS_THIRD_PARTY_END _Pragma("GCC diagnostic pop")
#else
#define SEMFOCUS_THIRD_PARTY_BEGIN
#define SEMFOCUS_THIRD_PARTY_END
#endif
// clang-format on

namespace semfocus {

/// \brief Signed index and extent type of the library (as Eigen::Index).
using index_t = std::ptrdiff_t;

/// \brief The element types of the CPU backends' tensors: float or double.
template <class T>
concept real_scalar = std::same_as<T, float> || std::same_as<T, double>;

}  // namespace semfocus
