// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "semfocus/config.hpp"
#include "semfocus/detail/numeric.hpp"

// Headers of backend/cuda/tc/ hold the tensor-core kernels' bodies. They compile with nvcc (as
// device code, wrapped by the __global__ kernels of backend/cuda/tc_launch.cuh) and with a host
// compiler (the emulation harness of tests/cuda/ runs them on CPU threads), so they include no
// CUDA header: 16-bit elements travel as their bit patterns (std::uint16_t) and every thread,
// barrier, shuffle and matrix instruction goes through a context object (tc/context.hpp).
#if defined(__CUDACC__)
/// \brief A kernel body's function: device code under nvcc, plain code for the host emulation.
#define SEMFOCUS_DEVICE __device__
#else
#define SEMFOCUS_DEVICE
#endif

/// \brief Fully unrolls the loop that follows under nvcc, so that fragment arrays indexed by its
/// counter stay in registers (a dynamic index would place them in local memory).
#if defined(__CUDACC__)
#define SEMFOCUS_UNROLL _Pragma("unroll")
#else
#define SEMFOCUS_UNROLL
#endif

namespace semfocus::backend::cuda::tc {

/// \brief IEEE binary16 (__half) elements.
struct f16 {
  static constexpr const char* name = "f16";
};
/// \brief bfloat16 (__nv_bfloat16) elements.
struct bf16 {
  static constexpr const char* name = "bf16";
};

/// \brief The value of 16-bit pattern h of format Fmt, exactly, as float; O(1).
template <class Fmt>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE float to_float(std::uint16_t h) noexcept {
  if constexpr (std::is_same_v<Fmt, bf16>) {
    return semfocus::detail::bit_cast<float>(std::uint32_t(h) << 16);
  } else {
    // binary16: sign, 5 exponent bits (bias 15), 10 fraction bits. A subnormal's value is
    // fraction * 2^-24, exact in float; otherwise the exponent is rebiased (+112) and the
    // fraction shifted into place, inf and NaN mapping to exponent 255.
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fu, f = h & 0x3ffu;
    if (e == 0) {
      const float m = static_cast<float>(f) * 5.9604644775390625e-8f;  // 2^-24
      return sign != 0 ? -m : m;
    }
    const std::uint32_t exp = e == 0x1f ? 0xffu : e + 112u;
    return semfocus::detail::bit_cast<float>(sign | (exp << 23) | (f << 13));
  }
}

/// \brief x rounded to the nearest value of format Fmt (ties to even; overflow to inf, NaN kept
/// a quiet NaN), as its 16-bit pattern: what __float2half_rn / __float2bfloat16_rn return. O(1).
template <class Fmt>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE std::uint16_t from_float(float x) noexcept {
  const std::uint32_t u = semfocus::detail::bit_cast<std::uint32_t>(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u, mag = u & 0x7fffffffu;
  if constexpr (std::is_same_v<Fmt, bf16>) {
    if (mag > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);  // quiet NaN
    return std::uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  } else {
    if (mag > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);   // quiet NaN
    if (mag >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // >= 65520: inf
    if (mag < 0x38800000u) {
      // Below 2^-14: a subnormal (or zero), mag * 2^24 rounded to an integer, ties to even. The
      // float product is exact (a power-of-two scaling), and the integer part is < 2^10 + 1.
      const float scaled = semfocus::detail::bit_cast<float>(mag) * 16777216.f;  // 2^24
      auto q = static_cast<std::uint32_t>(scaled);
      const float rest = scaled - static_cast<float>(q);
      q += (rest > 0.5f || (rest == 0.5f && (q & 1u) != 0)) ? 1u : 0u;
      return std::uint16_t(sign | q);
    }
    // Normal: rebias the exponent (-112) and round the 13 dropped fraction bits to even; a
    // carry out of the fraction correctly bumps the exponent (up to inf).
    const std::uint32_t r = mag - (112u << 23);
    return std::uint16_t(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
}

/// \brief Two elements packed as one 32-bit register of a matrix fragment: lo in bits 0-15 (the
/// lower column or row index), hi in bits 16-31; O(1).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE std::uint32_t pack(std::uint16_t lo, std::uint16_t hi) noexcept {
  return std::uint32_t(lo) | (std::uint32_t(hi) << 16);
}

/// \brief lo, hi rounded to Fmt and packed (pack); O(1).
/// On sm_80 and newer one cvt.rn.{f16,bf16}x2.f32 instruction (the same rounding).
template <class Fmt>
SEMFOCUS_HD SEMFOCUS_FORCEINLINE std::uint32_t pack_floats(float lo, float hi) noexcept {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  std::uint32_t r;
  if constexpr (std::is_same_v<Fmt, bf16>)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#else
  return pack(from_float<Fmt>(lo), from_float<Fmt>(hi));
#endif
}

/// \brief The 32-bit word at p (two consecutive 16-bit elements; p 4-byte aligned); O(1).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE std::uint32_t load_pair(const std::uint16_t* p) noexcept {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const std::uint32_t*>(p);
#else
  std::uint32_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
#endif
}

/// \brief Eight consecutive 16-bit elements, 16 bytes: element j in bits 16 (j % 2) of w[j / 2].
struct alignas(16) vec8 {
  std::uint32_t w[4];
};

/// \brief Element j (0 <= j < 8) of v; O(1).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE std::uint16_t element(const vec8& v, int j) noexcept {
  return std::uint16_t(v.w[j / 2] >> (16 * (j % 2)));
}

/// \brief The 8 elements at p as one 128-bit load; p must be 16-byte aligned (the host version
/// aborts otherwise, so that the emulation catches what would fault on a GPU); O(1).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE vec8 load8(const std::uint16_t* p) noexcept {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const vec8*>(p);
#else
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(vec8) != 0) std::abort();
  vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
#endif
}

/// \brief Stores v's 8 elements at p as one 128-bit store; p 16-byte aligned as for load8; O(1).
SEMFOCUS_HD SEMFOCUS_FORCEINLINE void store8(std::uint16_t* p, const vec8& v) noexcept {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<vec8*>(p) = v;
#else
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(vec8) != 0) std::abort();
  std::memcpy(p, &v, sizeof v);
#endif
}

}  // namespace semfocus::backend::cuda::tc
