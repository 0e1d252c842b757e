// SPDX-License-Identifier: MIT
#pragma once
// What the CUDA benchmarks share (bench_cuda.cu with Google Benchmark, gpu_check.cu without):
// the problem sizes, device data filled by a counter-based generator, CUDA-event timing and the
// FLOP convention. Included by .cu files only.

#include <semfocus/cuda.cuh>

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace semfocus::bench {

namespace sf = semfocus;
namespace sfc = semfocus::backend::cuda;
using sf::index_t;

constexpr index_t kTokens = 16 * 16384;  // batch * heads * n, the same for every n
constexpr index_t kBandK = 256;
constexpr index_t kTopK = 64;
constexpr double kThresholdTau = 1.5;

enum class direction { fwd, bwd };

/// A 32-bit integer hash (lowbias32, Chris Wellons): a counter-based generator.
__device__ std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/// p[i] = an approximately unit-normal value (Box-Muller on two hashed uniforms), stored as T.
template <class T>
__global__ void fill_normal(T* p, std::uint64_t n, std::uint32_t seed) {
  const std::uint64_t stride = std::uint64_t(gridDim.x) * blockDim.x;
  for (std::uint64_t i = std::uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const auto c = static_cast<std::uint32_t>(i);
    const std::uint32_t a = hash32(c ^ hash32(seed)), b = hash32(a ^ 0x9e3779b9U);
    const float u1 = (float(a >> 8) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
    const float u2 = float(b >> 8) * (1.0f / 16777216.0f);           // [0, 1)
    const float x = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    p[i] = sfc::from_double<T>(double(x));
  }
}

/// Owning device array of n elements of T (no copy).
template <class T>
class device_array {
 public:
  explicit device_array(index_t n) : n_(n) {
    SEMFOCUS_CUDA_CHECK(cudaMalloc(&ptr_, std::size_t(n) * sizeof(T)));
    SEMFOCUS_CUDA_CHECK(cudaMemset(ptr_, 0, std::size_t(n) * sizeof(T)));
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() { cudaFree(ptr_); }

  void fill(std::uint32_t seed) {
    fill_normal<T><<<1024, 256>>>(ptr_, std::uint64_t(n_), seed);
    SEMFOCUS_CUDA_CHECK(cudaGetLastError());
  }
  sf::tensor_view<const T> c(const sf::tensor_shape& s) const { return {ptr_, s}; }
  sf::tensor_view<T> m(const sf::tensor_shape& s) const { return {ptr_, s}; }

 private:
  T* ptr_ = nullptr;
  index_t n_ = 0;
};

/// One timed problem: q, k, v, d_out of shape s.q() (n_q = n_k, d = d_v) filled with seeds 1-4,
/// the outputs and gradients, one record, and the public forward / backward of `policy` on them
/// with `ex`. Construction allocates and fills, then waits for the device.
template <class T, class Policy>
struct attention_problem {
  attention_problem(const sf::attention_shape& shape, const Policy& p, sf::exec::cuda_t e)
      : ts(shape.q()),
        policy(p),
        ex(e),
        q(ts.size()),
        k(ts.size()),
        v(ts.size()),
        d_out(ts.size()),
        out(ts.size()),
        dq(ts.size()),
        dk(ts.size()),
        dv(ts.size()) {
    q.fill(1);
    k.fill(2);
    v.fill(3);
    d_out.fill(4);
    SEMFOCUS_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void forward() { sf::forward(ex, policy, q.c(ts), k.c(ts), v.c(ts), out.m(ts), record); }
  void backward() {
    sf::backward(ex, policy, q.c(ts), k.c(ts), v.c(ts), out.c(ts), d_out.c(ts), record, dq.m(ts),
                 dk.m(ts), dv.m(ts));
  }

  sf::tensor_shape ts;
  Policy policy;
  sf::exec::cuda_t ex;
  device_array<T> q, k, v, d_out, out, dq, dk, dv;
  sf::forward_record_t<Policy, float> record;
};

/// A non-blocking stream and two events, destroyed on scope exit.
class timing {
 public:
  timing() {
    SEMFOCUS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    SEMFOCUS_CUDA_CHECK(cudaEventCreate(&start));
    SEMFOCUS_CUDA_CHECK(cudaEventCreate(&stop));
  }
  timing(const timing&) = delete;
  timing& operator=(const timing&) = delete;
  ~timing() {
    cudaEventDestroy(stop);
    cudaEventDestroy(start);
    cudaStreamDestroy(stream);
  }
  /// Seconds between two events recorded on the stream around f().
  template <class F>
  double seconds(F&& f) {
    SEMFOCUS_CUDA_CHECK(cudaEventRecord(start, stream));
    f();
    SEMFOCUS_CUDA_CHECK(cudaEventRecord(stop, stream));
    SEMFOCUS_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    SEMFOCUS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return double(ms) * 1e-3;
  }

  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
};

/// FLOP per call under the dense convention (see the top of the file).
double dense_flops(direction dir, const sf::attention_shape& s) {
  const double per_head = double(s.n_q) * double(s.n_k) * double(s.d);
  return (dir == direction::fwd ? 4.0 : 10.0) * per_head * double(s.batch) * double(s.heads);
}

/// Fraction of (query, key) pairs kept, or a negative value where it is not known cheaply.
template <class Policy>
double kept_fraction(const Policy& policy, index_t n) {
  if constexpr (std::is_base_of_v<sf::dense, Policy>)
    return policy.is_causal ? double(n + 1) / double(2 * n) : 1.0;
  else if constexpr (std::is_same_v<Policy, sf::threshold>)
    return -1;
  else
    return double(policy.k) / double(n);
}

}  // namespace semfocus::bench
