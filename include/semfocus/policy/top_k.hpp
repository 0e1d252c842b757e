// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/policy/rank_k.hpp"

namespace semfocus {

/// \brief Top-k ("heavy hitters", the paper's input-dependent policy): row i keeps its k largest
/// scaled scores, ties broken by (score descending, index ascending); NaN never kept. See rank_k.
using top_k = rank_k<true>;

}  // namespace semfocus
