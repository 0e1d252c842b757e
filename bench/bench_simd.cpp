// SPDX-License-Identifier: MIT
// Benchmarks of the SIMD CPU backend (semfocus::exec::simd) against an Eigen baseline.
//
// Names: <dir>/<policy>/<impl>/n:<n>/d:<d>/t:<threads>/real_time, with
//   dir     fwd (forward), bwd (backward, from a record made before the timed loop) or
//           fwdbwd (forward then backward in each iteration);
//   policy  dense, causal (dense{true}), banded:<k>, top_k:<k> (k in {8, 64}) or threshold
//           (tau = 1.5, see below);
//   impl    simd (semfocus::exec::simd) or eigen (dense only; the baseline, see below);
//   n in {256, 1024, 4096} (n_q = n_k), d in {64, 128} (d = d_v), threads in {1, 2}.
// "/real_time" is Google Benchmark's suffix: every benchmark is timed in wall-clock time (also the
// single-threaded ones, so that every ratio compares like with like), and the rates below are per
// wall-clock second. (The CPU column is the calling thread's CPU time only, Google Benchmark's
// default, so for t:2 it is not the process total.) Select shapes with --benchmark_filter, e.g.
//   --benchmark_filter='^fwd/dense/(simd|eigen)/n:4096/d:128/'   or   --benchmark_filter='n:256/'
// (bench/report.sh runs the README table's subset and prints it as Markdown).
// gemm/<dir>/d:<d>/real_time (dir fwd or bwd) times the GEMM calls of the dense kernels alone,
// operands in cache, no softmax: the ceiling of the full kernels (see bm_gemm).
//
// Problem: float, batch 1, heads 2 (heads >= threads, so that with 2 threads both have a head's
// work even before row/key blocking), q, k, v and d_out unit normal (fixed seed), contiguous
// [batch, heads, n, d] tensors, scale 1/sqrt(d). One simd_workspace and one forward record per
// benchmark, reused by every iteration and warmed up by an untimed call, so that the timed loop
// allocates nothing.
//
// Counters:
//   dense_GFLOPs  GFLOP per wall-clock second under the dense FLOP convention: per head, forward
//                 = 4 n^2 d (Q K^T and P V), backward = 10 n^2 d (recomputed Q K^T, dP = dO V^T,
//                 dV, dQ, dK), forward+backward = 14 n^2 d, whatever the policy: causal and sparse
//                 policies are charged the SAME dense count, so their speed-up over dense shows as
//                 a higher "GFLOP/s" (it is not the arithmetic they actually perform). The counter
//                 value is already in units of 1e9 (flops * 1e-9 with kIsIterationInvariantRate),
//                 so the console prints e.g. "41.2/s" for 41.2 GFLOP/s and JSON/CSV hold 41.2.
//   bytes_per_second  (SetBytesProcessed) bytes of the call's interface tensors, each counted once
//                 per call: forward reads q, k, v and writes out (4 tensors); backward reads q, k,
//                 v, out, d_out and writes dq, dk, dv (8); forward+backward 12. Intermediates
//                 (scores, Eigen's n x n matrices) are not counted.
//   keys_per_row  average number of keys a row keeps (n, (n+1)/2, k, or measured for threshold);
//                 not a rate.
//
// Threshold: keeps s_ij >= max_j s_ij - tau (policy/threshold.hpp). With unit-normal q and k and
// scale 1/sqrt(d), a row's scores are about N(0, 1) and its maximum about sqrt(2 ln n) (2.9 at
// n = 256, 3.6 at n = 4096), so tau = 1.5 keeps a modest, slowly shrinking fraction: on this data
// 11%, 5% and 2.2% of the keys at n = 256, 1024 and 4096 (about 28, 50 and 90 keys per row, for
// d = 64 and 128 alike; comparable to top_k:64). keys_per_row reports the measured count.
//
// Eigen baseline: what a user would write with Eigen 3.4 (row-major MatrixXf, Eigen's own GEMM),
// dense only, one thread (Eigen is built here without OpenMP, so its products are single-threaded;
// the t:1 simd rows are the like-for-like comparison). Forward per head: S = Q K^T * scale, row
// softmax (subtract the row max, exp, divide by the row sum) in place, O = P V, keeping P for
// backward (n^2 floats per head, as autograd would). Backward per head from that P: dP = dO V^T,
// dV = P^T dO, dS = P .* (dP - rowsum(dP .* P)), dQ = dS K * scale, dK = dS^T Q * scale; it does
// not recompute Q K^T (8 n^2 d real FLOP) but is charged the same 10 n^2 d as the simd backend.
// All Eigen matrices are allocated before the timed loop (noalias products).
#include <benchmark/benchmark.h>

