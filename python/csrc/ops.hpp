// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

// The operators' kernels (registered in register.cpp as semfocus::forward and semfocus::backward).
// Tensors are [batch, heads, seq, dim] with any outer strides; a last axis of stride != 1 is copied
// once. CPU: exec::simd on torch's intra-op thread count, float32 and float64. CUDA (cuda.cu, when
// the package is built with nvcc): exec::cuda on the current stream of q's device, float32,
// float64 (the naive kernels), float16 and bfloat16 (scores and record in float).
namespace semfocus_torch {

/// \brief Forward record as tensors: (out, lse [rows] float64, stats [rows * sizeof(statistic)]
/// uint8 (empty for elementwise policies), selection offsets [rows + 1] int64 (or empty),
/// selection [kept] int32): everything semfocus::backward needs, so it never re-selects. All but
/// out are CPU tensors on every device (the library's record lives in host memory); the CUDA
/// backend records no selection (its backward re-derives the kept sets from the row statistics).
using forward_result = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

/// \brief The CPU kernels (forward.cpp, backward.cpp).
forward_result forward_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           c10::string_view policy, at::IntArrayRef ints,
                           at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask,
                           std::optional<double> scale);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& d_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, c10::string_view policy, at::IntArrayRef ints,
    at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask, std::optional<double> scale,
    const at::Tensor& lse, const at::Tensor& stats, const at::Tensor& selection_offsets,
    const at::Tensor& selection);

/// \brief The CUDA kernels: cuda.cu when built with nvcc; otherwise register.cpp's, which raise a
/// ValueError saying that this build has none.
forward_result forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            c10::string_view policy, at::IntArrayRef ints,
                            at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask,
                            std::optional<double> scale);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& d_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, c10::string_view policy, at::IntArrayRef ints,
    at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask, std::optional<double> scale,
    const at::Tensor& lse, const at::Tensor& stats, const at::Tensor& selection_offsets,
    const at::Tensor& selection);

}  // namespace semfocus_torch
