// SPDX-License-Identifier: MIT
#pragma once

// The SIMD CPU backend: `semfocus::forward(semfocus::exec::simd, policy, ...)`. Needs xsimd 8.1
// (link semfocus::simd); compile with the target's -march (e.g. -march=native) to get its vectors.

#include "semfocus/backend/simd/arch.hpp"
#include "semfocus/backend/simd/backward.hpp"
#include "semfocus/backend/simd/backward_row.hpp"
#include "semfocus/backend/simd/exec.hpp"
#include "semfocus/backend/simd/forward.hpp"
#include "semfocus/backend/simd/forward_row.hpp"
