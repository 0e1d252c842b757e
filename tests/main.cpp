// SPDX-License-Identifier: MIT
// The doctest runner. Before running tests it prints the SIMD backend's arch (and a NOTE when it
// is narrower than the CPU's best), so every log says which vector path the SIMD tests exercised.
// `--simd-arch` prints only that line; listing options (-ltc, --list-*) print nothing extra, so
// CTest's test discovery reads doctest's list alone.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string_view>

#if defined(SEMFOCUS_HAS_XSIMD)
#include <semfocus/backend/simd/arch.hpp>
#endif

namespace {

void print_simd_arch() {
#if defined(SEMFOCUS_HAS_XSIMD)
  std::printf("%s\n", semfocus::simd_arch().describe().c_str());
#else
  std::printf("simd arch: none (built without xsimd: the SIMD tests are not compiled)\n");
#endif
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool listing = false;
  for (int a = 1; a < argc; ++a) {
    const std::string_view arg(argv[a]);
    if (arg == "--simd-arch") {
      print_simd_arch();
      return 0;
    }
    listing = listing || arg.starts_with("--list") || arg.starts_with("-l") ||
              arg.starts_with("--dt-list") || arg.starts_with("--dt-l");
  }
  if (!listing) print_simd_arch();
  doctest::Context context(argc, argv);
  return context.run();
}
