// SPDX-License-Identifier: MIT
#pragma once
// What the CUDA backend's tests share (test_naive.cu, test_flash.cu): device arrays, conversions
// between storage types, normwise comparisons, bitwise row-statistic comparisons, the test
// problems and one forward + backward on the device.

#include <doctest/doctest.h>

#include <semfocus/cuda.cuh>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "support/custom_policy.hpp"
#include "support/tensors.hpp"

namespace semfocus::test::cuda {

/// Owning device array of n elements of T, filled from / read back into host vectors.
template <class T>
struct device_array {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit device_array(std::size_t n_) : n(n_) {
    SEMFOCUS_CUDA_CHECK(cudaMalloc(&ptr, (n + 1) * sizeof(T)));
    SEMFOCUS_CUDA_CHECK(cudaMemset(ptr, 0, (n + 1) * sizeof(T)));
  }
  explicit device_array(const std::vector<T>& h) : device_array(h.size()) {
    SEMFOCUS_CUDA_CHECK(cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() { cudaFree(ptr); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    SEMFOCUS_CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  semfocus::tensor_view<T> view(const semfocus::tensor_shape& s) const { return {ptr, s}; }
};

/// Host values of type S stored as T (exact when the values came from T).
template <class T, class S>
std::vector<T> to_storage(const std::vector<S>& a) {
  std::vector<T> r(a.size());
  for (std::size_t x = 0; x < a.size(); ++x)
    r[x] = semfocus::backend::cuda::from_double<T>(static_cast<double>(a[x]));
  return r;
}
template <class T>
std::vector<double> to_doubles(const std::vector<T>& a) {
  std::vector<double> r(a.size());
  for (std::size_t x = 0; x < a.size(); ++x) r[x] = semfocus::backend::cuda::to_double(a[x]);
  return r;
}

/// max |a - b| / max(max |b|, 1e-6); +inf on a NaN, an infinity or a size mismatch.
inline double rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, norm = 1e-6;
  for (std::size_t x = 0; x < a.size(); ++x) {
    if (!std::isfinite(a[x]) || !std::isfinite(b[x])) return INFINITY;
    diff = std::max(diff, std::abs(a[x] - b[x]));
    norm = std::max(norm, std::abs(b[x]));
  }
  return diff / norm;
}

/// Rows whose log-sum-exp differ: infinities at other places, or finite values apart by more
/// than tol (1 + |lse|). Also counts the empty rows of `ref`.
struct lse_comparison {
  std::size_t mismatches = 0, empty_rows = 0;
};
inline lse_comparison compare_lse(const std::vector<double>& a, const std::vector<double>& ref,
                                  double tol) {
  lse_comparison c;
  if (a.size() != ref.size()) return {1, 0};
  for (std::size_t x = 0; x < a.size(); ++x) {
    c.empty_rows += ref[x] == -INFINITY;
    const bool same = std::isinf(a[x]) || std::isinf(ref[x])
                          ? a[x] == ref[x]
                          : std::abs(a[x] - ref[x]) <= tol * (1 + std::abs(ref[x]));
    c.mismatches += !same;
  }
  return c;
}

/// The fields of the built-in and user row statistics: a score (compared bit for bit) and an
/// index (0 where the statistic has none). Whole structs are not memcmp'ed: rank_cut<float> has
/// padding.
template <class T, bool Largest>
std::pair<T, semfocus::index_t> stat_key(const semfocus::rank_cut<T, Largest>& c) {
  return {c.value, c.last};
}
template <class T>
std::pair<T, semfocus::index_t> stat_key(const semfocus::score_floor<T>& c) {
  return {c.floor, 0};
}
template <class T>
std::pair<T, semfocus::index_t> stat_key(const user::mean_floor<T>& c) {
  return {c.mean, 0};
}

/// Rows whose statistics differ in any bit of their fields.
template <class Stat>
std::size_t stat_mismatches(const std::vector<Stat>& a, const std::vector<Stat>& b) {
  if (a.size() != b.size()) return std::max<std::size_t>(a.size(), b.size()) + 1;
  std::size_t n = 0;
  for (std::size_t r = 0; r < a.size(); ++r) {
    const auto ka = stat_key(a[r]), kb = stat_key(b[r]);
    n += ka.second != kb.second || std::memcmp(&ka.first, &kb.first, sizeof(ka.first)) != 0;
  }
  return n;
}

/// A problem in the score type S whose entries are exactly representable in T; with `tied`,
/// Q and K hold multiples of 1/2 in [-1, 1] so that rows have many equal scores.
template <class T>
semfocus::test::problem<semfocus::cuda_score_t<T>> make_problem(const semfocus::attention_shape& s,
                                                                unsigned seed, bool tied) {
  using S = semfocus::cuda_score_t<T>;
  semfocus::test::problem<S> pr(s, seed);
  for (auto* t : {&pr.q, &pr.k, &pr.v, &pr.d_out})
    for (S& x : t->data) {
      if (tied && (t == &pr.q || t == &pr.k)) x = std::round(std::clamp(x, S(-1), S(1)) * 2) / 2;
      x = static_cast<S>(semfocus::backend::cuda::to_double(
          semfocus::backend::cuda::from_double<T>(static_cast<double>(x))));
    }
  return pr;
}

/// Outputs of one forward + backward on the device with `ex`, back on the host in double.
template <class Policy, class T>
struct device_result {
  std::vector<double> out, dq, dk, dv;
  semfocus::forward_record_t<Policy, semfocus::cuda_score_t<T>> record;
};

template <class T, class Policy>
device_result<Policy, T> run_device(const Policy& p,
                                    const semfocus::test::problem<semfocus::cuda_score_t<T>>& pr,
                                    const semfocus::exec::cuda_t& ex,
                                    const semfocus::attention_options& opt = {}) {
  const semfocus::attention_shape& s = pr.shape;
  const device_array<T> q(to_storage<T>(pr.q.data)), k(to_storage<T>(pr.k.data)),
      v(to_storage<T>(pr.v.data)), d_out(to_storage<T>(pr.d_out.data));
  const device_array<T> out(std::size_t(s.out().size())), dq(std::size_t(s.q().size())),
      dk(std::size_t(s.k().size())), dv(std::size_t(s.v().size()));
  device_result<Policy, T> r;
  semfocus::forward(ex, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()), r.record,
                    opt);
  semfocus::backward(ex, p, q.view(s.q()), k.view(s.k()), v.view(s.v()), out.view(s.out()),
                     d_out.view(s.out()), r.record, dq.view(s.q()), dk.view(s.k()), dv.view(s.v()));
  r.out = to_doubles(out.host());
  r.dq = to_doubles(dq.host());
  r.dk = to_doubles(dk.host());
  r.dv = to_doubles(dv.host());
  return r;
}

}  // namespace semfocus::test::cuda
