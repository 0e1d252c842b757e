// SPDX-License-Identifier: MIT
// The machine's fused multiply-add peak, measured: the denominator of every "% of peak" that the
// benchmarks report (bench/report.sh, bench/peers.py), so that it is a measurement of the machine
// at hand rather than a constant from a data sheet.
//
// Each thread runs acc_i = fma(acc_i, m, c) on `chains` independent accumulators that stay in
// vector registers (no loads or stores in the loop), with the vector width of the SIMD backend
// (xsimd::default_arch, the same compile flags as the benchmarks). The FMA latency L and the
// number of FMA ports P bound the rate only if chains >= L P; the program tries 8, 10, 12 and 14
// chains (up to 16 registers on AVX2, 32 on AVX-512) and keeps the best. One FMA is 2 flops per
// lane. With m = 1 - 2^-20 and c = 2^-20 the accumulators converge to 1 and never overflow or go
// subnormal.
//
// Usage: semfocus_fma_peak [--threads N] [--seconds S] [--csv]
//   Prints, for float and double, GFLOP/s on 1 thread and on N threads (default: the hardware
//   concurrency), each the best of 5 runs of S seconds (default 0.2). --csv prints
//   "type,threads,gflops" lines instead of the table.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <semfocus/backend/simd/arch.hpp>
#include <semfocus/detail/xsimd.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

/// Runs `iters` rounds of `Chains` fma chains; returns a value that depends on every chain, so
/// that the compiler cannot drop the work.
template <class T, int Chains>
T fma_chains(long iters) {
  using batch = xsimd::batch<T>;
  const batch m(T(1) - T(1) / T(1 << 20)), c(T(1) / T(1 << 20));
  batch acc[Chains];
  for (int i = 0; i < Chains; ++i) acc[i] = batch(T(i) / T(Chains));
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < Chains; ++i) acc[i] = xsimd::fma(acc[i], m, c);
  }
  batch s = acc[0];
  for (int i = 1; i < Chains; ++i) s += acc[i];
  return xsimd::hadd(s);
}

/// GFLOP/s of `threads` threads each running fma_chains<T, Chains> for about `seconds`.
template <class T, int Chains>
double rate(int threads, double seconds) {
  constexpr double flops_per_iter = 2.0 * Chains * xsimd::batch<T>::size;
  // Calibrate the iteration count on one thread.
  long iters = 1 << 16;
  for (;;) {
    const auto t0 = clock_type::now();
    volatile T sink = fma_chains<T, Chains>(iters);
    (void)sink;
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (dt > seconds / 4) {
      iters = static_cast<long>(double(iters) * seconds / dt);
      break;
    }
    iters *= 4;
  }
  std::vector<std::thread> pool;
  std::vector<T> sinks(std::size_t(threads), T(0));
  const auto t0 = clock_type::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { sinks[std::size_t(t)] = fma_chains<T, Chains>(iters); });
  for (std::thread& th : pool) th.join();
  const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
  volatile T sink = sinks[0];
  (void)sink;
  return flops_per_iter * double(iters) * threads / dt * 1e-9;
}

template <class T>
double best_rate(int threads, double seconds) {
  constexpr bool wide = sizeof(xsimd::batch<T>) >= 64;  // 32 vector registers
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    best = std::max({best, rate<T, 8>(threads, seconds), rate<T, 10>(threads, seconds),
                     rate<T, 12>(threads, seconds), rate<T, 14>(threads, seconds)});
    if constexpr (wide)
      best = std::max({best, rate<T, 20>(threads, seconds), rate<T, 24>(threads, seconds)});
  }
  return best;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "semfocus_fma_peak: %s\nusage: semfocus_fma_peak [--threads N] "
               "[--seconds S] [--csv]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  double seconds = 0.2;
  bool csv = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--csv") {
      csv = true;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
      if (threads < 1 || threads > 1024) usage("--threads must be in [1, 1024]");
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
      if (!(seconds > 0.001 && seconds < 60)) usage("--seconds must be in (0.001, 60)");
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  const double f1 = best_rate<float>(1, seconds), fn = best_rate<float>(threads, seconds);
  const double d1 = best_rate<double>(1, seconds), dn = best_rate<double>(threads, seconds);
  if (csv) {
    std::printf("type,threads,gflops\nfloat,1,%.1f\nfloat,%d,%.1f\ndouble,1,%.1f\ndouble,%d,%.1f\n",
                f1, threads, fn, d1, threads, dn);
    return 0;
  }
  std::printf("%s\n", semfocus::simd_arch().describe().c_str());
  std::printf("FMA peak (register-resident fma chains, best of 5):\n");
  std::printf("  float : %.1f GFLOP/s on 1 thread, %.1f on %d threads\n", f1, fn, threads);
  std::printf("  double: %.1f GFLOP/s on 1 thread, %.1f on %d threads\n", d1, dn, threads);
  return 0;
}
