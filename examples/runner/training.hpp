// SPDX-License-Identifier: MIT
#pragma once

// What examples/train.cpp and examples/theory.cpp share: the policy of a spec, the batches of a
// task (padded, with G global tokens appended to every sequence) and the loss and accuracy over a
// split.

#include <semfocus/nn/nn.hpp>
#include <semfocus/semfocus.hpp>
#include <semfocus/tasks/tasks.hpp>

#include <algorithm>
#include <cmath>
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

/// \brief How a task's examples become the model's input: each sequence padded with `pad` to
/// `length` (0: to the longest sequence of its batch), then the `globals` global tokens with ids
/// first_global .. first_global + globals - 1; `vocab` ids in all.
struct input_layout {
  int pad = 0;
  index_t length = 0;
  index_t globals = 0;
  int first_global = 0;
  int vocab = 0;
};

/// \brief The layout of `data` with `globals` global tokens. pad_multiple = 0: each batch padded
/// to its longest sequence (no padding for the fixed-length tasks). pad_multiple = m >= 1: the
/// authors' padding (their datasets.py, lenupdate): every sequence padded to the task's maximum
/// length rounded up to a multiple of m, e.g. 40 -> 45 for m = 9. PAD is the task's pad token, or
/// a new id vocab_size when the task has none and some sequence is padded (the vocabulary, and so
/// the initialisation, change only then). PAD tokens are ordinary tokens to attention and to the
/// mean pooling, as in the authors' model.
inline input_layout make_layout(const semfocus::tasks::dataset& data, index_t globals,
                                index_t pad_multiple) {
  input_layout l{std::max(data.pad_token, 0), 0, globals, data.vocab_size, data.vocab_size};
  if (pad_multiple >= 1) {
    l.length = (data.max_length + pad_multiple - 1) / pad_multiple * pad_multiple;
    if (l.length != data.max_length && data.pad_token < 0) l.pad = l.first_global++;
  }
  l.vocab = l.first_global + int(globals);
  return l;
}

/// \brief A padded batch of a split, token ids flattened [batch * n].
struct batch_data {
  std::vector<int> tokens, labels;
  index_t batch = 0, n = 0;
};

/// \brief The examples `indices` of `split` in `layout`: padded to one length, each followed by
/// the global tokens.
inline batch_data make_batch(std::span<const semfocus::tasks::example> split,
                             std::span<const index_t> indices, const input_layout& layout) {
  const auto p = semfocus::tasks::pad_batch(split, indices, layout.pad);
  const index_t length = std::max(p.length, layout.length);
  batch_data b{{}, p.labels, p.batch, length + layout.globals};
  b.tokens.reserve(std::size_t(b.batch * b.n));
  for (index_t s = 0; s < p.batch; ++s) {
    const auto first = p.tokens.begin() + std::ptrdiff_t(s * p.length);
    b.tokens.insert(b.tokens.end(), first, first + std::ptrdiff_t(p.length));
    b.tokens.insert(b.tokens.end(), std::size_t(length - p.length), layout.pad);
    for (index_t g = 0; g < layout.globals; ++g) b.tokens.push_back(layout.first_global + int(g));
  }
  return b;
}

