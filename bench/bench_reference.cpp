// SPDX-License-Identifier: MIT
// Counters: GFLOP (printed as a rate, GFLOP/s) and tokens (query rows per second).
// FLOP convention: forward = 4 n_q n_k d (QK^T and PV, d = d_v), backward = 10 n_q n_k d
// (recomputed QK^T, dP = dO V^T, dQ, dK, dV), counted as for dense attention whatever the policy,
// so a sparse policy's speed-up shows as a higher GFLOP/s. Reference backend: the scalar oracle,
// measured so later backends have a baseline; it is not meant to be fast.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <semfocus/semfocus.hpp>

namespace sf = semfocus;

namespace {

struct data {
  sf::attention_shape shape;
  std::vector<float> q, k, v, out, d_out, dq, dk, dv;
  explicit data(sf::index_t n, sf::index_t d) : shape{1, 1, n, n, d, d} {
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (auto* x : {&q, &k, &v, &out, &d_out, &dq, &dk, &dv}) {
      x->resize(std::size_t(n * d));
      for (float& e : *x) e = normal(gen);
    }
  }
  sf::tensor_view<const float> c(const std::vector<float>& x) const {
    return {x.data(), shape.q()};
  }
  sf::tensor_view<float> m(std::vector<float>& x) const { return {x.data(), shape.q()}; }
};

void set_counters(benchmark::State& state, const data& in, double flops_per_call) {
  state.counters["GFLOP"] =
      benchmark::Counter(flops_per_call * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens"] =
      benchmark::Counter(double(in.shape.n_q), benchmark::Counter::kIsIterationInvariantRate);
}

template <class Policy>
void bm_forward(benchmark::State& state, Policy policy) {
  data in(state.range(0), state.range(1));
  sf::forward_record_t<Policy, float> rec;
  for (auto _ : state) {
    sf::forward(sf::exec::reference, policy, in.c(in.q), in.c(in.k), in.c(in.v), in.m(in.out), rec);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  const double n = double(in.shape.n_q), d = double(in.shape.d);
  set_counters(state, in, 4 * n * n * d);
}

template <class Policy>
void bm_backward(benchmark::State& state, Policy policy) {
  data in(state.range(0), state.range(1));
  const auto rec =
      sf::forward(sf::exec::reference, policy, in.c(in.q), in.c(in.k), in.c(in.v), in.m(in.out));
  for (auto _ : state) {
    sf::backward(sf::exec::reference, policy, in.c(in.q), in.c(in.k), in.c(in.v), in.c(in.out),
                 in.c(in.d_out), rec, in.m(in.dq), in.m(in.dk), in.m(in.dv));
    benchmark::DoNotOptimize(in.dq.data());
    benchmark::ClobberMemory();
  }
  const double n = double(in.shape.n_q), d = double(in.shape.d);
  set_counters(state, in, 10 * n * n * d);
}

}  // namespace

BENCHMARK_CAPTURE(bm_forward, dense, sf::dense{})->Args({256, 64})->Args({1024, 64});
BENCHMARK_CAPTURE(bm_forward, top_k_8, sf::top_k(8))->Args({256, 64})->Args({1024, 64});
BENCHMARK_CAPTURE(bm_forward, banded_8, sf::banded(8))->Args({256, 64})->Args({1024, 64});
BENCHMARK_CAPTURE(bm_backward, dense, sf::dense{})->Args({256, 64});
BENCHMARK_CAPTURE(bm_backward, top_k_8, sf::top_k(8))->Args({256, 64});
