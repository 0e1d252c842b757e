// SPDX-License-Identifier: MIT
#pragma once

#include <optional>
#include <type_traits>

#include "ops.hpp"
#include "tensors.hpp"

// The operators' bodies, written once over the backend: the CPU kernels (forward.cpp,
// backward.cpp: exec::simd on PyTorch's pool) and the CUDA ones (cuda.cu: exec::cuda on the
// current stream) check their arguments and call these with their executor.
namespace semfocus_torch {

/// \brief Attention forward of `spec` on backend `ex` for element type T (the library's: float,
/// double, __half, __nv_bfloat16) with record scores S: out (laid out as q) and the record's
/// tensors. q, k, v: checked 4-D tensors of one dtype storing T, rows contiguous, on ex's device.
/// Errors of semfocus::forward become ValueErrors.
template <class T, class S, class Exec>
forward_result run_forward(const Exec& ex, const at::Tensor& q, const at::Tensor& k,
                           const at::Tensor& v, const policy_spec& spec,
                           std::optional<double> scale) {
  at::Tensor out = empty_like_layout(q, v.size(3));
  forward_result result;
  translating_errors([&] {
    visit_policy(spec, [&](const auto& p) {
      semfocus::forward_record_t<std::remove_cvref_t<decltype(p)>, S> rec;
      semfocus::forward(ex, p, view_of<const T>(q), view_of<const T>(k), view_of<const T>(v),
                        view_of<T>(out), rec, semfocus::attention_options{scale});
      const auto [lse, stats, offsets, selection] = record_tensors(rec);
      result = {out, lse, stats, offsets, selection};
    });
  });
  return result;
}

/// \brief Attention backward of `spec` on backend `ex` (types as run_forward): (dq, dk, dv), each
/// laid out as its input, from the record's tensors of run_forward (held constant: nothing is
/// re-selected). Errors of semfocus::backward (including a record that does not fit the problem)
/// become ValueErrors.
template <class T, class S, class Exec>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_backward(
    const Exec& ex, const at::Tensor& d_out, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const policy_spec& spec,
    std::optional<double> scale, const at::Tensor& lse, const at::Tensor& stats,
    const at::Tensor& selection_offsets, const at::Tensor& selection) {
  at::Tensor dq = empty_like_layout(q, q.size(3)), dk = empty_like_layout(k, k.size(3)),
             dv = empty_like_layout(v, v.size(3));
  translating_errors([&] {
    visit_policy(spec, [&](const auto& p) {
      using P = std::remove_cvref_t<decltype(p)>;
      const semfocus::attention_shape s{q.size(0), q.size(1), q.size(2),
                                        k.size(2), q.size(3), v.size(3)};
      const semfocus::attention_options options{scale};
      semfocus::forward_record_t<P, S> rec;
      rec.reset(p, s, semfocus::detail::resolve_scale("semfocus_torch::backward", options, s.d));
      fill_record(rec, lse, stats, selection_offsets, selection);
      semfocus::backward(ex, p, view_of<const T>(q), view_of<const T>(k), view_of<const T>(v),
                         view_of<const T>(out), view_of<const T>(d_out), rec, view_of<T>(dq),
                         view_of<T>(dk), view_of<T>(dv));
    });
  });
  return {dq, dk, dv};
}

}  // namespace semfocus_torch
