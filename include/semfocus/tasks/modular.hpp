// SPDX-License-Identifier: MIT
#pragma once

// Modular Arithmetic (with brackets) and Solve Equation, after Deletang et al. 2023, "Neural
// Networks and the Chomsky Hierarchy" (tasks/dcf/modular_arithmetic_brackets.py and
// solve_equation.py of google-deepmind/neural_networks_chomsky_hierarchy), modulus 5.
//
// Tokens (Deletang's alphabet): the numbers 0..4 are tokens 0..4, then + (5), - (6), * (7),
// ( (8), ) (9), x (10), = (11). Modular Arithmetic uses the first 10, Solve Equation all 12.
//
// Expression of length n >= 1 (Deletang's generate_one_expression_and_result, mult = True as in
// Deletang's registered task), tokens exactly n:
//   n = 1: d        n = 2: - d        n = 3: ( d )        n = 4: ( - d )
//   n >= 5: ( L op R ) with |L| uniform in [1, n - 4], |R| = n - 3 - |L|, op uniform in {+, -, *}
// with d uniform in 0..4; draw order: |L|, then L, then R, then op. Values are taken mod 5 in
// [0, 5). So every generated sequence has exactly the requested length and no padding is needed
// (pad_token = -1).
//
// The evaluators below read the general grammar (not only the generated shapes), with the usual
// precedence: expr := term (('+' | '-') term)*, term := factor ('*' factor)*,
// factor := '-' factor | digit | 'x' | '(' expr ')'; e.g. "( 3 + 4 ) * 2" = 14 = 4 mod 5.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "semfocus/tasks/dataset.hpp"

namespace semfocus::tasks {

/// \brief Token ids and modulus of Modular Arithmetic and Solve Equation (digits are 0..4).
namespace arithmetic {
inline constexpr int modulus = 5;
inline constexpr int plus = 5;
inline constexpr int minus = 6;
inline constexpr int times = 7;
inline constexpr int open = 8;
inline constexpr int close = 9;
inline constexpr int unknown = 10;  ///< x
inline constexpr int equals = 11;   ///< =
}  // namespace arithmetic

namespace detail {

/// \brief v mod 5 in [0, 5).
inline constexpr int mod5(int v) noexcept {
  return ((v % arithmetic::modulus) + arithmetic::modulus) % arithmetic::modulus;
}

/// \brief Recursive-descent evaluator of the grammar in the file comment over tokens[begin, end);
/// x takes the value `x` (x < 0: 'x' is an error). Recursion depth is the bracket nesting.
class expression_parser {
 public:
  expression_parser(const char* fn, std::span<const int> t, int x) : fn_(fn), t_(t), x_(x) {}

  /// \brief The value of the whole span, which must be exactly one expression.
  int evaluate() {
    const int v = expr();
    require(pos_ == t_.size(), fn_, ": unexpected token at position ", pos_);
    return v;
  }

 private:
  int peek() const { return pos_ < t_.size() ? t_[pos_] : -1; }

  int expr() {
    int v = term();
    while (peek() == arithmetic::plus || peek() == arithmetic::minus) {
      const int op = t_[pos_++];
      const int r = term();
      v = mod5(op == arithmetic::plus ? v + r : v - r);
    }
    return v;
  }

  int term() {
    int v = factor();
    while (peek() == arithmetic::times) {
      ++pos_;
      v = mod5(v * factor());
    }
    return v;
  }

  int factor() {
    require(pos_ < t_.size(), fn_, ": expression ends early at position ", pos_);
    const int t = t_[pos_++];
    if (t >= 0 && t < arithmetic::modulus) return t;
    if (t == arithmetic::minus) return mod5(-factor());
    if (t == arithmetic::unknown) {
      require(x_ >= 0, fn_, ": unexpected unknown x at position ", pos_ - 1);
      return x_;
    }
    require(t == arithmetic::open, fn_, ": unexpected token ", t, " at position ", pos_ - 1);
    const int v = expr();
    require(peek() == arithmetic::close, fn_, ": missing ')' at position ", pos_);
    ++pos_;
    return v;
  }

