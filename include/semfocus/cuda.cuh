// SPDX-License-Identifier: MIT
#pragma once

// The CUDA backend (nvcc only), on top of everything semfocus/semfocus.hpp offers:
//   semfocus::forward(semfocus::exec::cuda, policy, q, k, v, out, record);
//   semfocus::backward(semfocus::exec::cuda.on(stream), policy, q, k, v, out, d_out, record,
//                      dq, dk, dv);
// with every view in device memory (backend/cuda/dispatch.cuh). Kernels are templates
// instantiated in the including .cu file; compile it with -std=c++20 (semfocus::cuda adds it).
#if !defined(__CUDACC__)
#error "semfocus/cuda.cuh needs nvcc (a .cu file); g++ code includes semfocus/semfocus.hpp"
#endif

#include "semfocus/semfocus.hpp"

#include "semfocus/backend/cuda/buffer.cuh"
#include "semfocus/backend/cuda/check.cuh"
#include "semfocus/backend/cuda/dispatch.cuh"
#include "semfocus/backend/cuda/exec.cuh"
#include "semfocus/backend/cuda/flash.cuh"
#include "semfocus/backend/cuda/flash_launch.cuh"
#include "semfocus/backend/cuda/launch.cuh"
#include "semfocus/backend/cuda/naive.cuh"
#include "semfocus/backend/cuda/scalar.cuh"
#include "semfocus/backend/cuda/tc_launch.cuh"
