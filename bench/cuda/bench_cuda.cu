// SPDX-License-Identifier: MIT
// Benchmarks of the CUDA backend's tiled (flash-style) kernels (semfocus::exec::cuda), timed with
// CUDA events. Prints "no CUDA device: skipped" and exits 0 where no GPU is present (a benchmark
// binary, not a test). bench/cuda/report_cuda.sh prints the Markdown table from it;
// bench/cuda/sdpa_reference.py times PyTorch's scaled_dot_product_attention on the same shapes.
//
// Names: <dir>/<policy>/<impl>/<dtype>/n:<n>/d:<d>/bh:<batch*heads>/manual_time, with
//   dir     fwd (forward) or bwd (backward, from a record made by an untimed forward);
//   policy  dense, causal (semfocus::causal), banded:256, top_k:64 or threshold (tau = 1.5);
//   impl    tiled (exec::cuda, the default kernels) or naive (exec::cuda.naive(): dense, float,
//           n = 1024 only, as a comparison point; the naive kernels are far too slow beyond);
//   dtype   f32 (float) or bf16 (__nv_bfloat16; float scores and sums, see backend/cuda);
//   n in {1024, 2048, 4096, 8192, 16384} (n_q = n_k), d in {64, 128} (d = d_v).
// "/manual_time" is Google Benchmark's suffix for UseManualTime: each iteration's time is
// cudaEventElapsedTime between two events recorded on a dedicated stream around ONE public
// semfocus::forward / semfocus::backward call (exec::cuda.on(stream)). That call includes what the
// public API does on that stream besides the kernels: the record's statistics copied to the host
// (forward) or back to the device (backward), and any device scratch it allocates. Host-side
// argument checks before the first enqueue are not inside the events. Select shapes with
// --benchmark_filter, e.g. --benchmark_filter='^fwd/dense/tiled/f32/n:4096/'.
//
// Problem size: batch * heads * n = 262144 tokens (= 16 * 16384) for every n, so that the work
// fills the GPU at every n: batch = 1 and heads = bh = 262144 / n (256 heads at n = 1024, 16 at
// n = 16384; the kernels see only the product batch * heads). q, k, v, d_out: pseudo-random
// approximately unit-normal values (a counter-based hash and Box-Muller, fixed seeds) written once
// per benchmark on the device; contiguous [batch, heads, n, d] tensors; scale 1/sqrt(d). All device
// buffers, the record, the stream and the events are made once per benchmark, before an untimed
// warm-up call; the timed loop allocates nothing of its own.
//
// Counters (rates per manual-time second, already scaled by 1e-12, so CSV/JSON hold TFLOP/s):
//   TFLOPs       dense-equivalent ("effective") FLOP rate, the FlashAttention convention: per
//                head, forward = 4 n_q n_k d (Q K^T and P V, 2 FLOP per multiply-add), backward =
//                2.5 x forward = 10 n_q n_k d (recomputed Q K^T, dP = dO V^T, dV, dQ, dK), whatever
//                the policy: causal and sparse policies are charged the SAME dense count, so their
//                saving shows as a higher rate. (FlashAttention's own benchmarks halve the count
//                for causal; here that halved count is kept_TFLOPs.)
//   kept_TFLOPs  the dense count times the fraction of (query, key) pairs the policy keeps:
//                causal (n + 1) / (2 n), banded k / n, top_k k / n, dense 1. Not reported for
//                threshold: its kept count depends on the data and is not in the record (which
//                holds one score floor per row), and counting it would need a separate score pass;
//                the column is left empty.
//   kept_fraction  that fraction (not a rate; absent for threshold).
//   bytes_per_second  (SetBytesProcessed) bytes of the interface tensors, each counted once per
//                call: forward reads q, k, v and writes out (4 tensors); backward reads q, k, v,
//                out, d_out and writes dq, dk, dv (8). Record traffic and intermediates are not
//                counted.
//
// Threshold: keeps s_ij >= max_j s_ij - tau (policy/threshold.hpp); with unit-normal q, k and
// scale 1/sqrt(d), tau = 1.5 keeps a few percent of the keys (see bench/bench_simd.cpp).
#include <benchmark/benchmark.h>

#include <semfocus/cuda.cuh>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>