#include <semfocus/detail/eigen.hpp>

#include <cmath>
#include <cstdint>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <semfocus/backend/simd/kernels.hpp>
#include <semfocus/semfocus.hpp>

#ifndef SEMFOCUS_HAS_XSIMD
#error "bench_simd.cpp needs the SIMD backend: link semfocus::simd (defines SEMFOCUS_HAS_XSIMD)"
#endif

namespace sf = semfocus;

namespace {

constexpr sf::index_t kBatch = 1;
constexpr sf::index_t kHeads = 2;
constexpr double kThresholdTau = 1.5;

enum class direction { fwd, bwd, fwdbwd };

const char* direction_name(direction dir) {
  switch (dir) {
    case direction::fwd:
      return "fwd";
    case direction::bwd:
      return "bwd";
    case direction::fwdbwd:
      return "fwdbwd";
  }
  return "?";
}

/// Inputs and outputs of one problem: contiguous [kBatch, kHeads, n, d] float tensors.
struct problem {
  sf::attention_shape shape;
  std::vector<float> q, k, v, out, d_out, dq, dk, dv;

  problem(sf::index_t n, sf::index_t d) : shape{kBatch, kHeads, n, n, d, d} {
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    for (auto* x : {&q, &k, &v, &d_out}) {
      x->resize(static_cast<std::size_t>(shape.q().size()));
      for (float& e : *x) e = normal(gen);
    }
    for (auto* x : {&out, &dq, &dk, &dv}) x->assign(static_cast<std::size_t>(shape.q().size()), 0);
  }
  sf::tensor_view<const float> c(const std::vector<float>& x) const {
    return {x.data(), shape.q()};
  }
  sf::tensor_view<float> m(std::vector<float>& x) const { return {x.data(), shape.q()}; }
  double scale() const { return 1.0 / std::sqrt(static_cast<double>(shape.d)); }
};

/// FLOP per call under the dense convention (see the top of the file).
double dense_flops(direction dir, const sf::attention_shape& s) {
  const double per_head = double(s.n_q) * double(s.n_k) * double(s.d);
  const double factor = dir == direction::fwd ? 4 : dir == direction::bwd ? 10 : 14;
  return factor * per_head * double(s.batch) * double(s.heads);
}

/// Bytes of the interface tensors per call (see the top of the file).
std::int64_t interface_bytes(direction dir, const sf::attention_shape& s) {
  const std::int64_t tensor = s.q().size() * std::int64_t(sizeof(float));
  const std::int64_t count = dir == direction::fwd ? 4 : dir == direction::bwd ? 8 : 12;
  return count * tensor;
}

void set_counters(benchmark::State& state, direction dir, const sf::attention_shape& s,
                  double keys_per_row) {
  state.counters["dense_GFLOPs"] =
      benchmark::Counter(dense_flops(dir, s) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["keys_per_row"] = benchmark::Counter(keys_per_row);
  state.SetBytesProcessed(state.iterations() * interface_bytes(dir, s));
}

// --- Eigen baseline
// --------------------------------------------------------------------------------

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_map = Eigen::Map<const row_matrix>;
using mut_map = Eigen::Map<row_matrix>;

/// Dense attention written with Eigen as a user would; all scratch allocated up front.
class eigen_attention {
 public:
  explicit eigen_attention(const sf::attention_shape& s)
      : n_(s.n_q),
        d_(s.d),
        scale_(static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.d)))),
        p_(static_cast<std::size_t>(s.batch * s.heads), row_matrix(s.n_q, s.n_k)),
        dp_(s.n_q, s.n_k),
        row_max_(s.n_q),
        row_sum_(s.n_q),
        delta_(s.n_q) {}

  void forward(problem& pr) {
    for (std::size_t bh = 0; bh < p_.size(); ++bh) {
      const_map q(head(pr.q, bh), n_, d_), k(head(pr.k, bh), n_, d_), v(head(pr.v, bh), n_, d_);
      mut_map o(head(pr.out, bh), n_, d_);
      row_matrix& p = p_[bh];
      p.noalias() = (q * k.transpose()) * scale_;
      row_max_.noalias() = p.rowwise().maxCoeff();
      p.array().colwise() -= row_max_.array();
      p.array() = p.array().exp();
      row_sum_.noalias() = p.rowwise().sum();
      p.array().colwise() /= row_sum_.array();
      o.noalias() = p * v;
    }
  }

  /// Needs the P of a previous forward on the same inputs.
  void backward(problem& pr) {
    for (std::size_t bh = 0; bh < p_.size(); ++bh) {
      const_map q(head(pr.q, bh), n_, d_), k(head(pr.k, bh), n_, d_), v(head(pr.v, bh), n_, d_);
      const_map d_o(head(pr.d_out, bh), n_, d_);
      mut_map dq(head(pr.dq, bh), n_, d_), dk(head(pr.dk, bh), n_, d_), dv(head(pr.dv, bh), n_, d_);
      const row_matrix& p = p_[bh];
      dp_.noalias() = d_o * v.transpose();
      dv.noalias() = p.transpose() * d_o;
      delta_.noalias() = dp_.cwiseProduct(p).rowwise().sum();
      dp_.array() = p.array() * (dp_.array().colwise() - delta_.array());  // dS, in place
      dq.noalias() = (dp_ * k) * scale_;
      dk.noalias() = (dp_.transpose() * q) * scale_;
    }
  }

 private:
  template <class T>
  T* head(std::vector<T>& x, std::size_t bh) const {
    return x.data() + static_cast<std::ptrdiff_t>(bh) * n_ * d_;
  }

  sf::index_t n_, d_;
  float scale_;
  std::vector<row_matrix> p_;  // per (batch, head): the softmax probabilities
  row_matrix dp_;
  Eigen::VectorXf row_max_, row_sum_, delta_;
};

