// SPDX-License-Identifier: MIT
// The naive CUDA backend (backend/cuda) against the reference backend on the host: every built-in
// policy and two user policies, float / double / __half / __nv_bfloat16 storage, n_q != n_k, d
// not a multiple of 32, batch 2 x heads 3, strided views, a user stream; identical scores and
// selections (row statistics compared bit for bit, empty rows at the same places), outputs,
// log-sum-exp and gradients within the storage type's tolerance; bit-reproducibility; the
// argument checks and their messages. Exits 77 (CTest "skipped") where no GPU is present.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <semfocus/cuda.cuh>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/errors.hpp"
#include "support/tensors.hpp"

#include "device_support.cuh"

namespace sf = semfocus;
namespace sfc = semfocus::backend::cuda;
using sf::index_t;
using sf::test::contains;
using sf::test::error_message;

namespace {

using namespace semfocus::test::cuda;

/// The backend under test: the naive kernels (exec::cuda defaults to the tiled ones,
/// test_flash.cu).
constexpr sf::exec::cuda_t naive_cuda = sf::exec::cuda.naive();

/// Normwise relative tolerance of the device against the reference (both sum in double; the
/// difference is about one rounding to the storage type).
template <class T>
constexpr double tolerance = std::is_same_v<T, double>   ? 1e-12
                             : std::is_same_v<T, float>  ? 1e-6
                             : std::is_same_v<T, __half> ? 1e-3
                                                         : 8e-3;

/// Device (policy `pd`) against the reference (policy `ph`, the same selection with host
/// memory) on one problem: selections identical, values within tolerance<T>.
template <class T, class HostPolicy, class DevicePolicy>
lse_comparison check_against_reference(const HostPolicy& ph, const DevicePolicy& pd,
                                       const sf::attention_shape& s, bool tied = false) {
  using S = sf::cuda_score_t<T>;
  CAPTURE(s);
  CAPTURE(tied);
  const auto pr = make_problem<T>(s, unsigned(s.n_q * 7 + s.n_k), tied);
  const auto ref = sf::test::run_reference(ph, pr);
  const auto dev = run_device<T>(pd, pr, naive_cuda);
  const lse_comparison lse = compare_lse(dev.record.lse, ref.record.lse, 1e-12);
  CHECK(lse.mismatches == 0);
  if constexpr (sf::row_policy<DevicePolicy, S>)
    CHECK(stat_mismatches(dev.record.stats, ref.record.stats) == 0);
  CHECK(rel_diff(dev.out, to_doubles(ref.out.data)) <= tolerance<T>);
  CHECK(rel_diff(dev.dq, to_doubles(ref.dq.data)) <= tolerance<T>);
  CHECK(rel_diff(dev.dk, to_doubles(ref.dk.data)) <= tolerance<T>);
  CHECK(rel_diff(dev.dv, to_doubles(ref.dv.data)) <= tolerance<T>);
  return lse;
}

template <class T, class Policy>
lse_comparison check_policy(const Policy& p, const sf::attention_shape& s, bool tied = false) {
  return check_against_reference<T>(p, p, s, tied);
}

/// Every built-in policy and the two user policies of tests/support on shape s.
template <class T>
void check_all_policies(const sf::attention_shape& s) {
  check_policy<T>(sf::dense{}, s);
  const std::size_t causal_empty = check_policy<T>(sf::causal{}, s).empty_rows;
  CHECK(causal_empty == std::size_t(s.n_q > s.n_k ? s.batch * s.heads * (s.n_q - s.n_k) : 0));
  check_policy<T>(sf::banded(5), s);
  check_policy<T>(sf::block_local(4), s);
  check_policy<T>(sf::strided(3, 1), s);
  check_policy<T>(sf::global_tokens(sf::banded(3), 2), s);
  check_policy<T>(sf::global_tokens(sf::block_local(4), 1), s);
  check_policy<T>(sf::random_k(5, 99), s);
  check_policy<T>(sf::top_k(5), s);
  check_policy<T>(sf::top_k(5), s, true);  // many ties: index order must match exactly
  check_policy<T>(sf::top_k(1), s, true);
  check_policy<T>(sf::bottom_k(3), s, true);
  check_policy<T>(sf::threshold(0.5), s);
  check_policy<T>(sf::threshold(0.25), s, true);
  check_policy<T>(sf::absolute_threshold(1.5), s);  // some rows keep nothing
  check_policy<T>(user::same_parity{}, s);
  check_policy<T>(user::above_mean{}, s);
  // An explicit mask [1, heads, n_q, n_k] with an empty row per head, in host memory for the
  // reference and in device memory for the GPU.
  const sf::tensor_shape ms{1, s.heads, s.n_q, s.n_k};
  std::vector<unsigned char> bits(std::size_t(ms.size()));
  for (std::size_t x = 0; x < bits.size(); ++x) bits[x] = (x * 7 + x / 5) % 3 != 0;
  for (index_t h = 0; h < s.heads; ++h)
    for (index_t j = 0; j < s.n_k; ++j) bits[std::size_t((h * s.n_q + 2) * s.n_k + j)] = 0;
  const device_array<unsigned char> d_bits(bits);
  const lse_comparison mask = check_against_reference<T>(
      sf::explicit_mask(sf::tensor_view<const unsigned char>(bits.data(), ms)),
      sf::explicit_mask(sf::tensor_view<const unsigned char>(d_bits.ptr, ms)), s);
  CHECK(mask.empty_rows >= std::size_t(s.batch * s.heads));
}

const sf::attention_shape wide{2, 3, 37, 53, 24, 20};  // n_q < n_k
const sf::attention_shape tall{2, 3, 53, 37, 24, 20};  // n_q > n_k

/// Scores of every (b, h, i, j) computed by backend::cuda::score, one thread per score.
template <class S, class T>
__global__ void score_kernel(sf::tensor_view<const T> q, sf::tensor_view<const T> k, double scale,
                             S* out) {
  const index_t n = q.batch() * q.heads() * q.seq() * k.seq();
  for (index_t x = index_t(blockIdx.x) * blockDim.x + threadIdx.x; x < n;
       x += index_t(gridDim.x) * blockDim.x) {
    const index_t j = x % k.seq(), i = x / k.seq() % q.seq(), bh = x / (k.seq() * q.seq());
    const index_t b = bh / q.heads(), h = bh % q.heads();
    out[x] = sfc::score<S>(q.row(b, h, i), k.row(b, h, j), q.dim(), scale);
  }
}

template <class T>
void check_scores_bitwise(bool tied) {
  using S = sf::cuda_score_t<T>;
  const sf::attention_shape s = wide;
  const auto pr = make_problem<T>(s, 5, tied);
  const double scale = 1 / std::sqrt(double(s.d));
  const device_array<T> q(to_storage<T>(pr.q.data)), k(to_storage<T>(pr.k.data));
  const device_array<S> scores(std::size_t(s.rows() * s.n_k));
  score_kernel<S, T><<<64, 128>>>(q.view(s.q()), k.view(s.k()), scale, scores.ptr);
  SEMFOCUS_CUDA_CHECK(cudaGetLastError());
  const std::vector<S> got = scores.host();
  std::size_t mismatches = 0;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i)
        for (index_t j = 0; j < s.n_k; ++j) {
          const S want =
              sf::backend::reference::score(&pr.q(b, h, i, 0), &pr.k(b, h, j, 0), s.d, scale);
          const S have = got[std::size_t(((b * s.heads + h) * s.n_q + i) * s.n_k + j)];
          mismatches += std::memcmp(&want, &have, sizeof(S)) != 0;
        }
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("cuda: device scores are bit-identical to the reference backend's") {
  check_scores_bitwise<float>(false);
  check_scores_bitwise<float>(true);
  check_scores_bitwise<double>(false);
  check_scores_bitwise<__half>(false);
  check_scores_bitwise<__nv_bfloat16>(true);
}

TEST_CASE("cuda: float, every policy, n_q < n_k and n_q > n_k") {
  check_all_policies<float>(wide);
  check_all_policies<float>(tall);
}

TEST_CASE("cuda: __half storage, every policy") {
  check_all_policies<__half>(wide);
  check_all_policies<__half>(tall);
}

TEST_CASE("cuda: __nv_bfloat16 storage, every policy") {
  check_all_policies<__nv_bfloat16>(wide);
  check_all_policies<__nv_bfloat16>(tall);
}

TEST_CASE("cuda: double, a policy of each kind") {
  check_policy<double>(sf::causal{}, tall);
  check_policy<double>(sf::top_k(5), wide, true);
  check_policy<double>(sf::threshold(0.5), wide);
}

TEST_CASE("cuda: small and degenerate shapes") {
  check_policy<float>(sf::top_k(1), {1, 1, 1, 1, 1, 1});
  check_policy<float>(sf::dense{}, {1, 2, 5, 300, 33, 7});  // n_k > naive_block
  check_policy<float>(sf::top_k(7), {1, 1, 3, 300, 65, 130});
  check_policy<float>(sf::dense{}, {2, 1, 0, 9, 8, 8});   // no rows: dK = dV = 0
  check_policy<float>(sf::causal{}, {1, 2, 6, 0, 8, 4});  // no keys: O = 0, lse = -inf
}

TEST_CASE("cuda: results are bit-reproducible, on the default stream or a user stream") {
  const auto pr = make_problem<float>(wide, 11, false);
  cudaStream_t stream = nullptr;
  SEMFOCUS_CUDA_CHECK(cudaStreamCreate(&stream));
  const auto a = run_device<float>(sf::top_k(5), pr, naive_cuda);
  const auto b = run_device<float>(sf::top_k(5), pr, naive_cuda.on(stream));
  SEMFOCUS_CUDA_CHECK(cudaStreamDestroy(stream));
  CHECK(a.out == b.out);
  CHECK(a.dq == b.dq);
  CHECK(a.dk == b.dk);
  CHECK(a.dv == b.dv);
  CHECK(a.record.lse == b.record.lse);
  static_assert(std::is_same_v<decltype(naive_cuda.on(stream)), sf::exec::cuda_t>);
}

TEST_CASE("cuda: a reference record drives the device backward to the same gradients") {
  const auto pr = make_problem<float>(wide, 3, true);
  const sf::top_k p(4);
  const auto ref = sf::test::run_reference(p, pr);
  const sf::attention_shape& s = pr.shape;
  const device_array<float> q(pr.q.data), k(pr.k.data), v(pr.v.data), d_out(pr.d_out.data),
      out(ref.out.data);
  const device_array<float> dq(std::size_t(s.q().size())), dk(std::size_t(s.k().size())),
      dv(std::size_t(s.v().size()));
  sf::backward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()),
               d_out.view(s.out()), ref.record, dq.view(s.q()), dk.view(s.k()), dv.view(s.v()));
  CHECK(rel_diff(to_doubles(dq.host()), to_doubles(ref.dq.data)) <= tolerance<float>);
  CHECK(rel_diff(to_doubles(dk.host()), to_doubles(ref.dk.data)) <= tolerance<float>);
  CHECK(rel_diff(to_doubles(dv.host()), to_doubles(ref.dv.data)) <= tolerance<float>);
}

