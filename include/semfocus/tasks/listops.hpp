// SPDX-License-Identifier: MIT
#pragma once

// ListOps as generated for the Long Range Arena (Tay et al. 2021; lra_benchmarks/data/listops.py
// of google-research/long-range-arena, after Nangia and Bowman 2018).
//
// Tokens: the digits 0..9 (ids 0..9), the operators as opening tokens "[MIN" (10), "[MAX" (11),
// "[MED" (12), "[SM" (13), the closing "]" (14) and a padding token "<pad>" (15). An operator
// application is "[OP a1 ... ak ]" (LRA's strings also hold "(" and ")" around every
// (function, argument) pair; they carry no information, are not tokens here, and are not counted
// in LRA's length either). Values:
//   MIN, MAX: the smallest and the largest argument;
//   MED: the median as LRA computes it, int(np.median(args)): the middle argument after sorting
//        for an odd count, and floor((a + b) / 2) of the two middle arguments a <= b for an even
//        count (NOT the lower middle: MED 1 4 = 2);
//   SM:  the sum of the arguments mod 10.
//
// Generation (LRA's generate_tree, root at depth 1): a node at depth < max_depth is an operator
// with probability 1/4 (LRA: random() <= VALUE_P = 0.25) and a digit otherwise; at depth ==
// max_depth it is a digit. A digit is uniform in 0..9; an operator is uniform among the four and
// has k uniform in [2, max_args] children, each generated at depth + 1. (The branching
// probability is constant above the depth limit in LRA, not decreasing.) A tree is kept when its
// token count n satisfies min_length < n < max_length (strict, as LRA) and drawn again otherwise;
// a draw is abandoned as soon as it cannot end shorter than max_length (which leaves the
// distribution of kept trees unchanged). LRA also drops duplicate trees; at 500-600 tokens a
// duplicate is practically impossible and this generator does not look for them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "semfocus/tasks/dataset.hpp"

