// SPDX-License-Identifier: MIT
// Forward and backward of dense, top-k and banded attention on random data through one API: the
// row log-sum-exp, the gradient norm, and the keys whose dV is exactly zero because no row keeps
// them. Checks that top_k(n) reproduces dense bit for bit and, when the SIMD backend is built
// (xsimd found: semfocus::simd), that it agrees with the reference backend on every policy;
// exits non-zero if a check fails.
#include <semfocus/semfocus.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace sf = semfocus;

namespace {

struct buffers {
  sf::attention_shape shape;
  std::vector<float> q, k, v, d_out;
};

buffers random_problem(const sf::attention_shape& s, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](const sf::tensor_shape& t) {
    std::vector<float> x(static_cast<std::size_t>(t.size()));
    for (float& e : x) e = normal(gen);
    return x;
  };
  return {s, fill(s.q()), fill(s.k()), fill(s.v()), fill(s.out())};
}

// Runs forward + backward of `policy`, prints a summary line and returns the output (empty if a
// value is not finite).
template <class Exec, class Policy>
std::vector<float> run(const char* name, const Exec& exec, const Policy& policy,
                       const buffers& in) {
  const sf::attention_shape& s = in.shape;
  std::vector<float> out(std::size_t(s.out().size())), dq(in.q.size()), dk(in.k.size()),
      dv(in.v.size());
  using cview = sf::tensor_view<const float>;
  using mview = sf::tensor_view<float>;
  const cview q{std::span(in.q), s.q()}, k{std::span(in.k), s.k()}, v{std::span(in.v), s.v()};
  const mview o{std::span(out), s.out()};

  const auto record = sf::forward(exec, policy, q, k, v, o);
  sf::backward(exec, policy, q, k, v, o, cview(std::span(in.d_out), s.out()), record,
               mview(std::span(dq), s.q()), mview(std::span(dk), s.k()),
               mview(std::span(dv), s.v()));

  // dV_j = sum_i P_ij dO_i: a key no row keeps gets exactly zero gradient.
  sf::index_t silent_keys = 0;
  for (sf::index_t j = 0; j < s.n_k; ++j) {
    bool zero = true;
    for (sf::index_t c = 0; c < s.d_v; ++c) zero = zero && dv[std::size_t(j * s.d_v + c)] == 0.0f;
    silent_keys += zero;
  }
  float grad_norm = 0;
  for (float g : dq) grad_norm += g * g;
  const bool finite = std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); });
  std::printf("%-10s out[0,0,0,0] = %+.6f  lse[0] = %.4f  |dQ| = %.4f  keys with dV = 0: %td/%td\n",
              name, double(out[0]), double(record.lse[0]), std::sqrt(double(grad_norm)),
              silent_keys, s.n_k);
  if (!finite || !std::isfinite(grad_norm)) out.clear();
  return out;
}

// max |a - b| / max |b|; infinite if either is empty or the sizes differ.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.empty() || a.size() != b.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (std::size_t x = 0; x < a.size(); ++x) {
    diff = std::max(diff, std::abs(double(a[x]) - double(b[x])));
    scale = std::max(scale, std::abs(double(b[x])));
  }
  return diff / scale;
}

}  // namespace

int main() {
  const sf::attention_shape shape{.batch = 1, .heads = 1, .n_q = 64, .n_k = 64, .d = 16, .d_v = 16};
  const buffers in = random_problem(shape, 42);
  std::printf("semfocus %d.%d.%d quickstart: Q, K, V ~ N(0, 1), n = %td, d = %td, float\n",
              SEMFOCUS_VERSION_MAJOR, SEMFOCUS_VERSION_MINOR, SEMFOCUS_VERSION_PATCH, shape.n_q,
              shape.d);
  const auto ref = sf::exec::reference;
  const std::vector<float> dense = run("dense", ref, sf::dense{}, in);
  const std::vector<float> topk = run("top_k(5)", ref, sf::top_k(5), in);
  const std::vector<float> banded = run("banded(5)", ref, sf::banded(5), in);
  // Keeping every key is dense attention: same kept set, same arithmetic, same bits.
  const std::vector<float> all = run("top_k(n)", ref, sf::top_k(shape.n_k), in);
  bool ok = !dense.empty() && !topk.empty() && !banded.empty() && all == dense;
#if defined(SEMFOCUS_HAS_XSIMD)
  // The same calls on the SIMD backend (2 threads); outputs agree to float rounding.
  std::printf("exec::simd (xsimd, 2 threads):\n");
  const auto simd = sf::exec::simd.with_threads(2);
  const double e_dense = relative_difference(run("dense", simd, sf::dense{}, in), dense);
  const double e_topk = relative_difference(run("top_k(5)", simd, sf::top_k(5), in), topk);
  const double e_banded = relative_difference(run("banded(5)", simd, sf::banded(5), in), banded);
  std::printf("simd vs reference, max relative difference: dense %.1e, top_k %.1e, banded %.1e\n",
              e_dense, e_topk, e_banded);
  ok = ok && e_dense < 1e-5 && e_topk < 1e-5 && e_banded < 1e-5;
#endif
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
