// SPDX-License-Identifier: MIT
#pragma once

// The four tasks of the paper taken from Deletang et al. 2023, "Neural Networks and the Chomsky
// Hierarchy" (google-deepmind/neural_networks_chomsky_hierarchy): Cycle Navigation and Stack
// Manipulation here, Modular Arithmetic (with brackets) and Solve Equation in modular.hpp. Every
// sequence of a dataset has the same length (default 40), so pad_token is -1.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "semfocus/tasks/dataset.hpp"
#include "semfocus/tasks/modular.hpp"

namespace semfocus::tasks {

/// \brief Tokens and classes of Cycle Navigation: moves stay (0), +1 (1), -1 (2) on a cycle of
/// `length` positions.
namespace cycle {
inline constexpr int stay = 0;
inline constexpr int forward = 1;   ///< +1
inline constexpr int backward = 2;  ///< -1
inline constexpr int length = 5;
}  // namespace cycle

/// \brief Tokens and classes of Stack Manipulation (Deletang's alphabet): stack bits 0 and 1,
/// then the actions POP (2), PUSH 0 (3), PUSH 1 (4); label empty (2) for an empty final stack.
namespace stack_ops {
inline constexpr int pop = 2;
inline constexpr int push0 = 3;
inline constexpr int push1 = 4;
inline constexpr int empty = 2;  ///< the label of an empty final stack
}  // namespace stack_ops

/// \brief Cycle Navigation label: the final position on a cycle of 5 positions, starting at 0,
/// after the moves tokens[0], tokens[1], ... (stay 0, +1 1, -1 2): (#(+1) - #(-1)) mod 5.
/// O(length). \throws invalid_argument on an empty sequence or a token outside {0, 1, 2}.
inline int cycle_navigation_label(std::span<const int> tokens) {
  detail::check_tokens("semfocus::tasks::cycle_navigation_label", tokens, 3, 1);
  int pos = 0;
  for (const int t : tokens)
    pos = (pos + (t == cycle::forward    ? 1
                  : t == cycle::backward ? cycle::length - 1
                                         : 0)) %
          cycle::length;
  return pos;
}

/// \brief Stack Manipulation label: tokens are an initial stack, bottom to top, of bits (0, 1),
/// followed by actions POP (2), PUSH 0 (3), PUSH 1 (4) applied left to right; a POP on an empty
/// stack does nothing (as in Deletang). Returns the top of the final stack (0 or 1), or
/// stack_ops::empty (2) when the final stack is empty. O(length).
/// \throws invalid_argument on an empty sequence, a token outside [0, 5), or a bit after an
/// action.
inline int stack_manipulation_label(std::span<const int> tokens) {
  constexpr const char* fn = "semfocus::tasks::stack_manipulation_label";
  detail::check_tokens(fn, tokens, 5, 1);
  std::vector<int> stack;
  bool acting = false;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const int a = tokens[t];
    if (a <= 1) {
      detail::require(!acting, fn, ": stack bit at position ", t, " after an action");
      stack.push_back(a);
      continue;
    }
    acting = true;
    if (a == stack_ops::pop) {
      if (!stack.empty()) stack.pop_back();
    } else {
      stack.push_back(a - stack_ops::push0);
    }
  }
  return stack.empty() ? stack_ops::empty : stack.back();
}

/// \brief Cycle Navigation (Deletang): `length` (default 40) moves, each uniform in {stay (0),
/// +1 (1), -1 (2)}, on a cycle of 5 positions starting at 0; label = the final position
/// (cycle_navigation_label). Deletang codes the moves 0 = -1, 1 = stay, 2 = +1; this library
/// codes them 0 = stay, 1 = +1, 2 = -1 (the same task). vocab 3, 5 classes.
/// O((train + test) x length).
/// \throws invalid_argument on a negative count or length.
inline dataset make_cycle_navigation(const task_options& o) {
  const index_t length =
      detail::resolve_options("semfocus::tasks::make_cycle_navigation", o, 40, 1);
  dataset d{{}, {}, 3, cycle::length, -1, length, "cycle_navigation", {"0", "+1", "-1"}};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    example e{std::vector<int>(static_cast<std::size_t>(length)), 0};
    for (int& t : e.tokens) t = s.below(3);
    e.label = cycle_navigation_label(e.tokens);
    return e;
  });
  return d;
}

/// \brief Stack Manipulation (Deletang, adapted to classification): a stack height h uniform in
/// [1, length - 1], then h uniform bits (the initial stack, bottom to top), then length - h
/// actions, each uniform in {POP, PUSH 0, PUSH 1}; total `length` tokens (default 40). Deletang's
/// target is the whole final stack; as this library trains sequence classifiers, the label (our
/// adaptation) is the top of the final stack: 0, 1, or empty (2) (stack_manipulation_label).
/// The classes are inherently unbalanced: 0 and 1 are equally likely, but an empty final stack
/// needs the POPs to outrun a walk that PUSHes twice as often as it POPs, so class 2 has
/// probability 2.7e-4 at length 40 (exact, by dynamic programming: about 1.4 examples in 5000);
/// the task is binary in practice.
/// vocab 5 ("0", "1", "POP", "PUSH0", "PUSH1"), 3 classes. O((train + test) x length).
/// \throws invalid_argument on a negative count or a length below 2.
inline dataset make_stack_manipulation(const task_options& o) {
  const index_t length =
      detail::resolve_options("semfocus::tasks::make_stack_manipulation", o, 40, 2);
  dataset d{{}, {}, 5, 3, -1, length, "stack_manipulation", {"0", "1", "POP", "PUSH0", "PUSH1"}};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    const int h = s.between(1, static_cast<int>(length - 1));
    example e{std::vector<int>(static_cast<std::size_t>(length)), 0};
    for (int i = 0; i < h; ++i) e.tokens[static_cast<std::size_t>(i)] = s.below(2);
    for (auto i = static_cast<std::size_t>(h); i < e.tokens.size(); ++i)
      e.tokens[i] = stack_ops::pop + s.below(3);
    e.label = stack_manipulation_label(e.tokens);
    return e;
  });
  return d;
}

}  // namespace semfocus::tasks
