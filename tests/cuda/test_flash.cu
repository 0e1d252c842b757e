// SPDX-License-Identifier: MIT
// The tiled (flash-style) CUDA kernels (backend/cuda/flash.cuh), the default of exec::cuda, against
// the naive CUDA kernels (exec::cuda.naive()) and the reference backend: every built-in policy and
// the two user policies, float / __half / __nv_bfloat16 storage, odd n_q != n_k, d in {24, 64,
// 128}, batch 2 x heads 3, strided views. Inputs whose float score sums are exact (multiples of
// 1/2) give scores, hence selections and row statistics, bit-identical to the reference's; on
// Gaussian inputs the selections are compared where every row's margin exceeds float rounding.
// Also: bit-reproducibility, empty rows, a reference record driving the tiled backward, the error
// paths. Exits 77 (CTest "skipped") where no GPU is present.
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
#include "support/margins.hpp"
#include "support/tensors.hpp"

#include "device_support.cuh"

namespace sf = semfocus;
namespace sfc = semfocus::backend::cuda;
using sf::index_t;
using sf::test::contains;
using sf::test::error_message;

namespace {

using namespace semfocus::test::cuda;

constexpr sf::exec::cuda_t tiled = sf::exec::cuda;
constexpr sf::exec::cuda_t naive = sf::exec::cuda.naive();
static_assert(tiled.kernels == sf::exec::cuda_kernels::tiled);
static_assert(naive.on(nullptr).kernels == sf::exec::cuda_kernels::naive);
static_assert(naive.tiled().kernels == sf::exec::cuda_kernels::tiled);

/// Normwise relative tolerance of the tiled kernels (float sums) against double sums: float
/// accumulation for float storage; about one rounding to the storage type for 16-bit storage.
/// The tensor-core kernels (16-bit storage on sm_80+) also round P and dS to the storage type as
/// operands of their second products, as FlashAttention does.
template <class T>
constexpr double tolerance = std::is_same_v<T, float>    ? 1e-4
                             : std::is_same_v<T, __half> ? 4e-3
                                                         : 3e-2;

/// The scale of the comparisons: 1 / sqrt(d) for float; 0.25 for 16-bit storage, whose
/// tensor-core scores are float(sum) * float(scale), equal to the reference's only for a
/// power-of-two scale when the sum is exact (tied inputs).
template <class T>
double test_scale(index_t d) {
  return std::is_same_v<T, float> ? 1 / std::sqrt(double(d)) : 0.25;
}

/// Rows whose statistics differ: the index exactly, the score bit for bit when `exact`, else
/// within 1e-5 (1 + |score|).
template <class Stat>
std::size_t stat_mismatches_within(const std::vector<Stat>& a, const std::vector<Stat>& b,
                                   bool exact) {
  if (a.size() != b.size()) return std::max<std::size_t>(a.size(), b.size()) + 1;
  std::size_t n = 0;
  for (std::size_t r = 0; r < a.size(); ++r) {
    const auto ka = stat_key(a[r]), kb = stat_key(b[r]);
    const double x = ka.first, y = kb.first;
    const bool same_score = exact ? std::memcmp(&ka.first, &kb.first, sizeof(ka.first)) == 0
                                  : (x == y || std::abs(x - y) <= 1e-5 * (1 + std::abs(y)));
    n += ka.second != kb.second || !same_score;
  }
  return n;
}

/// The smallest selection margin over the rows of `pr` for the policy `p` (+inf for policies
/// whose selection does not depend on the scores).
template <class Policy, class S>
double min_margin(const Policy& p, const sf::test::problem<S>& pr, double scale) {
  const sf::attention_shape& s = pr.shape;
  double m = sf::test::unbounded;
  std::vector<double> row;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        sf::test::test_scores(pr, b, h, i, scale, row);
        if constexpr (std::is_same_v<Policy, sf::top_k>)
          m = std::min(m, sf::test::rank_gap(row, p.k, true));
        else if constexpr (std::is_same_v<Policy, sf::bottom_k>)
          m = std::min(m, sf::test::rank_gap(row, p.k, false));
        else if constexpr (std::is_same_v<Policy, sf::absolute_threshold>)
          m = std::min(m, sf::test::absolute_gap(row, p.tau));
        else if constexpr (std::is_same_v<Policy, sf::threshold>) {
          const double mx = *std::max_element(row.begin(), row.end());
          m = std::min(m, sf::test::absolute_gap(row, mx - p.tau));
        } else if constexpr (std::is_same_v<Policy, user::above_mean>)
          m = std::min(m, sf::test::mean_gap(row));
      }
  return m;
}

