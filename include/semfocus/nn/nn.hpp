// SPDX-License-Identifier: MIT
#pragma once

// The nn module (namespace semfocus::nn): the small Eigen training stack of the paper's model --
// tensors and parameters, deterministic initialisation, layers, multi-head attention with any
// policy on any backend, the encoder classifier, optimisers. Needs Eigen 3.4; optional to include
// (semfocus/semfocus.hpp does not include it). Eigen's own threading is never enabled: the layers
// split their work into fixed chunks on the SIMD backend's pool (parallel.hpp).

#include "semfocus/nn/attention.hpp"
#include "semfocus/nn/checkpoint.hpp"
#include "semfocus/nn/dropout.hpp"
#include "semfocus/nn/init.hpp"
#include "semfocus/nn/landscape.hpp"
#include "semfocus/nn/layers.hpp"
#include "semfocus/nn/model.hpp"
#include "semfocus/nn/optim.hpp"
#include "semfocus/nn/parallel.hpp"
#include "semfocus/nn/tensor.hpp"
