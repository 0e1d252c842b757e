// SPDX-License-Identifier: MIT
#pragma once

// Everything g++ can compile: core vocabulary, every built-in policy, the reference backend, the
// SIMD backend when SEMFOCUS_HAS_XSIMD is defined (link semfocus::simd) and the bounds module when
// SEMFOCUS_HAS_EIGEN is defined (link semfocus::bounds).

#include "semfocus/config.hpp"
#include "semfocus/version.hpp"

#include "semfocus/core/checks.hpp"
#include "semfocus/core/error.hpp"
#include "semfocus/core/record.hpp"
#include "semfocus/core/shape.hpp"
#include "semfocus/core/softmax.hpp"
#include "semfocus/core/view.hpp"

#include "semfocus/policy/absolute_threshold.hpp"
#include "semfocus/policy/banded.hpp"
#include "semfocus/policy/block_local.hpp"
#include "semfocus/policy/bottom_k.hpp"
#include "semfocus/policy/concepts.hpp"
#include "semfocus/policy/dense.hpp"
#include "semfocus/policy/explicit_mask.hpp"
#include "semfocus/policy/global_tokens.hpp"
#include "semfocus/policy/random_k.hpp"
#include "semfocus/policy/strided.hpp"
#include "semfocus/policy/threshold.hpp"
#include "semfocus/policy/top_k.hpp"

#include "semfocus/backend/dispatch.hpp"
#include "semfocus/backend/reference/backward.hpp"
#include "semfocus/backend/reference/forward.hpp"
#include "semfocus/backend/tags.hpp"

// The SIMD backend when xsimd is available (semfocus::simd defines SEMFOCUS_HAS_XSIMD).
#if defined(SEMFOCUS_HAS_XSIMD)
#include "semfocus/backend/simd/simd.hpp"
#endif

// The bounds module when Eigen is available (semfocus::bounds defines SEMFOCUS_HAS_EIGEN).
#if defined(SEMFOCUS_HAS_EIGEN)
#include "semfocus/bounds/bounds.hpp"
#endif
