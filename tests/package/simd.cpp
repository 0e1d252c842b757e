// SPDX-License-Identifier: MIT
// Builds against semfocus::simd from the installed package and runs the SIMD backend on two
// threads against the reference backend.
#include <semfocus/semfocus.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  static_assert(SEMFOCUS_HAS_XSIMD == 1);
  const semfocus::attention_shape s{1, 2, 37, 37, 24, 24};
  std::vector<float> q(std::size_t(s.q().size())), out_ref(std::size_t(s.out().size())),
      out_simd(out_ref.size());
  for (std::size_t x = 0; x < q.size(); ++x) q[x] = std::sin(0.37f * float(x));
  const semfocus::tensor_view<const float> in(q.data(), s.q());
  semfocus::forward(semfocus::exec::reference, semfocus::top_k{5}, in, in, in,
                    semfocus::tensor_view<float>(out_ref.data(), s.out()));
  semfocus::forward(semfocus::exec::simd.with_threads(2), semfocus::top_k{5}, in, in, in,
                    semfocus::tensor_view<float>(out_simd.data(), s.out()));
  float err = 0;
  for (std::size_t x = 0; x < out_ref.size(); ++x)
    err = std::max(err, std::abs(out_ref[x] - out_simd[x]));
  const bool ok = err < 1e-5f;
  std::printf("consumer_simd: max |simd - reference| = %g: %s\n", double(err),
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
