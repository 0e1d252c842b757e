// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include "semfocus/config.hpp"
#include "semfocus/detail/xsimd.hpp"

namespace semfocus {

/// \brief What the SIMD backend of this translation unit runs on, against what the CPU offers.
///
/// The backend's kernels use `xsimd::default_arch`: the widest vector extension that the
/// translation unit's compiler flags enable (`-march=native`, `x86-64-v3`, ...), fixed at
/// compile time. A CPU may offer more (an AVX-512 machine running a binary built for
/// `x86-64-v3`); then the backend is correct but runs, and is tested, on the narrower path.
struct simd_arch_info {
  /// xsimd's name of the compiled arch ("avx512bw", "fma3+avx2", "sse2", "neon64", ...).
  const char* name = "";
  /// Lanes of one vector register for float and for double.
  index_t float_lanes = 0;
  index_t double_lanes = 0;
  /// xsimd's name of the widest arch this CPU supports (runtime cpuid), "" if xsimd knows none.
  const char* cpu_best = "";
  /// True when the compiled arch is at least as wide as the CPU's best: nothing is left unused.
  bool is_cpu_best = false;

  /// \brief One line, e.g. "simd arch: avx512bw, 16 floats / 8 doubles per vector (the widest
  /// this CPU has)" or, when narrower than the CPU, "... NOTE: this CPU also has avx512bw; the
  /// SIMD backend is compiled for, and exercises, the narrower fma3+avx2 path". O(1).
  std::string describe() const {
    std::string s = std::string("simd arch: ") + name + ", " + std::to_string(float_lanes) +
                    " floats / " + std::to_string(double_lanes) + " doubles per vector";
    if (is_cpu_best) return s + " (the widest this CPU has)";
    return s + ". NOTE: this CPU also has " + cpu_best +
           "; the SIMD backend is compiled for, and exercises, the narrower " + name +
           " path (build with -march=native for the widest)";
  }
};

/// \brief The SIMD backend's arch in this translation unit and the CPU's best (cpuid, read once
/// by xsimd). O(number of xsimd archs).
inline simd_arch_info simd_arch() noexcept {
  using arch = xsimd::default_arch;
  simd_arch_info info;
  info.name = arch::name();
  info.float_lanes = static_cast<index_t>(xsimd::batch<float, arch>::size);
  info.double_lanes = static_cast<index_t>(xsimd::batch<double, arch>::size);
  const unsigned best = xsimd::available_architectures().best;
  xsimd::all_architectures::for_each([&](auto a) {
    if (decltype(a)::version() == best) info.cpu_best = decltype(a)::name();
  });
  info.is_cpu_best = arch::version() >= best;
  return info;
}

}  // namespace semfocus
