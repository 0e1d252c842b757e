// SPDX-License-Identifier: MIT
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace semfocus {

/// \brief Thrown by every public entry point on bad input (shapes, k, null or short buffers,
/// non-finite scale or threshold). The message names the argument and the expected value.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// \brief Throws semfocus::invalid_argument with the streamed parts when `ok` is false; the first
/// part names the function or type, as "semfocus::top_k: ".
/// Host-only; parts are only formatted on failure.
template <class... Parts>
void require(bool ok, const Parts&... parts) {
  if (ok) return;
  std::ostringstream os;
  (os << ... << parts);
  throw invalid_argument(os.str());
}

}  // namespace detail
}  // namespace semfocus
