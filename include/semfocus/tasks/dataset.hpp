// SPDX-License-Identifier: MIT
#pragma once

// The common types of the task generators (a small, PyTorch-like dataset: token sequences with
// one class label each), the padding helper, token <-> text conversion, and the reproducible
// random streams every generator draws from.
//
// Reproducibility. A generator is a pure function of its task_options. The training set and the
// held-out set are drawn from two independent streams, each a std::mt19937_64 seeded with
// splitmix64 of (seed, task name, split), and the examples of a split are drawn one after the
// other from their stream. Hence the first n examples of a request for N >= n equal the n
// examples of a request for n, the held-out set does not depend on the number of training
// examples asked for, and the data is the same with every standard library: bounded integers are
// drawn by rejection from the 64-bit output (never std::uniform_int_distribution, whose output is
// implementation-defined).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "semfocus/config.hpp"
#include "semfocus/core/error.hpp"

namespace semfocus::tasks {

/// \brief One sequence and its class: tokens[t] in [0, vocab_size), label in [0, num_classes).
struct example {
  std::vector<int> tokens;
  int label = 0;
};

/// \brief A generated task: training and held-out examples and what a model needs to know.
struct dataset {
  std::vector<example> train;            ///< training examples, in generation order
  std::vector<example> test;             ///< held-out examples, from an independent stream
  int vocab_size = 0;                    ///< every token is in [0, vocab_size)
  int num_classes = 0;                   ///< every label is in [0, num_classes)
  int pad_token = -1;                    ///< token that pads short sequences; -1: all same length
  index_t max_length = 0;                ///< no sequence is longer
  std::string name;                      ///< the registry name ("parity", "listops", ...)
  std::vector<std::string> token_names;  ///< token_names[id], vocab_size entries (for printing)
};

/// \brief What to generate. `length` = 0 picks the task's default (40 for the synthetic tasks,
/// the 500-600 window for ListOps); see each generator for what a non-zero length means.
struct task_options {
  std::uint64_t seed = 0;  ///< example i of a split is a function of (seed, task, length, i)
  index_t train = 5000;    ///< number of training examples, >= 0
  index_t test = 2000;     ///< number of held-out examples, >= 0
  index_t length = 0;      ///< sequence length; 0: the task default
};

/// \brief A batch of examples padded to one length, row-major, ready for an embedding lookup.
struct padded_batch {
  index_t batch = 0;               ///< number of examples
  index_t length = 0;              ///< common length after padding
  std::vector<int> tokens;         ///< [batch, length]; pad_token after each sequence's end
  std::vector<std::uint8_t> mask;  ///< [batch, length]; 1 at real tokens, 0 at padding
  std::vector<int> labels;         ///< [batch]
};

namespace detail {

using semfocus::detail::require;

/// \brief The splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
inline constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// \brief 64-bit FNV-1a hash of a name (to give every task its own streams).
inline constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 0xCBF29CE484222325ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

/// \brief The seed of stream `split` (0 train, 1 held-out) of task `task` under user seed `seed`.
inline constexpr std::uint64_t stream_seed(std::uint64_t seed, std::string_view task,
                                           std::uint64_t split) noexcept {
  return splitmix64(splitmix64(splitmix64(seed) ^ fnv1a(task)) + split);
}

/// \brief A std::mt19937_64 with portable integer draws (the same numbers on every platform).
class random_stream {
 public:
  explicit random_stream(std::uint64_t seed) : engine_(seed) {}

  /// \brief 64 uniform bits.
  std::uint64_t bits() { return engine_(); }

  /// \brief Uniform in [0, n), n >= 1, by rejection: draws below 2^64 mod n are redrawn, so the
  /// remaining range is a multiple of n and x mod n is exactly uniform. Expected < 2 draws.
  int below(int n) {
    const auto m = static_cast<std::uint64_t>(n);
    const std::uint64_t threshold = (0 - m) % m;  // 2^64 mod m
    for (;;) {
      const std::uint64_t x = engine_();
      if (x >= threshold) return static_cast<int>(x % m);
    }
  }

  /// \brief Uniform in [lo, hi] (both included), lo <= hi.
  int between(int lo, int hi) { return lo + below(hi - lo + 1); }

