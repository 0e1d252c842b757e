// SPDX-License-Identifier: MIT
#pragma once

// The bounds module (host code, double precision, needs Eigen 3.4: link semfocus::bounds):
//  diagnostics.hpp  dispersion, separation, sink counts and their quantiles (the paper's Table 6)
//  norms.hpp        power iteration, spectral norms, Gamma, Upsilon, B, worst-case dispersion
//  stability.hpp    the paper's softmax stability constants and its conditions LHS_W, LHS_X
//  lipschitz.hpp    Jacobian-vector product and the local Lipschitz constant by power iteration
//  certified.hpp    closed-form Lipschitz bounds with the radius where they hold
//  layer.hpp        the same with respect to a layer's input X for given projection weights

#include "semfocus/bounds/certified.hpp"
#include "semfocus/bounds/diagnostics.hpp"
#include "semfocus/bounds/layer.hpp"
#include "semfocus/bounds/lipschitz.hpp"
#include "semfocus/bounds/norms.hpp"
#include "semfocus/bounds/quantiles.hpp"
#include "semfocus/bounds/selection.hpp"
#include "semfocus/bounds/stability.hpp"
