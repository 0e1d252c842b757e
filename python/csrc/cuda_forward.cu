// SPDX-License-Identifier: MIT
#include "cuda.cuh"

namespace semfocus_torch {

forward_result forward_cuda(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                            c10::string_view policy, at::IntArrayRef ints,
                            at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask,
                            std::optional<double> scale) {
  check_on_cuda(q_in);
  const std::array<at::Tensor, 3> t =
      checked_tensors<3>({{{"q", &q_in}, {"k", &k_in}, {"v", &v_in}}}, cuda_dtype, cuda_dtypes);
  const at::Tensor &q = t[0], &k = t[1], &v = t[2];
  const policy_spec spec = make_spec(policy, ints, floats, mask, q.device());
  const c10::cuda::CUDAGuard guard(q.device());
  forward_result result;
  dispatch_cuda(q.scalar_type(), [&]<class T>() {
    result =
        run_forward<T, semfocus::cuda_score_t<T>>(cuda_executor(q.device()), q, k, v, spec, scale);
  });
  return result;
}

}  // namespace semfocus_torch