/// Tiled (policy `pd`) against the reference (policy `ph`, the same selection in host memory)
/// and against the naive kernels: selections identical (exactly on tied inputs, where scores
/// are bit-identical; on Gaussian inputs only when every row's margin exceeds 1e-5), values
/// within tolerance<T>.
template <class T, class HostPolicy, class DevicePolicy>
lse_comparison check_against_reference(const HostPolicy& ph, const DevicePolicy& pd,
                                       const sf::attention_shape& s, bool tied = false) {
  using S = sf::cuda_score_t<T>;
  CAPTURE(s);
  CAPTURE(tied);
  const auto pr = make_problem<T>(s, unsigned(s.n_q * 7 + s.n_k), tied);
  const sf::attention_options opt{test_scale<T>(s.d)};
  const double margin = tied ? sf::test::unbounded : min_margin(ph, pr, *opt.scale);
  if (margin < 1e-5) {
    MESSAGE("selection margin ", margin, " below float rounding: comparison skipped");
    return {};
  }
  const auto ref = sf::test::run_reference(ph, pr, opt);
  const auto dev = run_device<T>(pd, pr, tiled, opt);
  const auto nai = run_device<T>(pd, pr, naive, opt);
  const lse_comparison lse = compare_lse(dev.record.lse, ref.record.lse, 1e-5);
  CHECK(lse.mismatches == 0);
  CHECK(compare_lse(dev.record.lse, nai.record.lse, 1e-5).mismatches == 0);
  if constexpr (sf::row_policy<DevicePolicy, S>) {
    CHECK(stat_mismatches_within(dev.record.stats, ref.record.stats, tied) == 0);
    CHECK(stat_mismatches_within(dev.record.stats, nai.record.stats, tied) == 0);
  }
  const std::pair<const std::vector<double>*, const std::vector<double>*> pairs[] = {
      {&dev.out, &nai.out}, {&dev.dq, &nai.dq}, {&dev.dk, &nai.dk}, {&dev.dv, &nai.dv}};
  const std::vector<double> refs[] = {to_doubles(ref.out.data), to_doubles(ref.dq.data),
                                      to_doubles(ref.dk.data), to_doubles(ref.dv.data)};
  for (int x = 0; x < 4; ++x) {
    CAPTURE(x);  // out, dq, dk, dv
    CHECK(rel_diff(*pairs[x].first, refs[x]) <= tolerance<T>);
    CHECK(rel_diff(*pairs[x].first, *pairs[x].second) <= tolerance<T>);
  }
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
  check_policy<T>(sf::absolute_threshold(0.6), s, true);
  check_policy<T>(user::same_parity{}, s);
  check_policy<T>(user::above_mean{}, s, true);
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

const sf::attention_shape wide{2, 3, 37, 53, 24, 20};   // n_q < n_k, one tile
const sf::attention_shape tall{2, 3, 133, 70, 24, 20};  // n_q > n_k, several tiles
const sf::attention_shape d64{1, 2, 97, 131, 64, 64};   // several tiles both ways
const sf::attention_shape d128{2, 1, 65, 129, 128, 128};

}  // namespace

