// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "tensors.hpp"

// The CPU backend of the operators: exec::simd on PyTorch's intra-op thread count and pool.
namespace semfocus_torch {

/// \brief The element types of the CPU operators (and their spelling in error messages).
inline bool cpu_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kDouble; }
inline constexpr const char* cpu_dtypes = "float32 or float64 on the CPU";

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

}  // namespace semfocus_torch
