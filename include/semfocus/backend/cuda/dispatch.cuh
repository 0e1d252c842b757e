// SPDX-License-Identifier: MIT
#pragma once

#if !defined(__CUDACC__)
#error "semfocus/backend/cuda/*.cuh need nvcc; g++ code includes semfocus/semfocus.hpp instead"
#endif

#include <type_traits>

#include "semfocus/backend/cuda/exec.cuh"
#include "semfocus/backend/cuda/flash_launch.cuh"
#include "semfocus/backend/cuda/launch.cuh"
#include "semfocus/backend/cuda/scalar.cuh"
#include "semfocus/backend/dispatch.hpp"

// The CUDA backend behind the public semfocus::forward / semfocus::backward (backend/dispatch.hpp),
// selected by the tag exec::cuda (or exec::cuda.on(stream)):
//  - Every tensor view (q, k, v, out, d_out, dq, dk, dv) and an explicit_mask's mask address device
//    memory of the current device (cudaMalloc, managed, or mapped page-locked memory); a pageable
//    host pointer is rejected with invalid_argument.
//  - Kernels: exec::cuda runs the tiled kernels (flash.cuh) for float, __half and
//    __nv_bfloat16; exec::cuda.naive() runs the naive ones (naive.cuh); double always runs the
//    naive ones. The public forward / backward are the same for both.
//  - The record is the same host object as for every backend (core/record.hpp): forward copies
//    the row log-sum-exp and statistics back into it, backward copies them to the device. The
//    naive kernels' scores are bit-identical to the reference backend's, so a record made by
//    either serves the other's backward with the same kept sets. The tiled kernels' scores are
//    float fma chains (equal to the reference's when the float sum is exact): their records
//    agree with the others' except for scores within float rounding of a selection boundary
//    (a near-tie of top-k, a near-threshold score).
//  - Calls are ordered on exec.stream and return when the stream has finished them.
//  - float and double as on the CPU; __half and __nv_bfloat16 through the overloads below, with
//    float scores and a forward_record_t<Policy, float>.
//  - The same argument checks and messages as the CPU backends (core/checks.hpp), before any
//    device work.
namespace semfocus {

/// \brief The CUDA backend's forward for float and double (tiled or naive kernels); see the file
/// comment and semfocus::forward.
template <class Policy, class T>
requires attention_policy<Policy, T>
struct forward_impl<exec::cuda_t, Policy, T> {
  static void run(const exec::cuda_t& ex, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<T>& out, forward_record_t<Policy, T>& rec) {
    backend::cuda::forward_on_device(ex, p, q, k, v, out, rec);
  }
};

/// \brief The CUDA backend's backward for float and double (tiled or naive kernels); see the file
/// comment and semfocus::backward.
template <class Policy, class T>
requires attention_policy<Policy, T>
struct backward_impl<exec::cuda_t, Policy, T> {
  static void run(const exec::cuda_t& ex, const Policy& p, const tensor_view<const T>& q,
                  const tensor_view<const T>& k, const tensor_view<const T>& v,
                  const tensor_view<const T>& out, const tensor_view<const T>& d_out,
                  const forward_record_t<Policy, T>& rec, const tensor_view<T>& dq,
                  const tensor_view<T>& dk, const tensor_view<T>& dv) {
    backend::cuda::backward_on_device(ex, p, q, k, v, out, d_out, rec, dq, dk, dv);
  }
};

/// \brief Attention forward on the GPU for 16-bit elements (__half, __nv_bfloat16): as
/// semfocus::forward, with scores, statistics and the record in float and every sum in float
/// (tiled kernels, the default) or double (exec::cuda.naive());
/// out is rounded once to T.
///
/// Shapes: q [batch, heads, n_q, d], k [batch, heads, n_k, d], v [batch, heads, n_k, d_v],
/// out [batch, heads, n_q, d_v], all device memory. Time O(batch heads n_q n_k (d + d_v)) on the
/// device. \throws invalid_argument with the messages of semfocus::forward (shapes, null data,
/// aliasing, scale, policy) or for host memory; cuda_error on a CUDA failure.
template <class Policy, cuda_half_scalar T>
requires attention_policy<Policy, float>
void forward(const exec::cuda_t& exec, const Policy& policy,
             std::type_identity_t<tensor_view<const T>> q,
             std::type_identity_t<tensor_view<const T>> k,
             std::type_identity_t<tensor_view<const T>> v, tensor_view<T> out,
             forward_record_t<Policy, float>& record, const attention_options& options = {}) {
  const attention_shape s = detail::check_forward_args(policy, q, k, v, out);
  record.reset(policy, s, detail::resolve_scale("semfocus::forward", options, s.d));
  backend::cuda::forward_on_device(exec, policy, q, k, v, out, record);
}

/// \brief As above, returning a new record.
template <class Policy, cuda_half_scalar T>
requires attention_policy<Policy, float> forward_record_t<Policy, float> forward(
    const exec::cuda_t& exec, const Policy& policy, std::type_identity_t<tensor_view<const T>> q,
    std::type_identity_t<tensor_view<const T>> k, std::type_identity_t<tensor_view<const T>> v,
    tensor_view<T> out, const attention_options& options = {}) {
  forward_record_t<Policy, float> record;
  forward(exec, policy, q, k, v, out, record, options);
  return record;
}

/// \brief Attention backward on the GPU for 16-bit elements: as semfocus::backward (dq, dk, dv
/// overwritten, the record's kept sets held constant), sums in float (tiled) or double (naive),
/// each gradient rounded once to T. `out` is checked but not read (D_i = sum_j P_ij dP_ij).
///
/// Shapes as forward; d_out like out, dq like q, dk like k, dv like v, all device memory.
/// Time O(batch heads n_q n_k (d + d_v)) on the device.
/// \throws invalid_argument with the messages of semfocus::backward or for host memory;
/// cuda_error on a CUDA failure.
template <class Policy, cuda_half_scalar T>
requires attention_policy<Policy, float>
void backward(const exec::cuda_t& exec, const Policy& policy,
              std::type_identity_t<tensor_view<const T>> q,
              std::type_identity_t<tensor_view<const T>> k,
              std::type_identity_t<tensor_view<const T>> v,
              std::type_identity_t<tensor_view<const T>> out,
              std::type_identity_t<tensor_view<const T>> d_out,
              const forward_record_t<Policy, float>& record, tensor_view<T> dq, tensor_view<T> dk,
              tensor_view<T> dv) {
  detail::check_backward_args(policy, q, k, v, out, d_out, record, dq, dk, dv);
  backend::cuda::backward_on_device(exec, policy, q, k, v, out, d_out, record, dq, dk, dv);
}

}  // namespace semfocus