  const char* fn_;
  std::span<const int> t_;
  int x_;
  std::size_t pos_ = 0;
};

/// \brief Appends a random expression of exactly `length` >= 1 tokens (procedure in the file
/// comment) to `out` and returns its value mod 5. Recursion depth <= length / 3 + 1.
inline int random_expression(random_stream& s, index_t length, std::vector<int>& out) {
  if (length <= 4) {
    const int d = s.below(arithmetic::modulus);
    if (length >= 3) out.push_back(arithmetic::open);
    if (length % 2 == 0) out.push_back(arithmetic::minus);
    out.push_back(d);
    if (length >= 3) out.push_back(arithmetic::close);
    return length % 2 == 0 ? mod5(-d) : d;
  }
  const index_t left = s.between(1, static_cast<int>(length - 4));
  out.push_back(arithmetic::open);
  const int a = random_expression(s, left, out);
  const std::size_t op_at = out.size();
  out.push_back(arithmetic::plus);  // replaced once op is drawn (Deletang draws it last)
  const int b = random_expression(s, length - 3 - left, out);
  out.push_back(arithmetic::close);
  const int op = s.below(3);
  out[op_at] = arithmetic::plus + op;
  return op == 0 ? mod5(a + b) : op == 1 ? mod5(a - b) : mod5(a * b);
}

inline std::vector<std::string> arithmetic_token_names(bool equation) {
  std::vector<std::string> names = {"0", "1", "2", "3", "4", "+", "-", "*", "(", ")"};
  if (equation) {
    names.push_back("x");
    names.push_back("=");
  }
  return names;
}

}  // namespace detail

/// \brief Value mod 5 (in [0, 5)) of the expression `tokens` (grammar in the file comment; no x,
/// no =). O(length); recursion depth = bracket nesting.
/// \throws invalid_argument if tokens is not exactly one well-formed expression.
inline int modular_arithmetic_value(std::span<const int> tokens) {
  return detail::expression_parser("semfocus::tasks::modular_arithmetic_value", tokens, -1)
      .evaluate();
}

/// \brief Every x in 0..4 (ascending) for which the equation `tokens` = "lhs = rhs" holds mod 5;
/// lhs and rhs are expressions that may contain x (each occurrence takes the same value).
/// Brute force: 5 evaluations, O(length) each.
/// \throws invalid_argument unless tokens holds exactly one '=' between two well-formed
/// expressions.
inline std::vector<int> solve_equation_solutions(std::span<const int> tokens) {
  constexpr const char* fn = "semfocus::tasks::solve_equation_solutions";
  std::size_t eq = tokens.size();
  int count = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == arithmetic::equals) {
      eq = i;
      ++count;
    }
  detail::require(count == 1, fn, ": need exactly one '=', got ", count);
  std::vector<int> solutions;
  for (int x = 0; x < arithmetic::modulus; ++x) {
    const int lhs = detail::expression_parser(fn, tokens.first(eq), x).evaluate();
    const int rhs = detail::expression_parser(fn, tokens.subspan(eq + 1), x).evaluate();
    if (lhs == rhs) solutions.push_back(x);
  }
  return solutions;
}

/// \brief Solve Equation label: the unique x in 0..4 that satisfies the equation `tokens` mod 5
/// (see solve_equation_solutions). O(length).
/// \throws invalid_argument if the equation is malformed or has no or several solutions.
inline int solve_equation_label(std::span<const int> tokens) {
  const std::vector<int> xs = solve_equation_solutions(tokens);
  detail::require(xs.size() == 1, "semfocus::tasks::solve_equation_label: the equation has ",
                  xs.size(), " solutions in 0..4, need exactly one");
  return xs.front();
}

/// \brief Modular Arithmetic with brackets: one random expression of exactly `length` tokens
/// (default 40; procedure in the file comment) over 0..4, + - * and brackets; label = its value
/// mod 5 (= modular_arithmetic_value(tokens)). vocab 10, 5 classes. Class 0 is the most
/// frequent, since a product with a 0 factor is 0. O((train + test) x length).
/// \throws invalid_argument on a negative count or length.
inline dataset make_modular_arithmetic(const task_options& o) {
  const index_t length =
      detail::resolve_options("semfocus::tasks::make_modular_arithmetic", o, 40, 1);
  dataset d{{}, {}, 10, 5, -1, length, "modular_arithmetic", detail::arithmetic_token_names(false)};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    example e;
    e.tokens.reserve(static_cast<std::size_t>(length));
    e.label = detail::random_expression(s, length, e.tokens);
    return e;
  });
  return d;
}

/// \brief Solve Equation: "E = v" of exactly `length` tokens (default 40): E is a random
/// expression of length - 2 tokens (as make_modular_arithmetic, with *) and v its value; then, as
/// Deletang does, a position p uniform in [0, length - 2) is moved right (cyclically) to the first
/// number token, that number becomes the label and is replaced by x. With * in the grammar the
/// equation is affine in x, a x + b = v, and its solution is unique mod 5 only when the
/// coefficient a is not 0 mod 5 (x multiplied by a subexpression worth 0 makes every x a
/// solution); such equations are rejected and the whole draw is repeated, so every generated
/// equation has exactly one solution (solve_equation_label(tokens) == label). Whether an
/// equation is rejected does not depend on the hidden number, so labels stay uniform. (Deletang's
/// registered Solve Equation uses + and - only, where the solution is always unique.) vocab 12,
/// 5 classes. Expected O((train + test) x length).
/// \throws invalid_argument on a negative count or a length below 3.
inline dataset make_solve_equation(const task_options& o) {
  const index_t length = detail::resolve_options("semfocus::tasks::make_solve_equation", o, 40, 3);
  dataset d{{}, {}, 12, 5, -1, length, "solve_equation", detail::arithmetic_token_names(true)};
  const index_t n = length - 2;
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    for (;;) {
      example e;
      e.tokens.reserve(static_cast<std::size_t>(length));
      const int value = detail::random_expression(s, n, e.tokens);
      auto p = static_cast<std::size_t>(s.below(static_cast<int>(n)));
      while (e.tokens[p] >= arithmetic::modulus) p = (p + 1) % static_cast<std::size_t>(n);
      e.label = e.tokens[p];
      e.tokens[p] = arithmetic::unknown;
      e.tokens.push_back(arithmetic::equals);
      e.tokens.push_back(value);
      if (solve_equation_solutions(e.tokens).size() == 1) return e;
    }
  });
  return d;
}

}  // namespace semfocus::tasks