TEST_CASE("tiled: float, every policy, n_q < n_k and n_q > n_k") {
  check_all_policies<float>(wide);
  check_all_policies<float>(tall);
}

TEST_CASE("tiled: __half storage, every policy") {
  check_all_policies<__half>(wide);
  check_all_policies<__half>(tall);
}

TEST_CASE("tiled: __nv_bfloat16 storage, every policy") {
  check_all_policies<__nv_bfloat16>(wide);
  check_all_policies<__nv_bfloat16>(tall);
}

TEST_CASE("tiled: head dimensions 64 and 128") {
  for (const auto& s : {d64, d128}) {
    check_policy<float>(sf::dense{}, s);
    check_policy<float>(sf::causal{}, s);
    check_policy<float>(sf::banded(7), s);
    check_policy<float>(sf::top_k(9), s, true);
    check_policy<float>(sf::threshold(0.5), s, true);
    check_policy<__half>(sf::block_local(16), s);
    check_policy<__nv_bfloat16>(sf::top_k(3), s, true);
  }
}

TEST_CASE("tiled: double runs the naive kernels") {
  const auto pr = make_problem<double>(wide, 4, true);
  const auto a = run_device<double>(sf::top_k(5), pr, tiled);
  const auto b = run_device<double>(sf::top_k(5), pr, naive);
  CHECK(a.out == b.out);
  CHECK(a.dq == b.dq);
  CHECK(a.record.lse == b.record.lse);
}

