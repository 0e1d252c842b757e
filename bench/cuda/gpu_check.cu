// SPDX-License-Identifier: MIT
// The timings of bench/cuda/gpu_check.sh, without Google Benchmark (the GPU machines it targets
// may lack it): semfocus's tiled CUDA kernels (tensor cores for bf16 on sm_80+) on the issue's
// shapes, one CSV line per (policy, direction, d, n):
//   policy,dir,dtype,n,d,bh,ms,tflops
// ms: median of --iters CUDA-event times of one public semfocus::forward / backward call after
// one untimed warm-up (as bench_cuda.cu); tflops: the dense-equivalent rate (forward 4 n^2 d,
// backward 10 n^2 d per head, whatever the policy). batch * heads * n = 262144 tokens.
// Prints "no CUDA device: skipped" and exits 0 without a GPU.
//   gpu_check [--iters N]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "bench_support.cuh"

namespace sf = semfocus;
using sf::index_t;
using namespace semfocus::bench;

namespace {

template <class Policy>
void time_policy(const char* name, const Policy& policy, index_t n, index_t d, bool backward,
                 int iters) {
  using T = __nv_bfloat16;
  const sf::attention_shape s{1, kTokens / n, n, n, d, d};
  timing t;
  attention_problem<T, Policy> pr(s, policy, sf::exec::cuda.on(t.stream));
  const auto fwd = [&] { pr.forward(); };
  const auto bwd = [&] { pr.backward(); };
  for (const bool b : {false, true}) {
    if (b && !backward) break;
    fwd();
    if (b) bwd();
    std::vector<double> ms;
    for (int it = 0; it < iters; ++it) ms.push_back(1e3 * (b ? t.seconds(bwd) : t.seconds(fwd)));
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    const double flops = dense_flops(b ? direction::bwd : direction::fwd, s);
    std::printf("%s,%s,bf16,%td,%td,%td,%.4f,%.2f\n", name, b ? "bwd" : "fwd", n, d, s.heads,
                median, flops / (median * 1e9));
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 10;
  for (int a = 1; a + 1 < argc; ++a)
    if (std::strcmp(argv[a], "--iters") == 0) iters = std::max(1, std::atoi(argv[a + 1]));
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  try {
    std::printf("policy,dir,dtype,n,d,bh,ms,tflops\n");
    for (const index_t d : {index_t(64), index_t(128)})
      for (const index_t n : {index_t(4096), index_t(16384)}) {
        time_policy("dense", sf::dense{}, n, d, true, iters);
        time_policy("top_k:64", sf::top_k(kTopK), n, d, true, iters);
        time_policy("banded:256", sf::banded(kBandK), n, d, true, iters);
      }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_check: %s\n", e.what());
    return 1;
  }
  return 0;
}
