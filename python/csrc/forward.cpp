// SPDX-License-Identifier: MIT
#include "attention.hpp"
#include "cpu.hpp"
#include "ops.hpp"

namespace semfocus_torch {

forward_result forward_cpu(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                           c10::string_view policy, at::IntArrayRef ints,
                           at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask,
                           std::optional<double> scale) {
  const std::array<at::Tensor, 3> t =
      checked_tensors<3>({{{"q", &q_in}, {"k", &k_in}, {"v", &v_in}}}, cpu_dtype, cpu_dtypes);
  const at::Tensor &q = t[0], &k = t[1], &v = t[2];
  const policy_spec spec = make_spec(policy, ints, floats, mask, q.device());
  forward_result result;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "semfocus_torch::forward", [&] {
    result = run_forward<scalar_t, scalar_t>(executor(), q, k, v, spec, scale);
  });
  return result;
}

}  // namespace semfocus_torch
