// SPDX-License-Identifier: MIT
// Builds against semfocus::bounds from the installed package: the closed-form Lipschitz bound of
// top-k attention must dominate the power-iteration value at the same point.
#include <semfocus/semfocus.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  static_assert(SEMFOCUS_HAS_EIGEN == 1);
  namespace b = semfocus::bounds;
  const semfocus::attention_shape s{1, 1, 9, 9, 4, 4};
  std::vector<double> x(std::size_t(s.q().size()));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.91 * double(i) + 0.3);
  const semfocus::tensor_view<const double> t(x.data(), s.q());
  const semfocus::top_k policy{3};
  const double local = b::local_lipschitz(policy, t, t, t).value;
  const b::lipschitz_bound cert = b::certified_lipschitz(policy, t, t, t, b::wrt::qkv, 0.0);
  const bool ok = local > 0 && cert.value >= local && !cert.global;
  std::printf("consumer_bounds: local %g <= certified %g (radius %g): %s\n", local, cert.value,
              cert.selection_radius, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
