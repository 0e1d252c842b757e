// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

#include "semfocus/nn/tensor.hpp"

// Deterministic initialisation. The engine is std::mt19937_64, whose output sequence the C++
// standard fixes; real numbers are made from its bits here (std::uniform_real_distribution is
// implementation-defined), so a seed gives the same parameters with every standard library.
namespace semfocus::nn {

/// \brief Seeded random numbers with a portable mapping from bits to reals.
class rng {
 public:
  /// \brief An engine seeded with `seed` (std::mt19937_64(seed)).
  explicit rng(std::uint64_t seed = 0) : engine_(seed) {}

  /// \brief The next 64 raw bits.
  std::uint64_t bits() { return engine_(); }

  /// \brief Uniform on [0, 1): the top 53 bits of one draw times 2^-53 (exact in double).
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  /// \brief Uniform on [lo, hi): lo + (hi - lo) u, computed in double.
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  /// \brief Uniform integer in [0, n) for n >= 1 (multiply-shift on 32 bits: bias < n / 2^32).
  /// \throws invalid_argument if n < 1 or n >= 2^32.
  std::uint64_t below(std::uint64_t n) {
    semfocus::detail::require(n >= 1 && n < (std::uint64_t(1) << 32),
                              "semfocus::nn::rng::below: n must be in [1, 2^32), got ", n);
    return ((engine_() >> 32) * n) >> 32;
  }

  /// \brief Standard normal by Box-Muller from two uniform() draws (u1 in (0, 1]).
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  /// \brief The engine's whole state as text (std::mt19937_64's standard text form, 313 numbers),
  /// so that a checkpointed run continues with the same draws.
  std::string state() const {
    std::ostringstream out;
    out << engine_;
    return out.str();
  }

  /// \brief Restores a state() string. \throws invalid_argument if it is not one (the engine is
  /// then unchanged).
  void set_state(const std::string& s) {
    std::istringstream in(s);
    std::mt19937_64 e;
    in >> e;
    semfocus::detail::require(bool(in), "semfocus::nn::rng::set_state: not an engine state: '",
                              s.substr(0, 40), s.size() > 40 ? "...'" : "'");
    engine_ = e;
  }

 private:
  std::mt19937_64 engine_;
};

/// \brief Fills m with U(lo, hi) draws in row-major order, each computed in double and rounded
/// to T; O(size).
template <class T>
void fill_uniform(matrix<T>& m, double lo, double hi, rng& gen) {
  for (index_t x = 0; x < m.size(); ++x) m.data()[x] = static_cast<T>(gen.uniform(lo, hi));
}

/// \brief PyTorch's default nn.Linear initialisation for a weight [out, in] and bias [1, out]:
/// kaiming_uniform(a = sqrt(5)) on the weight, which is U(-1/sqrt(in), 1/sqrt(in)), and the same
/// bound for the bias; weight first, then bias. \throws invalid_argument if in < 1.
template <class T>
void init_linear_default(parameter<T>& weight, parameter<T>& bias, rng& gen) {
  const index_t in = weight.value.cols();
  semfocus::detail::require(in >= 1, "semfocus::nn::init_linear_default: the weight ", weight.name,
                            " must have >= 1 column, got ", in);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  fill_uniform(weight.value, -bound, bound, gen);
  fill_uniform(bias.value, -bound, bound, gen);
}

/// \brief The paper's range for embedding and classifier weights: U(-0.1, 0.1).
inline constexpr double paper_init_range = 0.1;

}  // namespace semfocus::nn