#include "bench_support.cuh"

namespace sf = semfocus;
using sf::index_t;
using namespace semfocus::bench;

namespace {

template <class T>
void set_counters(benchmark::State& state, direction dir, const sf::attention_shape& s,
                  double kept) {
  const double tflop = dense_flops(dir, s) * 1e-12;
  state.counters["TFLOPs"] =
      benchmark::Counter(tflop, benchmark::Counter::kIsIterationInvariantRate);
  if (kept >= 0) {
    state.counters["kept_TFLOPs"] =
        benchmark::Counter(tflop * kept, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["kept_fraction"] = benchmark::Counter(kept);
  }
  const std::int64_t tensor = s.q().size() * std::int64_t(sizeof(T));
  state.SetBytesProcessed(state.iterations() * (dir == direction::fwd ? 4 : 8) * tensor);
}

// --- benchmark body
// ----------------------------------------------------------------------------------

template <class Policy, class T>
void bm_cuda(benchmark::State& state, Policy policy, direction dir, sf::exec::cuda_t kernels,
             index_t n, index_t d) {
  const sf::attention_shape s{1, kTokens / n, n, n, d, d};
  try {
    timing t;
    attention_problem<T, Policy> pr(s, policy, kernels.on(t.stream));
    const auto fwd = [&] { pr.forward(); };
    const auto bwd = [&] { pr.backward(); };
    // Untimed warm-up: loads the kernels and sizes the record; for bwd it also makes the record
    // (and out) that every timed backward reads.
    fwd();
    if (dir == direction::bwd) bwd();
    for (auto _ : state) {
      state.SetIterationTime(dir == direction::fwd ? t.seconds(fwd) : t.seconds(bwd));
    }
    set_counters<T>(state, dir, s, kept_fraction(policy, n));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// --- registration
// ------------------------------------------------------------------------------------

constexpr index_t kSeqs[] = {1024, 2048, 4096, 8192, 16384};
constexpr index_t kDims[] = {64, 128};
constexpr direction kDirections[] = {direction::fwd, direction::bwd};

template <class T>
constexpr const char* dtype_name = std::is_same_v<T, float> ? "f32" : "bf16";

std::string bench_name(direction dir, const std::string& policy, const char* impl,
                       const char* dtype, index_t n, index_t d) {
  return std::string(dir == direction::fwd ? "fwd" : "bwd") + "/" + policy + "/" + impl + "/" +
         dtype + "/n:" + std::to_string(n) + "/d:" + std::to_string(d) +
         "/bh:" + std::to_string(kTokens / n);
}

template <class T, class Policy>
void register_policy(const std::string& policy_name, const Policy& policy) {
  for (const direction dir : kDirections)
    for (const index_t n : kSeqs)
      for (const index_t d : kDims)
        benchmark::RegisterBenchmark(
            bench_name(dir, policy_name, "tiled", dtype_name<T>, n, d).c_str(),
            [=](benchmark::State& state) {
              bm_cuda<Policy, T>(state, policy, dir, sf::exec::cuda, n, d);
            })
            ->Unit(benchmark::kMillisecond)
            ->UseManualTime();
}

template <class T>
void register_dtype() {
  register_policy<T>("dense", sf::dense{});
  register_policy<T>("causal", sf::causal{});
  register_policy<T>("banded:" + std::to_string(kBandK), sf::banded(kBandK));
  register_policy<T>("top_k:" + std::to_string(kTopK), sf::top_k(kTopK));
  register_policy<T>("threshold", sf::threshold(kThresholdTau));
}

void register_all() {
  // Dense first: Google Benchmark's CSV header takes the counter names of the first benchmark.
  register_dtype<float>();
  register_dtype<__nv_bfloat16>();
  // The naive oracle kernels at n = 1024 only (a few iterations: they are slow).
  for (const direction dir : kDirections)
    for (const index_t d : kDims)
      benchmark::RegisterBenchmark(bench_name(dir, "dense", "naive", "f32", 1024, d).c_str(),
                                   [=](benchmark::State& state) {
                                     bm_cuda<sf::dense, float>(state, sf::dense{}, dir,
                                                               sf::exec::cuda.naive(), 1024, d);
                                   })
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime()
          ->Iterations(3);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
