// SPDX-License-Identifier: MIT
// Builds against semfocus::simd: xsimd must be found through the installed package.
#include <semfocus/semfocus.hpp>
#include <xsimd/xsimd.hpp>

#include <cstdio>

int main() {
  static_assert(SEMFOCUS_HAS_XSIMD == 1);
  xsimd::batch<float> b(2.0f);
  const float sum = xsimd::hadd(b * b);
  const bool ok = sum == 4.0f * static_cast<float>(xsimd::batch<float>::size);
  std::printf("consumer_simd: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
