// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <numeric>
#include <optional>
#include <string>

#include "policies.hpp"

// Argument checks and tensor plumbing shared by the forward and backward operators.
namespace semfocus_torch {

/// \brief t as a CPU float32/float64 4-D tensor whose last axis has stride 1: t itself, or a
/// contiguous copy when that axis is strided. ValueError naming `arg` otherwise.
inline at::Tensor rows_contiguous(const at::Tensor& t, const char* arg) {
  TORCH_CHECK_VALUE(t.dim() == 4, "semfocus_torch: ", arg,
                    " must be 4-D [batch, heads, seq, dim], got ", t.dim(), "-D");
  TORCH_CHECK_VALUE(t.device().is_cpu(), "semfocus_torch: ", arg,
                    " must be on the CPU (this build has no CUDA backend), got ", t.device());
  TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
                    "semfocus_torch: ", arg, " must be float32 or float64 on the CPU, got ",
                    t.scalar_type());
  return t.stride(3) == 1 || t.size(3) <= 1 ? t : t.contiguous();
}

/// \brief An uninitialised [ref.size(0..2), last] tensor whose outer axes are laid out in the order
/// of ref's strides (so [batch, seq, heads, dim] storage gives the same kind of result), rows
/// contiguous.
inline at::Tensor empty_like_layout(const at::Tensor& ref, std::int64_t last) {
  std::array<std::int64_t, 3> order{0, 1, 2};
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return ref.stride(a) > ref.stride(b); });
  const at::Tensor t =
      at::empty({ref.size(order[0]), ref.size(order[1]), ref.size(order[2]), last}, ref.options());
  std::array<std::int64_t, 4> inverse{0, 0, 0, 3};
  for (std::int64_t x = 0; x < 3; ++x) inverse[std::size_t(order[std::size_t(x)])] = x;
  return t.permute(inverse);
}

/// \brief The spec of a Python policy; the mask must be a bool CPU tensor (already 4-D).
inline policy_spec make_spec(c10::string_view policy, at::IntArrayRef ints,
                             at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask) {
  policy_spec p{std::string(policy), ints.vec(), floats.vec(), {}};
  if (mask) {
    const at::Tensor& m = *mask;
    TORCH_CHECK_VALUE(m.scalar_type() == at::kBool && m.device().is_cpu() && m.dim() == 4,
                      "semfocus_torch: mask must be a 4-D bool CPU tensor [1 or batch, 1 or heads, "
                      "n_q, n_k], got ",
                      m.scalar_type(), " ", m.dim(), "-D on ", m.device());
    TORCH_CHECK_VALUE(m.stride(3) == 1 || m.size(3) <= 1,
                      "semfocus_torch: mask must have stride 1 along keys");
    p.mask = view_of<const bool>(m);
  }
  return p;
}

/// \brief The backend's worker slots on PyTorch's intra-op pool: slot s runs as index s of
/// at::parallel_for (one slot per thread; inline, one after another, inside a parallel region).
/// The pool's threads are awake between torch's own operators, where the backend's own sleeping
/// pool would have to be woken and would compete with them for the cores.
inline void torch_launch(void*, int n, void (*body)(void*, int), void* body_state) {
  at::parallel_for(0, n, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t s = begin; s < end; ++s) body(body_state, static_cast<int>(s));
  });
}

/// \brief The executor every operator uses: the SIMD backend on torch's intra-op thread count and
/// pool (torch_launch), with the calling thread's workspace.
inline semfocus::exec::simd_t executor() {
  return semfocus::exec::simd.with_threads(std::max(1, at::get_num_threads()))
      .with_runner({&torch_launch, nullptr});
}

/// \brief Runs f, turning the library's invalid_argument into a ValueError with its message.
template <class F>
decltype(auto) translating_errors(F&& f) {
  try {
    return f();
  } catch (const semfocus::invalid_argument& e) {
    C10_THROW_ERROR(ValueError, e.what());
  }
}

}  // namespace semfocus_torch
