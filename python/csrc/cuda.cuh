// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <semfocus/cuda.cuh>

#include "attention.hpp"

// The CUDA backend of the operators (nvcc only): exec::cuda on the current stream of q's device.
namespace semfocus_torch {

/// \brief The element types of the CUDA operators (and their spelling in error messages).
inline bool cuda_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}
inline constexpr const char* cuda_dtypes = "float32, float64, float16 or bfloat16 on CUDA";

/// \brief The library's element type for torch's scalar_t: __half for at::Half, __nv_bfloat16 for
/// at::BFloat16 (same bits), float and double themselves.
template <class T>
struct cuda_element {
  using type = T;
};
template <>
struct cuda_element<at::Half> {
  using type = __half;
};
template <>
struct cuda_element<at::BFloat16> {
  using type = __nv_bfloat16;
};

/// \brief Calls f.template operator()<T>() with the library's element type T of `dtype` (one of
/// cuda_dtype's).
template <class F>
void dispatch_cuda(at::ScalarType dtype, F&& f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "semfocus_torch", [&] {
    f.template operator()<typename cuda_element<scalar_t>::type>();
  });
}

/// \brief ValueError unless q is on a CUDA device (the dispatcher sends a call here when any of its
/// tensors is).
inline void check_on_cuda(const at::Tensor& q) {
  TORCH_CHECK_VALUE(q.is_cuda(),
                    "semfocus_torch: q must be on the CUDA device of the other "
                    "arguments, got q on ",
                    q.device());
}

/// \brief The CUDA backend on the current stream of `device` (the caller holds a device guard):
/// tiled kernels for float, float16 and bfloat16, the naive ones for double. Work is ordered with
/// torch's on that stream; each call returns when the stream has finished it (the record is a
/// host object).
inline semfocus::exec::cuda_t cuda_executor(const at::Device& device) {
  return semfocus::exec::cuda.on(at::cuda::getCurrentCUDAStream(device.index()).stream());
}

}  // namespace semfocus_torch