TEST_CASE("cuda: a strided [batch, seq, heads, dim] layout") {
  const sf::attention_shape s = wide;
  const auto pr = make_problem<float>(s, 21, false);
  const auto ref = sf::test::run_reference(sf::top_k(5), pr);
  // q and out stored as [batch, seq, heads, dim].
  const auto bshd = [](const sf::tensor_shape& t) {
    return sf::tensor_strides{t.seq * t.heads * t.dim, t.dim, t.heads * t.dim};
  };
  std::vector<float> q_bshd(pr.q.data.size());
  const sf::tensor_view<float> qv(q_bshd.data(), s.q(), bshd(s.q()));
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i)
        for (index_t c = 0; c < s.d; ++c) qv(b, h, i, c) = pr.q(b, h, i, c);
  const device_array<float> q(q_bshd), k(pr.k.data), v(pr.v.data);
  const device_array<float> out(std::size_t(s.out().size()));
  const auto rec = sf::forward(
      naive_cuda, sf::top_k(5), sf::tensor_view<const float>(q.ptr, s.q(), bshd(s.q())),
      k.view(s.k()), v.view(s.v()), sf::tensor_view<float>(out.ptr, s.out(), bshd(s.out())));
  const std::vector<float> got = out.host();
  const sf::tensor_view<const float> ov(got.data(), s.out(), bshd(s.out()));
  std::vector<double> dense_out;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i)
        for (index_t c = 0; c < s.d_v; ++c) dense_out.push_back(ov(b, h, i, c));
  CHECK(rel_diff(dense_out, to_doubles(ref.out.data)) <= tolerance<float>);
  CHECK(stat_mismatches(rec.stats, ref.record.stats) == 0);
}

