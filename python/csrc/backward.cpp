// SPDX-License-Identifier: MIT
#include "attention.hpp"
#include "cpu.hpp"
#include "ops.hpp"

namespace semfocus_torch {

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& d_out_in, const at::Tensor& q_in, const at::Tensor& k_in,
    const at::Tensor& v_in, const at::Tensor& out_in, c10::string_view policy, at::IntArrayRef ints,
    at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask, std::optional<double> scale,
    const at::Tensor& lse, const at::Tensor& stats, const at::Tensor& selection_offsets,
    const at::Tensor& selection) {
  const std::array<at::Tensor, 5> t = checked_tensors<5>(
      {{{"q", &q_in}, {"k", &k_in}, {"v", &v_in}, {"out", &out_in}, {"d_out", &d_out_in}}},
      cpu_dtype, cpu_dtypes);
  const at::Tensor &q = t[0], &k = t[1], &v = t[2], &out = t[3], &d_out = t[4];
  const policy_spec spec = make_spec(policy, ints, floats, mask, q.device());
  std::tuple<at::Tensor, at::Tensor, at::Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "semfocus_torch::backward", [&] {
    grads = run_backward<scalar_t, scalar_t>(executor(), d_out, q, k, v, out, spec, scale, lse,
                                             stats, selection_offsets, selection);
  });
  return grads;
}

}  // namespace semfocus_torch
