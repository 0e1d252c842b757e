// SPDX-License-Identifier: MIT
#pragma once

#define SEMFOCUS_VERSION_MAJOR 0
#define SEMFOCUS_VERSION_MINOR 1
#define SEMFOCUS_VERSION_PATCH 0

/// \brief Version as one integer, major * 10000 + minor * 100 + patch.
#define SEMFOCUS_VERSION \
  (SEMFOCUS_VERSION_MAJOR * 10000 + SEMFOCUS_VERSION_MINOR * 100 + SEMFOCUS_VERSION_PATCH)
