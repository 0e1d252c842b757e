// SPDX-License-Identifier: MIT
// A consumer of the installed package with its own policy: every third key, plus the diagonal.
#include <semfocus/semfocus.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

struct every_third {
  static constexpr semfocus::locality locality_kind = semfocus::locality::elementwise;
  static constexpr bool input_agnostic = true;
  template <class T>
  SEMFOCUS_HD constexpr bool keep(const semfocus::head_slice&, semfocus::index_t i,
                                  semfocus::index_t j, T) const noexcept {
    return j % 3 == 0 || i == j;
  }
};

int main() {
  namespace sf = semfocus;
  const sf::attention_shape s{1, 1, 4, 4, 2, 1};
  std::vector<double> q(8, 0.0), k(8, 0.0), v{1, 2, 3, 4}, out(4), dq(8), dk(8), dv(4),
      dout(4, 1.0);
  // Zero scores: each row averages V over its kept keys.
  const auto rec = sf::forward(
      sf::exec::reference, every_third{}, sf::tensor_view<const double>(q.data(), s.q()),
      sf::tensor_view<const double>(k.data(), s.k()),
      sf::tensor_view<const double>(v.data(), s.v()), sf::tensor_view<double>(out.data(), s.out()));
  sf::backward(sf::exec::reference, every_third{}, sf::tensor_view<const double>(q.data(), s.q()),
               sf::tensor_view<const double>(k.data(), s.k()),
               sf::tensor_view<const double>(v.data(), s.v()),
               sf::tensor_view<const double>(out.data(), s.out()),
               sf::tensor_view<const double>(dout.data(), s.out()), rec,
               sf::tensor_view<double>(dq.data(), s.q()), sf::tensor_view<double>(dk.data(), s.k()),
               sf::tensor_view<double>(dv.data(), s.v()));
  // Row 0 keeps {0, 3}; row 1 {0, 1, 3}; row 2 {0, 2, 3}; row 3 {0, 3}.
  const double expected[4] = {2.5, 7.0 / 3, 8.0 / 3, 2.5};
  bool ok = true;
  for (int i = 0; i < 4; ++i) ok = ok && std::abs(out[std::size_t(i)] - expected[i]) < 1e-12;
  // dV_j = sum_i P_ij: key 0 and key 3 are kept by every row.
  ok = ok && std::abs(dv[0] - (0.5 + 1.0 / 3 + 1.0 / 3 + 0.5)) < 1e-12;
  std::printf("consumer (semfocus %d): %s\n", SEMFOCUS_VERSION, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
