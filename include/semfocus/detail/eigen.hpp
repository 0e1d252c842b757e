// SPDX-License-Identifier: MIT
#pragma once

// Eigen's dense module, as every semfocus header, test, example and benchmark includes it:
// inside SEMFOCUS_THIRD_PARTY_BEGIN/END (config.hpp), so that g++'s false positives after
// inlining Eigen's AVX-512 code (GCC PR 105593) never reach the including code. Include it
// before any other Eigen header of a translation unit.

#include "semfocus/config.hpp"

SEMFOCUS_THIRD_PARTY_BEGIN
#include <Eigen/Dense>
SEMFOCUS_THIRD_PARTY_END
