// SPDX-License-Identifier: MIT
#pragma once

// Execution tags: empty values passed first to forward/backward to choose the backend.
namespace semfocus::exec {

/// \brief The scalar reference backend (backend/reference): the oracle of every other backend.
struct reference_t {};
inline constexpr reference_t reference{};

}  // namespace semfocus::exec
