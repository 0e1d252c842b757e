// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <semfocus/semfocus.hpp>

namespace semfocus::test {

/// \brief An owning contiguous [batch, heads, seq, dim] tensor for tests.
template <class T>
struct tensor {
  tensor_shape shape;
  std::vector<T> data;

  tensor() = default;
  explicit tensor(const tensor_shape& s, T fill = T(0))
      : shape(s), data(static_cast<std::size_t>(s.size()), fill) {}

  tensor_view<T> view() { return {std::span<T>(data), shape}; }
  tensor_view<const T> view() const { return {std::span<const T>(data), shape}; }
  tensor_view<const T> cview() const { return view(); }
  T& operator()(index_t b, index_t h, index_t i, index_t c) {
    return data[static_cast<std::size_t>(((b * shape.heads + h) * shape.seq + i) * shape.dim + c)];
  }
  const T& operator()(index_t b, index_t h, index_t i, index_t c) const {
    return data[static_cast<std::size_t>(((b * shape.heads + h) * shape.seq + i) * shape.dim + c)];
  }
};

/// \brief A tensor of i.i.d. N(0, sigma^2) entries from a seeded generator.
template <class T>
tensor<T> random_tensor(const tensor_shape& s, std::uint64_t seed, double sigma = 1.0) {
  tensor<T> t(s);
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd(0.0, sigma);
  for (T& x : t.data) x = static_cast<T>(nd(gen));
  return t;
}

/// \brief Q, K, V and dO of one problem, filled from `seed`.
template <class T>
struct problem {
  attention_shape shape;
  tensor<T> q, k, v, d_out;

  problem(const attention_shape& s, std::uint64_t seed, double sigma = 1.0)
      : shape(s),
        q(random_tensor<T>(s.q(), seed, sigma)),
        k(random_tensor<T>(s.k(), seed + 1, sigma)),
        v(random_tensor<T>(s.v(), seed + 2)),
        d_out(random_tensor<T>(s.out(), seed + 3)) {}
};

/// \brief row[j] = scale * q_i . k_j for row (b, h, i) of `pr`, summed in long double: scores
/// computed in the test, independently of the library.
template <class T>
void test_scores(const problem<T>& pr, index_t b, index_t h, index_t i, double scale,
                 std::vector<double>& row) {
  row.resize(static_cast<std::size_t>(pr.shape.n_k));
  for (index_t j = 0; j < pr.shape.n_k; ++j) {
    long double acc = 0;
    for (index_t c = 0; c < pr.shape.d; ++c)
      acc += static_cast<long double>(pr.q(b, h, i, c)) * pr.k(b, h, j, c);
    row[static_cast<std::size_t>(j)] = static_cast<double>(scale * acc);
  }
}

/// \brief Outputs of one forward + backward through the public API.
template <class Policy, class T>
struct result {
  tensor<T> out, dq, dk, dv;
  forward_record_t<Policy, T> record;
};

/// \brief Runs forward and backward of `p` on `pr` with backend `ex` through the public API.
template <class Exec, class Policy, class T>
result<Policy, T> run_backend(const Exec& ex, const Policy& p, const problem<T>& pr,
                              const attention_options& opt = {}) {
  result<Policy, T> r;
  r.out = tensor<T>(pr.shape.out());
  r.dq = tensor<T>(pr.shape.q());
  r.dk = tensor<T>(pr.shape.k());
  r.dv = tensor<T>(pr.shape.v());
  forward(ex, p, pr.q.view(), pr.k.view(), pr.v.view(), r.out.view(), r.record, opt);
  backward(ex, p, pr.q.view(), pr.k.view(), pr.v.view(), r.out.cview(), pr.d_out.view(), r.record,
           r.dq.view(), r.dk.view(), r.dv.view());
  return r;
}

/// \brief Runs forward and backward of `p` on `pr` with the reference backend.
template <class Policy, class T>
result<Policy, T> run_reference(const Policy& p, const problem<T>& pr,
                                const attention_options& opt = {}) {
  return run_backend(exec::reference, p, pr, opt);
}

}  // namespace semfocus::test
