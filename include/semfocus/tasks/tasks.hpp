// SPDX-License-Identifier: MIT
#pragma once

// Every task generator of the paper's Experiments, and a registry that finds them by name:
//   parity, even_pairs, missing_duplicates            (binary.hpp)
//   stack_manipulation, cycle_navigation              (deletang.hpp)
//   modular_arithmetic, solve_equation                (modular.hpp)
//   listops                                           (listops.hpp)
// Usage: auto d = semfocus::tasks::make_task("parity", {.seed = 3});

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "semfocus/tasks/binary.hpp"
#include "semfocus/tasks/dataset.hpp"
#include "semfocus/tasks/deletang.hpp"
#include "semfocus/tasks/listops.hpp"
#include "semfocus/tasks/modular.hpp"

namespace semfocus::tasks {

/// \brief A task generator: a pure function of its options.
using generator = dataset (*)(const task_options&);

namespace detail {

struct registry_entry {
  std::string_view name;
  generator make;
};

inline constexpr std::array<registry_entry, 8> registry = {{
    {"parity", &make_parity},
    {"even_pairs", &make_even_pairs},
    {"missing_duplicates", &make_missing_duplicates},
    {"stack_manipulation", &make_stack_manipulation},
    {"modular_arithmetic", &make_modular_arithmetic},
    {"solve_equation", &make_solve_equation},
    {"cycle_navigation", &make_cycle_navigation},
    {"listops", static_cast<generator>(&make_listops)},
}};

}  // namespace detail

/// \brief The names of every registered task, in the paper's order: parity, even_pairs,
/// missing_duplicates, stack_manipulation, modular_arithmetic, solve_equation,
/// cycle_navigation, listops. O(1).
inline std::vector<std::string> task_names() {
  std::vector<std::string> names;
  for (const auto& e : detail::registry) names.emplace_back(e.name);
  return names;
}

/// \brief The generator registered as `name` (exact, lower case). O(number of tasks).
/// \throws invalid_argument for an unknown name; the message lists the valid ones.
inline generator task_generator(std::string_view name) {
  for (const auto& e : detail::registry)
    if (e.name == name) return e.make;
  std::string valid;
  for (const auto& e : detail::registry) {
    if (!valid.empty()) valid += ", ";
    valid += e.name;
  }
  detail::require(false, "semfocus::tasks::task_generator: unknown task '", name,
                  "'; valid tasks: ", valid);
  return nullptr;
}

/// \brief Generates task `name` with options `o`: task_generator(name)(o).
/// \throws invalid_argument for an unknown name or bad options (see the task's generator).
inline dataset make_task(std::string_view name, const task_options& o = {}) {
  return task_generator(name)(o);
}

}  // namespace semfocus::tasks
