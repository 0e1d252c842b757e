// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <type_traits>

#include "semfocus/backend/tags.hpp"
#include "semfocus/core/checks.hpp"
#include "semfocus/core/record.hpp"
#include "semfocus/core/view.hpp"
#include "semfocus/policy/concepts.hpp"

namespace semfocus {

/// \brief The record forward returns for policy P and element type T.
template <class P, class T>
using forward_record_t = forward_record<P, T, row_statistic_t<P, T>>;

namespace detail {
template <class>
inline constexpr bool dependent_false = false;
}  // namespace detail

/// \brief Backend customisation points: a backend specialises these for its tag, by locality
/// (constrained on elementwise_policy / row_policy), never by policy. Both receive validated
/// arguments and a record already reset to the shape and scale.
template <class Exec, class Policy, class T>
struct forward_impl {
  static_assert(detail::dependent_false<Exec>,
                "semfocus: no forward_impl for this (backend, policy, type); include the backend's "
                "header (semfocus/semfocus.hpp for CPU backends) and check that the policy "
                "satisfies semfocus::attention_policy<Policy, T> (policy/concepts.hpp)");
};
template <class Exec, class Policy, class T>
struct backward_impl {
  static_assert(detail::dependent_false<Exec>,
                "semfocus: no backward_impl for this (backend, policy, type); include the "
                "backend's header and see policy/concepts.hpp");
};

namespace detail {

/// \brief The checks of semfocus::forward (shapes, null data, overlapping or aliased outputs,
/// the policy's own validate), for views of any element type (the CUDA backend's 16-bit
/// overloads use them too). Returns the problem's shape; O(1).
/// \throws invalid_argument with the messages listed at semfocus::forward.
template <class Policy, class T>
attention_shape check_forward_args(const Policy& policy, const tensor_view<const T>& q,
                                   const tensor_view<const T>& k, const tensor_view<const T>& v,
                                   const tensor_view<T>& out) {
  constexpr const char* fn = "semfocus::forward";
  const attention_shape s = check_inputs(fn, q, k, v);
  check_view(fn, "out", out, s.out(), true);
  check_disjoint(fn, "out", out, "q", q);
  check_disjoint(fn, "out", out, "k", k);
  check_disjoint(fn, "out", out, "v", v);
  validate_policy(policy, s);
  return s;
}

/// \brief The checks of semfocus::backward, for views of any element type; O(1).
/// \throws invalid_argument with the messages listed at semfocus::backward.
template <class Policy, class T, class Record>
void check_backward_args(const Policy& policy, const tensor_view<const T>& q,
                         const tensor_view<const T>& k, const tensor_view<const T>& v,
                         const tensor_view<const T>& out, const tensor_view<const T>& d_out,
                         const Record& record, const tensor_view<T>& dq, const tensor_view<T>& dk,
                         const tensor_view<T>& dv) {
  constexpr const char* fn = "semfocus::backward";
  const attention_shape s = check_inputs(fn, q, k, v);
  check_view(fn, "out", out, s.out(), false);
  check_view(fn, "d_out", d_out, s.out(), false);
  check_view(fn, "dq", dq, s.q(), true);
  check_view(fn, "dk", dk, s.k(), true);
  check_view(fn, "dv", dv, s.v(), true);
  const char* in_names[] = {"q", "k", "v", "out", "d_out"};
  const tensor_view<const T> ins[] = {q, k, v, out, d_out};
  for (int x = 0; x < 5; ++x) {
    check_disjoint(fn, "dq", dq, in_names[x], ins[x]);
    check_disjoint(fn, "dk", dk, in_names[x], ins[x]);
    check_disjoint(fn, "dv", dv, in_names[x], ins[x]);
  }
  check_disjoint(fn, "dq", dq, "dk", dk);
  check_disjoint(fn, "dq", dq, "dv", dv);
  check_disjoint(fn, "dk", dk, "dv", dv);
  validate_policy(policy, s);
  check_record(fn, record, policy, s);
}

}  // namespace detail

/// \brief Attention forward: out = softmax over the policy's kept keys of (scale Q K^T), times V.
///
/// Shapes: q [batch, heads, n_q, d], k [batch, heads, n_k, d], v [batch, heads, n_k, d_v],
/// out [batch, heads, n_q, d_v] (views may be strided; out must not overlap itself or the inputs).
/// The record is reset to this call (its memory is reused) and receives the row log-sum-exp and,
/// for row policies, the row statistics. Cost and memory: those of the backend.
/// \throws invalid_argument on mismatched shapes, null data, overlapping output strides, an output
/// that aliases an input, a non-finite scale, or a policy that rejects the shape (e.g. top_k with
/// k > n_k).
template <class Exec, class Policy, real_scalar T>
requires attention_policy<Policy, T>
void forward(const Exec& exec, const Policy& policy, std::type_identity_t<tensor_view<const T>> q,
             std::type_identity_t<tensor_view<const T>> k,
             std::type_identity_t<tensor_view<const T>> v, tensor_view<T> out,
             forward_record_t<Policy, T>& record, const attention_options& options = {}) {
  const attention_shape s = detail::check_forward_args(policy, q, k, v, out);
  record.reset(policy, s, detail::resolve_scale("semfocus::forward", options, s.d));
  forward_impl<std::remove_cvref_t<Exec>, Policy, T>::run(exec, policy, q, k, v, out, record);
}

/// \brief As above, returning a new record.
template <class Exec, class Policy, real_scalar T>
requires attention_policy<Policy, T> forward_record_t<Policy, T> forward(
    const Exec& exec, const Policy& policy, std::type_identity_t<tensor_view<const T>> q,
    std::type_identity_t<tensor_view<const T>> k, std::type_identity_t<tensor_view<const T>> v,
    tensor_view<T> out, const attention_options& options = {}) {
  forward_record_t<Policy, T> record;
  forward(exec, policy, q, k, v, out, record, options);
  return record;
}

/// \brief Attention backward: given d_out = dL/dout, writes dq = dL/dq, dk = dL/dk, dv = dL/dv
/// (overwritten, not accumulated), with the kept set of `record` held constant.
///
/// Shapes as forward; d_out like out, dq like q, dk like k, dv like v. `out` and `record` must
/// come from forward with the same policy and inputs (backends may use D = rowsum(d_out * out)).
/// \throws invalid_argument on any shape mismatch, null data, overlapping output strides, an output
/// that aliases an input or another output, or a record not made by forward for this shape and
/// (for equality-comparable policies) an equal policy.
template <class Exec, class Policy, real_scalar T>
requires attention_policy<Policy, T>
void backward(const Exec& exec, const Policy& policy, std::type_identity_t<tensor_view<const T>> q,
              std::type_identity_t<tensor_view<const T>> k,
              std::type_identity_t<tensor_view<const T>> v,
              std::type_identity_t<tensor_view<const T>> out,
              std::type_identity_t<tensor_view<const T>> d_out,
              const forward_record_t<Policy, T>& record, tensor_view<T> dq, tensor_view<T> dk,
              tensor_view<T> dv) {
  detail::check_backward_args(policy, q, k, v, out, d_out, record, dq, dk, dv);
  backward_impl<std::remove_cvref_t<Exec>, Policy, T>::run(exec, policy, q, k, v, out, d_out,
                                                           record, dq, dk, dv);
}

}  // namespace semfocus