TEST_CASE("cuda: argument errors throw before any device work, with the CPU backends' messages") {
  const sf::attention_shape s = wide;
  const auto pr = make_problem<float>(s, 1, false);
  const device_array<float> q(pr.q.data), k(pr.k.data), v(pr.v.data);
  const device_array<float> out(std::size_t(s.out().size()));
  std::vector<float> host_out(std::size_t(s.out().size()));
  const sf::tensor_shape bad_k{s.batch, s.heads, s.n_k, s.d + 1};
  const sf::top_k p(5);
  // The same bad arguments through the CUDA and the reference backend give the same message.
  const auto same_error = [&](auto&& cuda_call, auto&& reference_call, const char* part) {
    const std::string m = error_message(cuda_call);
    CAPTURE(m);
    CHECK(contains(m, part));
    CHECK(m == error_message(reference_call));
  };
  same_error(
      [&] {
        sf::forward(naive_cuda, p, sf::tensor_view<const float>(nullptr, s.q()), k.view(s.k()),
                    v.view(s.v()), out.view(s.out()));
      },
      [&] {
        sf::forward(sf::exec::reference, p, sf::tensor_view<const float>(nullptr, s.q()),
                    pr.k.view(), pr.v.view(), sf::tensor_view<float>(host_out.data(), s.out()));
      },
      "semfocus::forward: q data is null");
  same_error(
      [&] {
        sf::forward(naive_cuda, p, q.view(s.q()), sf::tensor_view<const float>(k.ptr, bad_k),
                    v.view(s.v()), out.view(s.out()));
      },
      [&] {
        sf::forward(sf::exec::reference, p, pr.q.view(),
                    sf::tensor_view<const float>(pr.k.data.data(), bad_k), pr.v.view(),
                    sf::tensor_view<float>(host_out.data(), s.out()));
      },
      "semfocus::forward: k must have shape");
  same_error(
      [&] {
        sf::forward(naive_cuda, sf::top_k(99), q.view(s.q()), k.view(s.k()), v.view(s.v()),
                    out.view(s.out()));
      },
      [&] {
        sf::forward(sf::exec::reference, sf::top_k(99), pr.q.view(), pr.k.view(), pr.v.view(),
                    sf::tensor_view<float>(host_out.data(), s.out()));
      },
      "k must be in [1, n_k]");
  same_error(
      [&] {
        sf::forward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()),
                    sf::tensor_view<float>(q.ptr, s.out()));
      },
      [&] {
        sf::forward(sf::exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(),
                    sf::tensor_view<float>(const_cast<float*>(pr.q.data.data()), s.out()));
      },
      "out overlaps the memory of q");
  // Pageable host memory is rejected by the CUDA backend only.
  const std::string host = error_message([&] {
    sf::forward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()),
                sf::tensor_view<float>(host_out.data(), s.out()));
  });
  CHECK(contains(host, "semfocus::forward: out must address device memory"));
  // A record whose forward failed is then rejected by backward (below).
  sf::forward_record_t<sf::top_k, float> failed;
  CHECK(contains(error_message([&] {
                   sf::forward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()),
                               sf::tensor_view<float>(host_out.data(), s.out()), failed);
                 }),
                 "must address device memory"));
  // Backward: a gradient of the wrong shape, a record of another shape, an unfilled record.
  auto rec =
      sf::forward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()));
  const device_array<float> dq(std::size_t(s.q().size())), dk(std::size_t(s.k().size())),
      dv(std::size_t(s.v().size()));
  const std::string wrong_dq = error_message([&] {
    sf::backward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()),
                 out.view(s.out()), rec, dq.view(s.k()), dk.view(s.k()), dv.view(s.v()));
  });
  CHECK(contains(wrong_dq, "semfocus::backward: dq must have shape"));
  rec.shape.n_q += 1;
  const std::string wrong_record = error_message([&] {
    sf::backward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()),
                 out.view(s.out()), rec, dq.view(s.q()), dk.view(s.k()), dv.view(s.v()));
  });
  CHECK(contains(wrong_record, "semfocus::backward: record was made for shape"));
  const std::string unfilled = error_message([&] {
    sf::backward(naive_cuda, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()),
                 out.view(s.out()), failed, dq.view(s.q()), dk.view(s.k()), dv.view(s.v()));
  });
  CHECK(contains(unfilled, "semfocus::backward: record was not filled by forward"));
  // The 16-bit overloads run the same checks.
  const device_array<__half> hq(to_storage<__half>(pr.q.data));
  const device_array<__half> hout(std::size_t(s.out().size()));
  const std::string half_null = error_message([&] {
    sf::forward(naive_cuda, p, hq.view(s.q()), hq.view(s.q()),
                sf::tensor_view<const __half>(nullptr, s.v()), hout.view(s.out()));
  });
  CHECK(contains(half_null, "semfocus::forward: v data is null"));
}

TEST_CASE("cuda: a failing CUDA call throws cuda_error naming the call and CUDA's message") {
  try {
    SEMFOCUS_CUDA_CHECK(cudaSetDevice(-1));
    FAIL("no exception");
  } catch (const sf::cuda_error& e) {
    CHECK(e.code() == cudaErrorInvalidDevice);
    CHECK(contains(e.what(), "cudaSetDevice(-1)"));
    CHECK(contains(e.what(), cudaGetErrorString(cudaErrorInvalidDevice)));
  }
  static_cast<void>(cudaGetLastError());  // the runtime also recorded it as the last error
}

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("semfocus_tests_cuda_naive: no CUDA device: skipped\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