/// Average number of keys a threshold(tau) row keeps on this problem's data, computed as
/// policy/threshold.hpp defines it (floor = float(double(max) - tau)) with Eigen scores, once per
/// (n, d) and cached.
double threshold_keys_per_row(sf::index_t n, sf::index_t d) {
  static std::map<std::pair<sf::index_t, sf::index_t>, double> cache;
  const auto key = std::make_pair(n, d);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  problem pr(n, d);
  row_matrix s(n, n);
  const auto scale = static_cast<float>(pr.scale());
  double kept = 0;
  for (sf::index_t bh = 0; bh < kBatch * kHeads; ++bh) {
    const_map q(pr.q.data() + bh * n * d, n, d), k(pr.k.data() + bh * n * d, n, d);
    s.noalias() = (q * k.transpose()) * scale;
    for (sf::index_t i = 0; i < n; ++i) {
      const auto floor = static_cast<float>(double(s.row(i).maxCoeff()) - kThresholdTau);
      kept += double((s.row(i).array() >= floor).count());
    }
  }
  return cache[key] = kept / double(kBatch * kHeads * n);
}

template <class Policy>
double keys_per_row(const Policy& policy, sf::index_t n, sf::index_t d) {
  if constexpr (std::is_same_v<Policy, sf::dense>)
    return policy.is_causal ? double(n + 1) / 2 : double(n);
  else if constexpr (std::is_same_v<Policy, sf::threshold>)
    return threshold_keys_per_row(n, d);
  else
    return double(policy.k);
}