/// \brief Mean cross-entropy and accuracy of `model` in evaluation mode (no dropout; its mode is
/// restored after) over the examples `indices` of `split` (all of it when `indices` is empty).
/// The examples are padded in groups of `chunk` (make_batch: each group to its longest sequence,
/// or to the layout's length), and each group runs through the model in forward passes of at most
/// max(`rows` / n, 1) sequences of n tokens, so that about `rows` rows of activations stay in the
/// core's cache (1024 rows evaluated Parity 1.6x faster than passes of 250 sequences, 10000 rows,
/// on one core). A sequence's loss, log sum_c exp z_c - z_label, is taken in double from its
/// logits and summed in index order. Every layer works on each sequence alone, so other sizes give
/// the same result up to float rounding (a product's kernel may depend on its row count); the
/// same sizes give the same bits. O(forward of the split).
///
/// With `replicas` (models of model's configuration and policy, each running one thread and able
/// to run beside the others: no executor workspace shared between them), the
/// passes run in parallel instead, one replica per thread of the SIMD backend's pool (up to
/// replicas.size() threads; pass p on whichever replica its thread owns), after model's
/// parameters are copied into every replica: the same bits as without, since a pass's result
/// depends only on its sequences and the parameters. The passes are independent, so this scales
/// with the threads, where a pass of 25 sequences split over the threads layer by layer (the
/// model's own threads) waits at every layer.
template <class Model>
std::pair<double, double> evaluate(Model& model, std::span<const semfocus::tasks::example> split,
                                   std::span<const index_t> indices, const input_layout& layout,
                                   index_t chunk = 250, index_t rows = 1024,
                                   std::span<Model> replicas = {}) {
  struct restore_mode {
    Model& m;
    bool was;
    ~restore_mode() { m.set_training(was); }
  } restore{model, model.training()};
  model.set_training(false);
  if (!replicas.empty()) {
    const auto from = model.parameters();
    for (Model& r : replicas) {
      r.set_training(false);
      const auto to = r.parameters();
      for (std::size_t i = 0; i < from.size(); ++i) to[i]->value = from[i]->value;
    }
  }
  std::vector<index_t> all;
  if (indices.empty()) {
    all.resize(split.size());
    std::iota(all.begin(), all.end(), index_t(0));
    indices = all;
  }
  // The passes: sequences [s0, s0 + m) of batch b, the first of them at `first` in indices.
  struct pass {
    std::size_t b;
    index_t s0, m, first;
  };
  std::vector<batch_data> batches;
  std::vector<pass> passes;
  for (std::size_t first = 0; first < indices.size(); first += std::size_t(chunk)) {
    const std::size_t count = std::min(indices.size() - first, std::size_t(chunk));
    batches.push_back(make_batch(split, indices.subspan(first, count), layout));
    const batch_data& b = batches.back();
    const index_t per_pass = std::max<index_t>(rows / b.n, 1);
    for (index_t s0 = 0; s0 < b.batch; s0 += per_pass)
      passes.push_back(
          {batches.size() - 1, s0, std::min(per_pass, b.batch - s0), index_t(first) + s0});
  }
  std::vector<double> losses(indices.size());
  std::vector<char> hits(indices.size());
  const auto run_pass = [&](Model& m, const pass& p) {
    const batch_data& b = batches[p.b];
    const auto z = m.forward(
        std::span<const int>(b.tokens).subspan(std::size_t(p.s0 * b.n), std::size_t(p.m * b.n)),
        p.m, b.n);
    for (index_t r = 0; r < p.m; ++r) {
      const auto zr = z.row(r).template cast<double>();
      index_t arg = 0;
      const double top = zr.maxCoeff(&arg);
      const int label = b.labels[std::size_t(p.s0 + r)];
      losses[std::size_t(p.first + r)] = top + std::log((zr.array() - top).exp().sum()) - zr(label);
      hits[std::size_t(p.first + r)] = arg == label;
    }
  };
  if (replicas.empty()) {
    for (const pass& p : passes) run_pass(model, p);
  } else {
    backend::simd::thread_pool::instance().run(
        index_t(passes.size()), int(replicas.size()), [&](index_t t, int slot) {
          run_pass(replicas[std::size_t(slot)], passes[std::size_t(t)]);
        });
  }
  double loss = 0;
  index_t correct = 0;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    loss += losses[i];
    correct += hits[i];
  }
  const auto n = double(indices.size());
  return {loss / n, double(correct) / n};
}

/// \brief One training step's loss and gradients of `model` on batch b, data-parallel: the batch's
/// sequences are split into G = replicas.size() groups of consecutive sequences (group g starts
/// at ceil(g B / G)), and each group runs forward and backward on its own replica (a model of
/// model's configuration and policy, one thread, able to run beside the others) with model's
/// parameters, mode and dropout generator copied in, its masks offset to its first sequence
/// (encoder_classifier::set_mask_offset) and its loss a share of the mean over B
/// (loss_and_backward's mean_over). The groups run on up to `threads` threads of the SIMD
/// backend's pool; then model's gradients are the replicas' summed in group order, its generator
/// is advanced as the replicas' were, and the loss (the groups' shares summed in order) is
/// returned. Every group's activations are the rows of the whole batch's (up to the rounding of
/// a product that falls back to Eigen, whose kernel may depend on the row count: the classifier,
/// widths not a multiple of the vector width), so this differs from model.loss_and_backward(b)
/// mainly in the order of the parameter gradients' sums over the batch's rows. It gives the same
/// bits for every thread count (a fixed G fixes them).
/// O(forward and backward of the batch + G parameter copies). \throws as loss_and_backward.
template <class Model>
double grouped_loss_and_backward(Model& model, std::span<Model> replicas, const batch_data& b,
                                 int threads) {
  const auto groups = index_t(replicas.size());
  const auto first = [&](index_t g) { return (g * b.batch + groups - 1) / groups; };
  std::vector<double> losses(replicas.size(), 0.0);
  const auto from = model.parameters();
  backend::simd::thread_pool::instance().run(groups, threads, [&](index_t g, int) {
    Model& r = replicas[std::size_t(g)];
    const auto to = r.parameters();
    for (std::size_t i = 0; i < from.size(); ++i) to[i]->value = from[i]->value;
    const index_t s0 = first(g), count = first(g + 1) - s0;
    if (count == 0) {
      semfocus::nn::zero_grad(to);
      return;
    }
    r.set_training(model.training());
    r.dropout_generator() = model.dropout_generator();
    r.set_mask_offset(s0);
    losses[std::size_t(g)] = double(r.loss_and_backward(
        std::span<const int>(b.tokens).subspan(std::size_t(s0 * b.n), std::size_t(count * b.n)),
        count, b.n, std::span<const int>(b.labels).subspan(std::size_t(s0), std::size_t(count)),
        b.batch));
  });
  std::vector<semfocus::nn::parameter_list<typename Model::scalar>> parts;
  for (Model& r : replicas) parts.push_back(r.parameters());
  for (std::size_t i = 0; i < from.size(); ++i) {
    from[i]->grad = parts[0][i]->grad;
    for (std::size_t g = 1; g < parts.size(); ++g) from[i]->grad += parts[g][i]->grad;
  }
  model.dropout_generator() = replicas[0].dropout_generator();  // group 0 is never empty
  double loss = 0;
  for (const double l : losses) loss += l;
  return loss;
}

}  // namespace semfocus::runner
