// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <type_traits>

#include "semfocus/config.hpp"

// Host-device numeric helpers. std::numeric_limits and std::bit_cast are host-only constexpr
// functions under nvcc (without --expt-relaxed-constexpr), so these use compiler builtins.
namespace semfocus::detail {

/// \brief +infinity of T (float or double).
template <class T>
SEMFOCUS_HD constexpr T infinity() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return __builtin_huge_valf();
  else
    return static_cast<T>(__builtin_huge_val());
}

/// \brief Largest finite value of T (float or double).
template <class T>
SEMFOCUS_HD constexpr T max_finite() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return __FLT_MAX__;
  else
    return static_cast<T>(__DBL_MAX__);
}

/// \brief True for NaN (valid unless the consumer compiles with -ffinite-math-only).
template <class T>
SEMFOCUS_HD constexpr bool is_nan(T x) noexcept {
  return x != x;
}

/// \brief Unsigned integer of the same width as T.
template <class T>
using bits_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <class To, class From>
SEMFOCUS_HD To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  __builtin_memcpy(&to, &from, sizeof(To));
  return to;
}

/// \brief Monotone map of non-NaN scores to unsigned integers: a < b iff key(a) < key(b), and
/// key(-0) == key(+0). Used by the exact radix selection of rank policies.
template <class T>
SEMFOCUS_HD bits_t<T> order_key(T s) noexcept {
  using U = bits_t<T>;
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  const U u = bit_cast<U>(s == T(0) ? T(0) : s);
  return (u & sign) ? U(~u) : U(u | sign);
}

/// \brief 64-bit mixing function (splitmix64 finaliser): a bijection with good avalanche.
SEMFOCUS_HD constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace semfocus::detail
