// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include <semfocus/core/error.hpp>

namespace semfocus::test {

/// \brief The message of the semfocus::invalid_argument thrown by f, or a marker when f throws
/// something else or nothing.
template <class F>
std::string error_message(const F& f) {
  try {
    f();
  } catch (const semfocus::invalid_argument& e) {
    return e.what();
  } catch (...) {
    return "<another exception type>";
  }
  return "<no exception>";
}

/// \brief Whether `part` occurs in `s`.
inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace semfocus::test
