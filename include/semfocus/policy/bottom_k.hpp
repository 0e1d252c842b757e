// SPDX-License-Identifier: MIT
#pragma once

#include "semfocus/policy/rank_k.hpp"

namespace semfocus {

/// \brief Bottom-k (in the paper's code, not its experiments): row i keeps its k smallest scaled
/// scores, ties broken by (score ascending, index ascending); NaN never kept. See rank_k.
using bottom_k = rank_k<false>;

}  // namespace semfocus
