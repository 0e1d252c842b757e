// SPDX-License-Identifier: MIT
#pragma once

// The three binary-string tasks of the paper's Experiments: Parity, Even Pairs and Missing
// Duplicates (the last two after Deletang et al. 2023, "Neural Networks and the Chomsky
// Hierarchy"). Tokens are the bits 0 and 1 (and MISSING = 2 for Missing Duplicates); every
// sequence of a dataset has the same length, so pad_token is -1. Each task has a generator
// make_X(options) and a reference labeller X_label(tokens) stating its definition.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "semfocus/tasks/dataset.hpp"

namespace semfocus::tasks {

/// \brief Token of Missing Duplicates that hides one bit.
inline constexpr int missing_token = 2;

namespace detail {

/// \brief `length` uniform random bits from `s` (one draw each).
inline std::vector<int> random_bits(random_stream& s, index_t length) {
  std::vector<int> bits(static_cast<std::size_t>(length));
  for (int& b : bits) b = s.below(2);
  return bits;
}

}  // namespace detail

/// \brief Parity label: the number of 1 tokens modulo 2. tokens in {0, 1}, length >= 1. O(length).
/// \throws invalid_argument on an empty sequence or a token outside {0, 1}.
inline int parity_label(std::span<const int> tokens) {
  detail::check_tokens("semfocus::tasks::parity_label", tokens, 2, 1);
  int ones = 0;
  for (const int t : tokens) ones += t;
  return ones % 2;
}

/// \brief Even Pairs label: the number of adjacent unequal pairs (t, t + 1), tokens[t] !=
/// tokens[t + 1], modulo 2; this equals [tokens.front() != tokens.back()]. tokens in {0, 1},
/// length >= 1. O(length).
/// \throws invalid_argument on an empty sequence or a token outside {0, 1}.
inline int even_pairs_label(std::span<const int> tokens) {
  detail::check_tokens("semfocus::tasks::even_pairs_label", tokens, 2, 1);
  int changes = 0;
  for (std::size_t t = 0; t + 1 < tokens.size(); ++t) changes += tokens[t] != tokens[t + 1];
  return changes % 2;
}

/// \brief Missing Duplicates label: tokens = [b, b] for a bit string b of length n / 2 with
/// exactly one position replaced by missing_token; returns the hidden bit, read from the other
/// copy (position p -> p +- n / 2). O(length).
/// \throws invalid_argument if the length is odd or zero, a token is outside {0, 1, 2}, the
/// number of missing tokens is not one, or the two copies disagree elsewhere.
inline int missing_duplicates_label(std::span<const int> tokens) {
  constexpr const char* fn = "semfocus::tasks::missing_duplicates_label";
  detail::check_tokens(fn, tokens, 3, 2);
  detail::require(tokens.size() % 2 == 0, fn, ": length must be even, got ", tokens.size());
  const std::size_t half = tokens.size() / 2;
  int label = -1;
  int missing = 0;
  for (std::size_t p = 0; p < half; ++p) {
    const int a = tokens[p], b = tokens[p + half];
    if (a == missing_token || b == missing_token) {
      missing += (a == missing_token) + (b == missing_token);
      label = a == missing_token ? b : a;
    } else {
      detail::require(a == b, fn, ": copies differ at position ", p);
    }
  }
  detail::require(missing == 1, fn, ": need exactly one missing token, got ", missing);
  return label;
}

/// \brief Parity: `length` (default 40) uniform random bits, label = parity_label (number of
/// ones mod 2); vocab {0, 1}, 2 classes. O((train + test) x length).
/// \throws invalid_argument on a negative count or length.
inline dataset make_parity(const task_options& o) {
  const index_t length = detail::resolve_options("semfocus::tasks::make_parity", o, 40, 1);
  dataset d{{}, {}, 2, 2, -1, length, "parity", {"0", "1"}};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    example e{detail::random_bits(s, length), 0};
    e.label = parity_label(e.tokens);
    return e;
  });
  return d;
}

/// \brief Even Pairs: `length` (default 40) uniform random bits, label = even_pairs_label
/// (number of adjacent unequal pairs mod 2, i.e. first bit != last bit); vocab {0, 1},
/// 2 classes. O((train + test) x length).
/// \throws invalid_argument on a negative count or length.
inline dataset make_even_pairs(const task_options& o) {
  const index_t length = detail::resolve_options("semfocus::tasks::make_even_pairs", o, 40, 1);
  dataset d{{}, {}, 2, 2, -1, length, "even_pairs", {"0", "1"}};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    example e{detail::random_bits(s, length), 0};
    e.label = even_pairs_label(e.tokens);
    return e;
  });
  return d;
}

/// \brief Missing Duplicates: length / 2 (default 20) uniform random bits b, the sequence
/// [b, b] (length 40), one position p uniform in [0, length) replaced by missing_token ("?"),
/// label = the replaced bit. Draw order: the bits of b, then p. vocab {0, 1, ?}, 2 classes.
/// O((train + test) x length).
/// \throws invalid_argument on a negative count, or a length that is odd or below 2.
inline dataset make_missing_duplicates(const task_options& o) {
  constexpr const char* fn = "semfocus::tasks::make_missing_duplicates";
  const index_t length = detail::resolve_options(fn, o, 40, 2);
  detail::require(length % 2 == 0, fn, ": options.length must be even, got ", length);
  dataset d{{}, {}, 3, 2, -1, length, "missing_duplicates", {"0", "1", "?"}};
  detail::fill_splits(d, o, [&](detail::random_stream& s) {
    const std::vector<int> b = detail::random_bits(s, length / 2);
    example e{b, 0};
    e.tokens.insert(e.tokens.end(), b.begin(), b.end());
    const auto p = static_cast<std::size_t>(s.below(static_cast<int>(length)));
    e.label = e.tokens[p];
    e.tokens[p] = missing_token;
    return e;
  });
  return d;
}

}  // namespace semfocus::tasks