 private:
  std::mt19937_64 engine_;
};

/// \brief Longest sequence a generator accepts (lengths are drawn as int).
inline constexpr index_t max_task_length = index_t(1) << 24;

/// \brief Checks the counts of `o` and returns the sequence length to use: o.length, or
/// `default_length` when o.length is 0. Throws if a count is negative or the length is negative
/// or outside [min_length, max_task_length].
inline index_t resolve_options(const char* fn, const task_options& o, index_t default_length,
                               index_t min_length) {
  require(o.train >= 0, fn, ": options.train must be >= 0, got ", o.train);
  require(o.test >= 0, fn, ": options.test must be >= 0, got ", o.test);
  require(o.length >= 0, fn, ": options.length must be >= 0 (0 = task default ", default_length,
          "), got ", o.length);
  const index_t length = o.length == 0 ? default_length : o.length;
  require(length >= min_length && length <= max_task_length, fn, ": options.length must be in [",
          min_length, ", ", max_task_length, "], got ", length);
  return length;
}

/// \brief Throws unless every token of `tokens` is in [0, vocab) and there are at least
/// `min_length` of them.
inline void check_tokens(const char* fn, std::span<const int> tokens, int vocab,
                         std::size_t min_length) {
  require(tokens.size() >= min_length, fn, ": need at least ", min_length, " tokens, got ",
          tokens.size());
  for (const int t : tokens)
    require(t >= 0 && t < vocab, fn, ": token ", t, " outside [0, ", vocab, ")");
}

/// \brief Fills d.train and d.test with o.train and o.test calls of `one(stream)`, each split
/// from its own stream (see the file comment). `one` returns an example.
template <class F>
void fill_splits(dataset& d, const task_options& o, F&& one) {
  random_stream train_stream(stream_seed(o.seed, d.name, 0));
  random_stream test_stream(stream_seed(o.seed, d.name, 1));
  d.train.reserve(static_cast<std::size_t>(o.train));
  d.test.reserve(static_cast<std::size_t>(o.test));
  for (index_t i = 0; i < o.train; ++i) d.train.push_back(one(train_stream));
  for (index_t i = 0; i < o.test; ++i) d.test.push_back(one(test_stream));
}

}  // namespace detail

/// \brief Pads examples[indices[b]] for every b to one length: tokens and mask are [batch,
/// length] row-major, sequence b's tokens first, then pad_token; mask is 1 at real tokens.
/// `length` = 0 pads to the longest selected sequence; otherwise every sequence must fit.
/// O(batch x length).
/// \throws invalid_argument if an index is out of range, length < 0, a sequence is longer than a
/// non-zero `length`, or padding is needed and pad_token < 0.
inline padded_batch pad_batch(std::span<const example> examples, std::span<const index_t> indices,
                              int pad_token, index_t length = 0) {
  constexpr const char* fn = "semfocus::tasks::pad_batch";
  detail::require(length >= 0, fn, ": length must be >= 0, got ", length);
  const auto n = static_cast<index_t>(examples.size());
  index_t longest = 0;
  for (const index_t i : indices) {
    detail::require(i >= 0 && i < n, fn, ": index ", i, " out of range [0, ", n, ")");
    longest = std::max(longest, static_cast<index_t>(examples[std::size_t(i)].tokens.size()));
  }
  detail::require(length == 0 || length >= longest, fn, ": length ", length,
                  " is shorter than the longest sequence (", longest, ")");
  padded_batch out;
  out.batch = static_cast<index_t>(indices.size());
  out.length = length == 0 ? longest : length;
  const auto cells = static_cast<std::size_t>(out.batch * out.length);
  out.tokens.assign(cells, pad_token);
  out.mask.assign(cells, 0);
  out.labels.reserve(indices.size());
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const example& e = examples[static_cast<std::size_t>(indices[b])];
    const std::size_t row = b * static_cast<std::size_t>(out.length);
    detail::require(pad_token >= 0 || static_cast<index_t>(e.tokens.size()) == out.length, fn,
                    ": sequence ", indices[b], " needs padding but pad_token is ", pad_token);
    for (std::size_t t = 0; t < e.tokens.size(); ++t) {
      out.tokens[row + t] = e.tokens[t];
      out.mask[row + t] = 1;
    }
    out.labels.push_back(e.label);
  }
  return out;
}

/// \brief Pads all of `examples` (in order); see the overload with indices.
inline padded_batch pad_batch(std::span<const example> examples, int pad_token,
                              index_t length = 0) {
  std::vector<index_t> all(examples.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<index_t>(i);
  return pad_batch(examples, all, pad_token, length);
}

/// \brief Number of examples of each class: out[c] = #{e : e.label == c}, num_classes entries.
/// O(examples). \throws invalid_argument if num_classes < 1 or a label is outside the range.
inline std::vector<index_t> label_counts(std::span<const example> examples, int num_classes) {
  detail::require(num_classes >= 1, "semfocus::tasks::label_counts: num_classes must be >= 1");
  std::vector<index_t> counts(static_cast<std::size_t>(num_classes), 0);
  for (const example& e : examples) {
    detail::require(e.label >= 0 && e.label < num_classes, "semfocus::tasks::label_counts: label ",
                    e.label, " outside [0, ", num_classes, ")");
    ++counts[static_cast<std::size_t>(e.label)];
  }
  return counts;
}

/// \brief Token ids of a whitespace-separated text, each word looked up in token_names (exact
/// match), e.g. encode(d.token_names, "( 3 + 4 ) * 2"). O(words x vocabulary).
/// \throws invalid_argument naming the first word that is not a token name.
inline std::vector<int> encode(const std::vector<std::string>& token_names, std::string_view text) {
  std::vector<int> out;
  std::istringstream in{std::string(text)};
  std::string word;
  while (in >> word) {
    int id = -1;
    for (std::size_t i = 0; i < token_names.size() && id < 0; ++i)
      if (token_names[i] == word) id = static_cast<int>(i);
    detail::require(id >= 0, "semfocus::tasks::encode: unknown token '", word, "'");
    out.push_back(id);
  }
  return out;
}

/// \brief The token names of `tokens` joined by single spaces (the inverse of encode).
/// O(length). \throws invalid_argument if a token is outside [0, token_names.size()).
inline std::string decode(const std::vector<std::string>& token_names,
                          std::span<const int> tokens) {
  std::string out;
  for (const int t : tokens) {
    detail::require(t >= 0 && static_cast<std::size_t>(t) < token_names.size(),
                    "semfocus::tasks::decode: token ", t, " outside [0, ", token_names.size(), ")");
    if (!out.empty()) out += ' ';
    out += token_names[static_cast<std::size_t>(t)];
  }
  return out;
}

}  // namespace semfocus::tasks