// --- benchmark bodies
// ------------------------------------------------------------------------------

template <class Policy>
void bm_simd(benchmark::State& state, Policy policy, direction dir, sf::index_t n, sf::index_t d,
             int threads) {
  try {
    problem pr(n, d);
    sf::simd_workspace ws;
    const auto exec = sf::exec::simd.with_threads(threads).with_workspace(ws);
    sf::forward_record_t<Policy, float> record;
    const auto fwd = [&] {
      sf::forward(exec, policy, pr.c(pr.q), pr.c(pr.k), pr.c(pr.v), pr.m(pr.out), record);
    };
    const auto bwd = [&] {
      sf::backward(exec, policy, pr.c(pr.q), pr.c(pr.k), pr.c(pr.v), pr.c(pr.out), pr.c(pr.d_out),
                   record, pr.m(pr.dq), pr.m(pr.dk), pr.m(pr.dv));
    };
    // Untimed warm-up: sizes the workspace and the record and touches their pages; for bwd it
    // also makes the record (and out) that every timed backward reads.
    fwd();
    if (dir != direction::fwd) bwd();
    for (auto _ : state) {
      if (dir != direction::bwd) fwd();
      if (dir != direction::fwd) bwd();
      benchmark::DoNotOptimize(pr.out.data());
      benchmark::DoNotOptimize(pr.dq.data());
      benchmark::ClobberMemory();
    }
    set_counters(state, dir, pr.shape, keys_per_row(policy, n, d));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void bm_eigen(benchmark::State& state, direction dir, sf::index_t n, sf::index_t d) {
  problem pr(n, d);
  eigen_attention attention(pr.shape);
  attention.forward(pr);  // warm-up, and the P that bwd reads
  if (dir != direction::fwd) attention.backward(pr);
  for (auto _ : state) {
    if (dir != direction::bwd) attention.forward(pr);
    if (dir != direction::fwd) attention.backward(pr);
    benchmark::DoNotOptimize(pr.out.data());
    benchmark::DoNotOptimize(pr.dq.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, dir, pr.shape, double(n));
}

// --- GEMM ceiling
// ------------------------------------------------------------------------------------

/// The GEMM calls of the dense kernels alone, with the same shapes and operand layouts, on
/// operands that stay in cache and without the softmax passes: what the forward and backward
/// would reach if everything but their GEMMs were free. fwd: one key block of one forward task,
/// S = Q K^T (48 x 64 x d) and O += P V (48 x d x 64); bwd: one tile of the backward (96 keys x 64
/// queries), S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q, dQ = dS K. Charged 4 and 10
/// times 48 64 d and 96 64 d FLOP, the dense convention of the full kernels.
void bm_gemm(benchmark::State& state, direction dir, sf::index_t d) {
  using K = sf::backend::simd::kernels<float>;
  const sf::index_t rows = dir == direction::fwd ? 48 : 96, cols = 64;
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  auto filled = [&](sf::index_t size) {
    std::vector<float> x(static_cast<std::size_t>(size));
    for (float& e : x) e = normal(gen) * 0.1f;
    return x;
  };
  // A operands by rows (stride d or cols), B operands as packed panels.
  std::vector<float> a = filled(rows * d), a2 = filled(rows * d),
                     bt = filled(K::panels_size(d, cols)), bt2 = filled(K::panels_size(d, cols)),
                     br = filled(K::panels_size(cols, d)), br2 = filled(K::panels_size(cols, d)),
                     kr = filled(K::panels_size(rows, d)), s = filled(rows * cols),
                     p = filled(rows * cols), acc = filled(rows * d), acc2 = filled(rows * d),
                     c = filled(cols * d);
  const auto body = [&] {
    if (dir == direction::fwd) {
      K::gemm<false>(rows, cols, d, a.data(), d, 1, bt.data(), d * K::nr, s.data(), cols);
      K::gemm<true>(rows, d, cols, s.data(), cols, 1, br.data(), cols * K::nr, acc.data(), d);
      return;
    }
    K::gemm<false>(rows, cols, d, a.data(), d, 1, bt.data(), d * K::nr, s.data(), cols);
    K::gemm<false>(rows, cols, d, a2.data(), d, 1, bt2.data(), d * K::nr, p.data(), cols);
    K::gemm<true>(rows, d, cols, s.data(), cols, 1, br.data(), cols * K::nr, acc.data(), d);
    K::gemm<true>(rows, d, cols, p.data(), cols, 1, br2.data(), cols * K::nr, acc2.data(), d);
    K::gemm<false>(cols, d, rows, p.data(), 1, cols, kr.data(), rows * K::nr, c.data(), d);
  };
  body();
  for (auto _ : state) {
    body();
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  const double flops = (dir == direction::fwd ? 4.0 : 10.0) * double(rows * cols * d);
  state.counters["dense_GFLOPs"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// --- registration
// ------------------------------------------------------------------------------------

constexpr sf::index_t kSeqs[] = {256, 1024, 4096};
constexpr sf::index_t kDims[] = {64, 128};
constexpr int kThreads[] = {1, 2};
constexpr sf::index_t kKs[] = {8, 64};
constexpr direction kDirections[] = {direction::fwd, direction::bwd, direction::fwdbwd};

std::string bench_name(direction dir, const std::string& policy, const char* impl, sf::index_t n,
                       sf::index_t d, int threads) {
  return std::string(direction_name(dir)) + "/" + policy + "/" + impl + "/n:" + std::to_string(n) +
         "/d:" + std::to_string(d) + "/t:" + std::to_string(threads);
}

void configure(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

template <class Policy>
void register_simd(const std::string& policy_name, const Policy& policy) {
  for (const direction dir : kDirections)
    for (const sf::index_t n : kSeqs)
      for (const sf::index_t d : kDims)
        for (const int t : kThreads)
          configure(benchmark::RegisterBenchmark(
              bench_name(dir, policy_name, "simd", n, d, t).c_str(),
              [=](benchmark::State& state) { bm_simd(state, policy, dir, n, d, t); }));
}

bool register_all() {
  // Dense first, each Eigen baseline just before the simd runs of its shape, so that a plain run
  // lists them together; then the other policies.
  for (const direction dir : kDirections)
    for (const sf::index_t n : kSeqs)
      for (const sf::index_t d : kDims) {
        configure(benchmark::RegisterBenchmark(
            bench_name(dir, "dense", "eigen", n, d, 1).c_str(),
            [=](benchmark::State& state) { bm_eigen(state, dir, n, d); }));
        for (const int t : kThreads)
          configure(benchmark::RegisterBenchmark(
              bench_name(dir, "dense", "simd", n, d, t).c_str(),
              [=](benchmark::State& state) { bm_simd(state, sf::dense{}, dir, n, d, t); }));
      }
  for (const direction dir : {direction::fwd, direction::bwd})
    for (const sf::index_t d : kDims)
      benchmark::RegisterBenchmark(
          (std::string("gemm/") + direction_name(dir) + "/d:" + std::to_string(d)).c_str(),
          [=](benchmark::State& state) { bm_gemm(state, dir, d); })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  register_simd("causal", sf::dense{true});
  for (const sf::index_t k : kKs) register_simd("banded:" + std::to_string(k), sf::banded(k));
  for (const sf::index_t k : kKs) register_simd("top_k:" + std::to_string(k), sf::top_k(k));
  register_simd("threshold", sf::threshold(kThresholdTau));
  return true;
}

[[maybe_unused]] const bool registered = register_all();

}  // namespace