namespace semfocus::tasks {

/// \brief Token ids of ListOps (digits are 0..9).
namespace listops {
inline constexpr int min_op = 10;      ///< [MIN
inline constexpr int max_op = 11;      ///< [MAX
inline constexpr int median_op = 12;   ///< [MED
inline constexpr int sum_mod_op = 13;  ///< [SM
inline constexpr int close = 14;       ///< ]
inline constexpr int pad = 15;         ///< <pad>
inline constexpr int vocab_size = 16;
}  // namespace listops

/// \brief The shape of the ListOps trees (defaults: the paper's 500-600 window, LRA's depth and
/// arguments). Kept trees have min_length < tokens < max_length.
struct listops_options {
  index_t min_length = 500;  ///< exclusive lower bound on the token count, >= 0
  index_t max_length = 600;  ///< exclusive upper bound, > min_length + 1
  int max_depth = 10;        ///< depth of the deepest digits (root at depth 1), >= 1
  int max_args = 10;         ///< arguments per operator are uniform in [2, max_args], >= 2
};

namespace detail {

/// \brief Value of operator token `op` over `args` (definitions in the file comment); sorts
/// args for MED. O(k log k).
inline int listops_apply(int op, std::vector<int>& args) {
  if (op == listops::min_op) return *std::min_element(args.begin(), args.end());
  if (op == listops::max_op) return *std::max_element(args.begin(), args.end());
  if (op == listops::sum_mod_op) {
    int sum = 0;
    for (const int a : args) sum += a;
    return sum % 10;
  }
  std::sort(args.begin(), args.end());
  const std::size_t k = args.size();
  return k % 2 == 1 ? args[k / 2] : (args[k / 2 - 1] + args[k / 2]) / 2;
}

/// \brief One LRA tree draw, appended to `out`; returns its value, or -1 once the tokens so far
/// plus the closing brackets still owed (`open`) reach o.max_length (the draw is then useless).
inline int listops_tree(random_stream& s, const listops_options& o, int depth, index_t open,
                        std::vector<int>& out) {
  const auto too_long = [&] { return static_cast<index_t>(out.size()) + open >= o.max_length; };
  if (depth >= o.max_depth || s.below(4) != 0) {
    out.push_back(s.below(10));
    return too_long() ? -1 : out.back();
  }
  const int op = listops::min_op + s.below(4);
  const int k = s.between(2, o.max_args);
  out.push_back(op);
  if (too_long()) return -1;
  std::vector<int> args;
  args.reserve(static_cast<std::size_t>(k));
  for (int i = 0; i < k; ++i) {
    const int v = listops_tree(s, o, depth + 1, open + 1, out);
    if (v < 0) return -1;
    args.push_back(v);
  }
  out.push_back(listops::close);
  if (too_long()) return -1;
  return listops_apply(op, args);
}

/// \brief The longest tree the options allow (capped at 2^40): 1 at max_depth, else
/// 2 + max_args x the longest one level down.
inline index_t listops_longest(const listops_options& o) {
  constexpr index_t cap = index_t(1) << 40;
  index_t longest = 1;
  for (int depth = o.max_depth - 1; depth >= 1; --depth)
    longest = longest >= cap / o.max_args ? cap : 2 + index_t(o.max_args) * longest;
  return longest;
}

}  // namespace detail

/// \brief Value (0..9) of the ListOps expression `tokens` (definitions in the file comment):
/// a digit, or "[OP a1 ... ak ]" with k >= 1 nested arguments; trailing listops::pad tokens are
/// ignored. Iterative (no recursion). O(length log length).
/// \throws invalid_argument on an unknown token, a pad token before the end, an operator without
/// arguments, an unbalanced "]", or tokens left after the expression.
inline int listops_value(std::span<const int> tokens) {
  constexpr const char* fn = "semfocus::tasks::listops_value";
  std::size_t n = tokens.size();
  while (n > 0 && tokens[n - 1] == listops::pad) --n;
  detail::require(n > 0, fn, ": empty expression");
  struct frame {
    int op;
    std::vector<int> args;
  };
  std::vector<frame> stack;
  int result = -1;
  for (std::size_t i = 0; i < n; ++i) {
    const int t = tokens[i];
    detail::require(result < 0, fn, ": tokens left after the expression at position ", i);
    detail::require(t >= 0 && t < listops::pad, fn, ": unexpected token ", t, " at position ", i);
    int value = -1;
    if (t <= 9) {
      value = t;
    } else if (t == listops::close) {
      detail::require(!stack.empty(), fn, ": unbalanced ']' at position ", i);
      detail::require(!stack.back().args.empty(), fn, ": operator without arguments closed at ", i);
      value = detail::listops_apply(stack.back().op, stack.back().args);
      stack.pop_back();
    } else {
      stack.push_back({t, {}});
    }
    if (value < 0) continue;
    if (stack.empty())
      result = value;
    else
      stack.back().args.push_back(value);
  }
  detail::require(stack.empty(), fn, ": ", stack.size(), " operator(s) not closed");
  return result;
}

/// \brief ListOps with explicit tree options (procedure in the file comment): every example is
/// a kept LRA tree, label = its value (listops_value(tokens)); sequences have different lengths
/// (pad with pad_batch and listops::pad). vocab 16 (pad included), 10 classes, max_length =
/// lo.max_length - 1. The classes are unbalanced by nature (MIN favours small values, MAX large
/// ones): measured at the defaults over 5000 trees (seed 1), 0 and 9 each about 16%, the others
/// 7.5-9.5%. About 1 draw in 94 is kept at the defaults (a draw is abandoned once too long);
/// about 0.15 ms per kept tree at -O2.
/// \throws invalid_argument on a negative count, o.length != 0 (give lengths in `lo`), bad `lo`
/// (see listops_options; also when no tree can exceed min_length), or when a single example
/// needs more than 10^7 draws.
inline dataset make_listops(const task_options& o, const listops_options& lo) {
  constexpr const char* fn = "semfocus::tasks::make_listops";
  detail::resolve_options(fn, o, 0, 0);
  detail::require(o.length == 0, fn,
                  ": options.length must be 0 when listops_options are given, got ", o.length);
  detail::require(lo.min_length >= 0, fn, ": min_length must be >= 0, got ", lo.min_length);
  detail::require(lo.max_length > lo.min_length + 1 && lo.max_length <= detail::max_task_length, fn,
                  ": max_length must be in [min_length + 2, ", detail::max_task_length, "], got ",
                  lo.max_length, " with min_length ", lo.min_length);
  detail::require(lo.max_depth >= 1 && lo.max_depth <= 64, fn,
                  ": max_depth must be in [1, 64], got ", lo.max_depth);
  detail::require(lo.max_args >= 2, fn, ": max_args must be >= 2, got ", lo.max_args);
  detail::require(detail::listops_longest(lo) > lo.min_length, fn, ": no tree of max_depth ",
                  lo.max_depth, " and max_args ", lo.max_args, " is longer than min_length ",
                  lo.min_length);
  std::vector<std::string> names;
  for (int v = 0; v < 10; ++v) names.push_back(std::to_string(v));
  for (const char* t : {"[MIN", "[MAX", "[MED", "[SM", "]", "<pad>"}) names.emplace_back(t);
  dataset d{{}, {}, listops::vocab_size, 10, listops::pad, lo.max_length - 1, "listops", names};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    example e;
    for (std::int64_t attempt = 0;; ++attempt) {
      detail::require(attempt < 10'000'000, fn, ": no tree kept in 10^7 draws; widen (",
                      lo.min_length, ", ", lo.max_length, ")");
      e.tokens.clear();
      e.label = detail::listops_tree(s, lo, 1, 0, e.tokens);
      if (e.label >= 0 && static_cast<index_t>(e.tokens.size()) > lo.min_length) return e;
    }
  });
  return d;
}

/// \brief ListOps for the registry: options.length = 0 gives the paper's window (500 < n <
/// 600); a non-zero length L keeps L - L / 6 < n < L (so 600 gives the default). Otherwise as the
/// overload with listops_options (defaults).
/// \throws invalid_argument as that overload, or on a negative length or one below 3.
inline dataset make_listops(const task_options& o) {
  listops_options lo;
  detail::require(o.length == 0 || o.length >= 3, "semfocus::tasks::make_listops: options.length ",
                  "must be 0 or >= 3, got ", o.length);
  if (o.length != 0) {
    lo.max_length = o.length;
    lo.min_length = o.length - o.length / 6;
    if (lo.min_length + 1 >= lo.max_length) lo.min_length = lo.max_length - 2;
  }
  task_options inner = o;
  inner.length = 0;
  return make_listops(inner, lo);
}

}  // namespace semfocus::tasks