TEST_CASE("tiled: results are bit-reproducible, on the default stream or a user stream") {
  cudaStream_t stream = nullptr;
  SEMFOCUS_CUDA_CHECK(cudaStreamCreate(&stream));
  for (const auto& s : {tall, d64}) {
    const auto pr = make_problem<float>(s, 8, false);
    const auto a = run_device<float>(sf::top_k(5), pr, tiled);
    const auto b = run_device<float>(sf::top_k(5), pr, tiled.on(stream));
    CHECK(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(a.dq.data(), b.dq.data(), a.dq.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(a.dk.data(), b.dk.data(), a.dk.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(a.dv.data(), b.dv.data(), a.dv.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(a.record.lse.data(), b.record.lse.data(),
                      a.record.lse.size() * sizeof(double)) == 0);
    const auto c = run_device<__half>(sf::causal{}, make_problem<__half>(s, 9, false), tiled);
    const auto e = run_device<__half>(sf::causal{}, make_problem<__half>(s, 9, false), tiled);
    CHECK(c.dk == e.dk);
    CHECK(c.dv == e.dv);
  }
  SEMFOCUS_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST_CASE("tiled: rows that keep nothing give zeros and lse = -inf") {
  const auto pr = make_problem<float>(tall, 5, false);
  const auto r = run_device<float>(sf::absolute_threshold(1e6), pr, tiled);
  CHECK(std::all_of(r.record.lse.begin(), r.record.lse.end(),
                    [](double x) { return x == -INFINITY; }));
  for (const auto* g : {&r.out, &r.dq, &r.dk, &r.dv})
    CHECK(std::all_of(g->begin(), g->end(), [](double x) { return x == 0; }));
}

TEST_CASE("tiled: a reference record drives the tiled backward to the same gradients") {
  const auto pr = make_problem<float>(wide, 3, true);
  const sf::top_k p(4);
  const auto ref = sf::test::run_reference(p, pr);
  const sf::attention_shape& s = pr.shape;
  const device_array<float> q(pr.q.data), k(pr.k.data), v(pr.v.data), d_out(pr.d_out.data),
      out(ref.out.data);
  const device_array<float> dq(std::size_t(s.q().size())), dk(std::size_t(s.k().size())),
      dv(std::size_t(s.v().size()));
  sf::backward(tiled, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()),
               d_out.view(s.out()), ref.record, dq.view(s.q()), dk.view(s.k()), dv.view(s.v()));
  CHECK(rel_diff(to_doubles(dq.host()), to_doubles(ref.dq.data)) <= tolerance<float>);
  CHECK(rel_diff(to_doubles(dk.host()), to_doubles(ref.dk.data)) <= tolerance<float>);
  CHECK(rel_diff(to_doubles(dv.host()), to_doubles(ref.dv.data)) <= tolerance<float>);
}

TEST_CASE("tiled: a strided [batch, seq, heads, dim] layout") {
  const sf::attention_shape s = tall;
  const auto pr = make_problem<float>(s, 21, true);
  const auto ref = sf::test::run_reference(sf::top_k(5), pr);
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
      tiled, sf::top_k(5), sf::tensor_view<const float>(q.ptr, s.q(), bshd(s.q())), k.view(s.k()),
      v.view(s.v()), sf::tensor_view<float>(out.ptr, s.out(), bshd(s.out())));
  const std::vector<float> got = out.host();
  const sf::tensor_view<const float> ov(got.data(), s.out(), bshd(s.out()));
  std::vector<double> dense_out;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i)
        for (index_t c = 0; c < s.d_v; ++c) dense_out.push_back(ov(b, h, i, c));
  CHECK(rel_diff(dense_out, to_doubles(ref.out.data)) <= tolerance<float>);
  CHECK(stat_mismatches_within(rec.stats, ref.record.stats, true) == 0);
}

TEST_CASE("tiled: errors") {
  const sf::attention_shape s = wide;
  const auto pr = make_problem<float>(s, 1, false);
  const device_array<float> q(pr.q.data), k(pr.k.data), v(pr.v.data);
  const device_array<float> out(std::size_t(s.out().size()));
  std::vector<float> host_out(std::size_t(s.out().size()));
  const sf::top_k p(5);
  // The argument checks are shared with the naive kernels and the CPU backends.
  CHECK(contains(error_message([&] {
                   sf::forward(tiled, p, sf::tensor_view<const float>(nullptr, s.q()),
                               k.view(s.k()), v.view(s.v()), out.view(s.out()));
                 }),
                 "semfocus::forward: q data is null"));
  CHECK(contains(error_message([&] {
                   sf::forward(tiled, sf::top_k(99), q.view(s.q()), k.view(s.k()), v.view(s.v()),
                               out.view(s.out()));
                 }),
                 "k must be in [1, n_k]"));
  // Pageable host memory is rejected, and the record is then unfilled.
  sf::forward_record_t<sf::top_k, float> failed;
  CHECK(contains(error_message([&] {
                   sf::forward(tiled, p, q.view(s.q()), k.view(s.k()), v.view(s.v()),
                               sf::tensor_view<float>(host_out.data(), s.out()), failed);
                 }),
                 "semfocus::forward: out must address device memory"));
  CHECK(!failed.policy.has_value());
  // A head dimension whose tiles exceed the shared memory of a block: invalid_argument.
  const sf::attention_shape huge{1, 1, 3, 5, 8192, 8};
  const device_array<float> hq(std::size_t(huge.q().size())), hk(std::size_t(huge.k().size())),
      hv(std::size_t(huge.v().size())), ho(std::size_t(huge.out().size()));
  const std::string big = error_message([&] {
    sf::forward(tiled, sf::dense{}, hq.view(huge.q()), hk.view(huge.k()), hv.view(huge.v()),
                ho.view(huge.out()));
  });
  CHECK(contains(big, "semfocus::forward: the tiled CUDA kernels need more shared memory"));
  CHECK(contains(big, "exec::cuda.naive()"));
  CHECK_NOTHROW(sf::forward(naive, sf::dense{}, hq.view(huge.q()), hk.view(huge.k()),
                            hv.view(huge.v()), ho.view(huge.out())));
}

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("semfocus_tests_cuda_flash: no CUDA device: skipped\n");
    return 77;
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
