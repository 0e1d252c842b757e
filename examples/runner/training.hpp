// SPDX-License-Identifier: MIT
#pragma once

// What examples/train.cpp and examples/theory.cpp share: the policy of a spec, the batches of a
// task (with G global tokens appended to every sequence) and the loss and accuracy over a split.

#include <semfocus/nn/nn.hpp>
#include <semfocus/semfocus.hpp>
#include <semfocus/tasks/tasks.hpp>

#include <algorithm>
#include <numeric>
#include <span>
#include <stdexcept>
#include <utility>
#include <variant>
#include <vector>

#include "runner/policy_spec.hpp"

namespace semfocus::runner {

/// \brief The policies a spec names.
using policy_variant =
    std::variant<semfocus::dense, semfocus::top_k, semfocus::banded, semfocus::block_local,
                 semfocus::threshold, semfocus::with_global<semfocus::banded>,
                 semfocus::with_global<semfocus::block_local>>;

/// \brief The policy of a parsed spec. \throws semfocus::invalid_argument as the policy's
/// constructor (the spec's numbers are already in range).
inline policy_variant make_policy(const policy_spec& s) {
  if (s.kind == "topk") return semfocus::top_k(s.k);
  if (s.kind == "threshold") return semfocus::threshold(s.tau);
  if (s.kind == "banded")
    return s.globals ? policy_variant(semfocus::with_global(semfocus::banded(s.k), s.globals))
                     : policy_variant(semfocus::banded(s.k));
  if (s.kind == "block")
    return s.globals ? policy_variant(semfocus::with_global(semfocus::block_local(s.k), s.globals))
                     : policy_variant(semfocus::block_local(s.k));
  return semfocus::dense{};
}

/// \brief A padded batch of a split, token ids flattened [batch * n].
struct batch_data {
  std::vector<int> tokens, labels;
  index_t batch = 0, n = 0;
};

/// \brief The examples `indices` of `split`, padded to one length, each followed by the
/// `globals` global tokens (ids vocab_size .. vocab_size + globals - 1).
inline batch_data make_batch(const semfocus::tasks::dataset& data,
                             std::span<const semfocus::tasks::example> split,
                             std::span<const index_t> indices, index_t globals) {
  const auto p = semfocus::tasks::pad_batch(split, indices, std::max(data.pad_token, 0));
  batch_data b{{}, p.labels, p.batch, p.length + globals};
  b.tokens.reserve(std::size_t(b.batch * b.n));
  for (index_t s = 0; s < p.batch; ++s) {
    const auto first = p.tokens.begin() + std::ptrdiff_t(s * p.length);
    b.tokens.insert(b.tokens.end(), first, first + std::ptrdiff_t(p.length));
    for (index_t g = 0; g < globals; ++g) b.tokens.push_back(data.vocab_size + int(g));
  }
  return b;
}

/// \brief Mean cross-entropy and accuracy of `model` over the examples `indices` of `split`
/// (all of it when `indices` is empty), in batches of `chunk`.
template <class Model>
std::pair<double, double> evaluate(Model& model, const semfocus::tasks::dataset& data,
                                   std::span<const semfocus::tasks::example> split,
                                   std::span<const index_t> indices, index_t globals,
                                   index_t chunk = 250) {
  std::vector<index_t> all;
  if (indices.empty()) {
    all.resize(split.size());
    std::iota(all.begin(), all.end(), index_t(0));
    indices = all;
  }
  double loss = 0;
  index_t correct = 0;
  for (std::size_t first = 0; first < indices.size(); first += std::size_t(chunk)) {
    const std::size_t count = std::min(indices.size() - first, std::size_t(chunk));
    const batch_data b = make_batch(data, split, indices.subspan(first, count), globals);
    const auto z = model.forward(b.tokens, b.batch, b.n);
    using T = typename std::remove_cvref_t<decltype(z)>::Scalar;
    loss += double(semfocus::nn::cross_entropy<T>(z, b.labels).loss) * double(b.batch);
    for (index_t r = 0; r < b.batch; ++r) {
      index_t arg = 0;
      z.row(r).maxCoeff(&arg);
      correct += arg == b.labels[std::size_t(r)];
    }
  }
  const auto n = double(indices.size());
  return {loss / n, double(correct) / n};
}

}  // namespace semfocus::runner
