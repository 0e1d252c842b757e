// SPDX-License-Identifier: MIT
#pragma once

// xsimd, as every semfocus header includes it: inside SEMFOCUS_THIRD_PARTY_BEGIN/END
// (config.hpp), so that g++'s false positives after inlining xsimd's AVX-512 kernels (GCC PR
// 105593) never reach the including code. Include it before any other xsimd header of a
// translation unit.

#include "semfocus/config.hpp"

SEMFOCUS_THIRD_PARTY_BEGIN
#include <xsimd/xsimd.hpp>
SEMFOCUS_THIRD_PARTY_END
