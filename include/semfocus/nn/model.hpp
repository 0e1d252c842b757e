// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "semfocus/nn/attention.hpp"
#include "semfocus/nn/dropout.hpp"
#include "semfocus/nn/init.hpp"
#include "semfocus/nn/layers.hpp"
#include "semfocus/nn/tensor.hpp"

// The paper's model (PAPER.md, "Experiments"): a pre-LayerNorm encoder classifier
//   x_0 = D(sqrt(d) E[tokens] + PE)
//   h_l = x_l + D(MHA_l(LN(x_l))),  x_{l+1} = h_l + D(MLP_l(LN(h_l)))      (l = 0 .. blocks - 1)
//   logits = mean_i(x_blocks[i]) Wc^T + bc
// with LayerNorm without affine parameters (eps = ln_eps, except first_ln_eps for block 0's
// attention LayerNorm), MLP(x) = Linear(d_mlp, d)(act(D(Linear(d, d_mlp)(x)))), no final
// LayerNorm, and cross-entropy on the logits. D is inverted dropout with probability
// config.dropout in training mode and the identity in evaluation mode or for dropout = 0: the
// places of the authors' model (their MLP drops before the activation), except that they also drop
// attention probabilities, which the fused kernels here do not.
namespace semfocus::nn {

/// \brief The version of the training numerics: it changes whenever a change of this library
/// changes the bits that a seed and a configuration give (a resumable run state records it, so
/// that a state is never continued by code that would not have produced it). 2: the layers on the
/// SIMD backend's GEMM kernel in fixed chunks and counter-based dropout masks; 3: LayerNorm's sums
/// in fixed lanes fused with the residual sums, 32-bit dropout mask words.
inline constexpr int numerics_version = 3;

/// \brief Sizes and options of encoder_classifier.
struct model_config {
  index_t vocab = 2;    ///< token ids in [0, vocab)
  index_t classes = 2;  ///< labels in [0, classes)
  index_t blocks = 1;
  index_t d = 64;  ///< model width, and the width of every head
  index_t heads = 1;
  index_t d_mlp = 64;  ///< hidden width of the MLPs
  nn::activation activation = nn::activation::relu;
  double ln_eps = 1e-5;       ///< eps of every LayerNorm but the first
  double first_ln_eps = 0.0;  ///< eps of block 0's attention LayerNorm
  std::uint64_t seed = 0;     ///< initialisation seed (rng); the dropout stream's seed too
  /// Drop probability of every dropout D (see the file comment); 0: none. Training only: not
  /// stored in checkpoints.
  double dropout = 0.0;

  /// \throws invalid_argument unless every size is >= 1, both eps are finite and >= 0 and
  /// 0 <= dropout < 1.
  void validate() const {
    semfocus::detail::require(
        vocab >= 1 && classes >= 1 && blocks >= 1 && d >= 1 && heads >= 1 && d_mlp >= 1,
        "semfocus::nn::model_config: vocab, classes, blocks, d, heads and d_mlp "
        "must be >= 1, got ",
        vocab, ", ", classes, ", ", blocks, ", ", d, ", ", heads, ", ", d_mlp);
    semfocus::detail::require(
        std::isfinite(ln_eps) && ln_eps >= 0 && std::isfinite(first_ln_eps) && first_ln_eps >= 0,
        "semfocus::nn::model_config: ln_eps and first_ln_eps must be finite and >= 0, got ", ln_eps,
        " and ", first_ln_eps);
    semfocus::detail::require(std::isfinite(dropout) && dropout >= 0 && dropout < 1,
                              "semfocus::nn::model_config: dropout must be in [0, 1), got ",
                              dropout);
  }
};

/// \brief A batch of equal-length token sequences, flattened: sequence b is ids[b n, (b + 1) n).
struct token_batch {
  std::vector<int> ids;
  index_t batch = 0;
  index_t n = 0;

  /// \brief Flattens tokens[batch][n]. \throws invalid_argument if empty or ragged.
  static token_batch from(const std::vector<std::vector<int>>& tokens) {
    semfocus::detail::require(!tokens.empty() && !tokens.front().empty(),
                              "semfocus::nn::token_batch: need at least one non-empty sequence");
    token_batch t;
    t.batch = static_cast<index_t>(tokens.size());
    t.n = static_cast<index_t>(tokens.front().size());
    t.ids.reserve(tokens.size() * tokens.front().size());
    for (const auto& s : tokens) {
      semfocus::detail::require(static_cast<index_t>(s.size()) == t.n,
                                "semfocus::nn::token_batch: every sequence must have length ", t.n,
                                ", got ", s.size());
      t.ids.insert(t.ids.end(), s.begin(), s.end());
    }
    return t;
  }
};

/// \brief MLP(x) = Linear(d_mlp, d)(act(D(Linear(d, d_mlp)(x)))) with D = dropout(p);
/// [m, d] -> [m, d].
template <class T>
class mlp {
 public:
  linear<T> fc1;  ///< [d_mlp, d]
  linear<T> fc2;  ///< [d, d_mlp]
  activation_layer<T> act;
  nn::dropout<T> drop;  ///< on fc1's output

  /// \brief Zero-initialised layers named prefix + ".fc1" / ".fc2", dropout p.
  /// \throws invalid_argument if d or d_mlp < 1 or p is outside [0, 1).
  mlp(index_t d, index_t d_mlp, activation a, const std::string& prefix, double p = 0)
      : fc1(d, d_mlp, prefix + ".fc1"), fc2(d_mlp, d, prefix + ".fc2"), act(a), drop(p) {}

  /// \brief act(D(fc1(x))) [m, d_mlp], the hidden layer, in one pass over the rows (the dropout
  /// and the activation run in fc1's epilogue); D's mask from `gen` (null: no dropout). x is
  /// moved into fc1's cache when passed an rvalue. O(m d d_mlp).
  matrix<T> hidden(matrix<T> x, rng* gen = nullptr) {
    drop.draw(gen, x.rows(), fc1.out_features());
    matrix<T> a(x.rows(), fc1.out_features());
    matrix<T> h = fc1.forward(std::move(x), [&](matrix<T>& y, index_t r0, index_t r1) {
      drop.apply_rows(y, y, r0, r1);
      act.forward_rows(y, a, r0, r1);
    });
    act.keep_input(std::move(h));
    return a;
  }

  /// \brief fc2(hidden(x, gen)), each chunk of rows of the output followed in its task by
  /// epilogue(y, r0, r1) (linear::forward). O(m d d_mlp).
  template <class Epilogue = detail::no_epilogue>
  matrix<T> forward(matrix<T> x, rng* gen = nullptr, Epilogue&& epilogue = {}) {
    return fc2.forward(hidden(std::move(x), gen), epilogue);
  }

  /// \brief dx from dy; accumulates fc1's and fc2's gradients. The activation's and dropout's
  /// backward run in fc2's epilogue; each chunk of rows of dx is followed in its task by
  /// epilogue(dx, r0, r1). O(m d d_mlp). \throws invalid_argument if dy does not match the last
  /// forward's output.
  template <class Epilogue = detail::no_epilogue>
  matrix<T> backward(const matrix<T>& dy, Epilogue&& epilogue = {}) {
    const matrix<T> dh = fc2.backward(dy, [&](matrix<T>& g, index_t r0, index_t r1) {
      act.backward_rows(g, r0, r1);
      drop.apply_rows(g, g, r0, r1);
    });
    return fc1.backward(dh, epilogue);
  }
  /// \brief Threads of fc1, the activation and fc2 (results do not depend on it).
  void set_threads(int n) noexcept {
    fc1.set_threads(n);
    drop.set_threads(n);
    act.set_threads(n);
    fc2.set_threads(n);
  }
  /// \brief Appends fc1's then fc2's parameters.
  void append_parameters(parameter_list<T>& list) {
    fc1.append_parameters(list);
    fc2.append_parameters(list);
  }
  /// \brief PyTorch defaults, fc1 then fc2.
  void reset_parameters(rng& gen) {
    fc1.reset_parameters(gen);
    fc2.reset_parameters(gen);
  }
};

/// \brief Pre-LN residual block: h = x + D(MHA(LN_attn(x))); y = h + D(MLP(LN_mlp(h))) with
/// D = dropout(c.dropout). Its layers run on threads_of(exec) threads (parallel.hpp: the same
/// bits for every thread count).
template <class Policy, class Exec = exec::reference_t, class T = float>
class encoder_block {
 public:
  layer_norm<T> ln_attn;
  multi_head_attention<Policy, Exec, T> attn;
  layer_norm<T> ln_mlp;
  nn::mlp<T> mlp;
  dropout<T> drop_attn;  ///< on the attention's output
  dropout<T> drop_mlp;   ///< on the MLP's output

  /// \brief Block of width c.d with c.heads heads and hidden width c.d_mlp; zero parameters
  /// named prefix + ".attn.*" / ".mlp.*". \throws invalid_argument on bad sizes or eps.
  encoder_block(const model_config& c, double attn_ln_eps, const Policy& policy, const Exec& exec,
                const std::string& prefix)
      : ln_attn(attn_ln_eps),
        attn(c.d, c.heads, policy, exec, prefix + ".attn"),
        ln_mlp(c.ln_eps),
        mlp(c.d, c.d_mlp, c.activation, prefix + ".mlp", c.dropout),
        drop_attn(c.dropout),
        drop_mlp(c.dropout),
        threads_(threads_of(exec)) {
    ln_attn.set_threads(threads_);
    ln_mlp.set_threads(threads_);
    mlp.set_threads(threads_);
    drop_attn.set_threads(threads_);
    drop_mlp.set_threads(threads_);
  }

  /// \brief x [batch n, d] -> y [batch n, d]; caches for backward. Dropout masks from `gen` in
  /// the order attention output, MLP hidden, MLP output (null: no dropout). Six passes over the
  /// rows: LN_attn, the projections Q K V, the attention, then wo, fc1 and fc2 each with the
  /// element-wise and row-local steps after it in its epilogue (the same bits as separate
  /// passes). \throws as multi_head_attention::forward.
  matrix<T> forward(const matrix<T>& x, index_t batch, rng* gen = nullptr) {
    drop_attn.draw(gen, x.rows(), x.cols());
    matrix<T> h;  // x + D(MHA(LN_attn(x)))
    ln_mlp.prepare_sum("semfocus::nn::encoder_block::forward", x, h);
    attn.forward(ln_attn.forward(x), batch, [&](matrix<T>& a, index_t r0, index_t r1) {
      drop_attn.apply_rows(a, a, r0, r1);
      ln_mlp.forward_sum_rows(x, a, h, r0, r1);
    });
    matrix<T> hidden = mlp.hidden(ln_mlp.output(), gen);
    drop_mlp.draw(gen, x.rows(), x.cols());
    return mlp.fc2.forward(std::move(hidden), [&](matrix<T>& m, index_t r0, index_t r1) {
      drop_mlp.apply_rows(m, m, r0, r1);
      m.middleRows(r0, r1 - r0) = h.middleRows(r0, r1 - r0) + m.middleRows(r0, r1 - r0);
    });
  }
  /// \brief dx from dy (chain rule through both residual branches):
  /// dh = dy + LN_mlp'(MLP'(D'(dy))), dx = dh + LN_attn'(MHA'(D'(dh))); accumulates the
  /// gradients. The LayerNorms' backward and D'(dh) run in the epilogues of fc1's and of the
  /// projections' dx GEMMs. \throws invalid_argument if dy does not match the last forward.
  matrix<T> backward(const matrix<T>& dy) {
    matrix<T> scratch, dh(dy.rows(), dy.cols()), dh_dropped;
    const bool dropping = drop_attn.active();
    if (dropping) dh_dropped.resize(dy.rows(), dy.cols());
    mlp.backward(drop_mlp.backward(dy, scratch), [&](matrix<T>& g, index_t r0, index_t r1) {
      ln_mlp.backward_rows(g, &dy, dh, r0, r1);
      drop_attn.apply_rows(dh, dh_dropped, r0, r1);
    });
    return attn.backward(dropping ? dh_dropped : dh, [&](matrix<T>& g, index_t r0, index_t r1) {
      ln_attn.backward_rows(g, &dh, g, r0, r1);
    });
  }
  /// \brief The row offset of all three dropouts' masks (dropout::set_row_offset). \throws
  /// invalid_argument if rows < 0.
  void set_dropout_row_offset(index_t rows) {
    drop_attn.set_row_offset(rows);
    mlp.drop.set_row_offset(rows);
    drop_mlp.set_row_offset(rows);
  }
  /// \brief Appends the attention's then the MLP's parameters.
  void append_parameters(parameter_list<T>& list) {
    attn.append_parameters(list);
    mlp.append_parameters(list);
  }
  /// \brief PyTorch defaults: attention (wq, wk, wv, wo) then MLP (fc1, fc2).
  void reset_parameters(rng& gen) {
    attn.reset_parameters(gen);
    mlp.reset_parameters(gen);
  }

 private:
  int threads_;  // of the layers and the dropouts
};

/// \brief The paper's encoder classifier (see the file comment) with attention `Policy` on
/// backend `Exec`, scalar T.
///
/// Initialisation from config.seed (rng, in this order): embedding U(-0.1, 0.1); per block wq,
/// wk, wv, wo, fc1, fc2 with PyTorch's Linear default U(+-1/sqrt(in)); classifier weight
/// U(-0.1, 0.1), bias 0. Parameters in parameters() follow the same order. Cost of forward:
/// blocks x (attention + O(batch n d (heads d + d_mlp))); backward about twice that.
/// Deterministic: a seed and the inputs fix every bit, whatever the backend's thread count (the
/// attention backend's and the layers' chunks do not depend on it). With
/// config.dropout > 0 the forward passes of training mode (the default; set_training) draw their
/// masks from one generator seeded from config.seed (a stream apart from the initialisation's), in
/// the order embedding, then per block attention output, MLP hidden, MLP output.
template <class Policy, class Exec = exec::reference_t, class T = float>
class encoder_classifier {
 public:
  using block_type = encoder_block<Policy, Exec, T>;
  using scalar = T;  ///< the parameters' and activations' type

  embedding<T> embed;
  std::vector<block_type> blocks;
  mean_pool<T> pool;
  linear<T> classifier;   ///< [classes, d]
  dropout<T> drop_embed;  ///< on the embedding's output

  /// \throws invalid_argument if the config is invalid (model_config::validate).
  encoder_classifier(const model_config& c, const Policy& policy, const Exec& exec = {})
      : embed(checked(c).vocab, c.d, "embed"),
        classifier(c.d, c.classes, "classifier"),
        drop_embed(c.dropout),
        config_(c),
        dropout_gen_(c.seed ^ dropout_stream) {
    drop_embed.set_threads(threads_of(exec));
    blocks.reserve(static_cast<std::size_t>(c.blocks));
    for (index_t l = 0; l < c.blocks; ++l)
      blocks.emplace_back(c, l == 0 ? c.first_ln_eps : c.ln_eps, policy, exec,
                          "blocks." + std::to_string(l));
    reset_parameters(c.seed);
  }

  /// \brief The configuration it was built with.
  const model_config& config() const noexcept { return config_; }

  /// \brief Training mode (the default: forward draws dropout masks) or evaluation mode (dropout
  /// is the identity), as torch's Module.train(bool). Only matters when config().dropout > 0.
  void set_training(bool on) noexcept { training_ = on; }
  /// \brief Whether forward is in training mode.
  bool training() const noexcept { return training_; }
  /// \brief The generator of the dropout masks (its state() continues a checkpointed run).
  rng& dropout_generator() noexcept { return dropout_gen_; }

  /// \brief Makes later forward passes take their dropout masks as sequences [s, s + batch) of a
  /// larger batch (0 by default): a batch split into groups, each group's forward given the same
  /// generator state and its first sequence's index s, gets the whole batch's masks, so each
  /// group's activations are the rows of the whole batch's (up to the rounding of products that
  /// fall back to Eigen). \throws invalid_argument if s < 0.
  void set_mask_offset(index_t s) {
    semfocus::detail::require(s >= 0,
                              "semfocus::nn::encoder_classifier::set_mask_offset: s must "
                              "be >= 0, got ",
                              s);
    mask_offset_ = s;
  }

  /// \brief Re-initialises every parameter from `seed` (see the class comment).
  void reset_parameters(std::uint64_t seed) {
    rng gen(seed);
    fill_uniform(embed.weight.value, -paper_init_range, paper_init_range, gen);
    for (block_type& b : blocks) b.reset_parameters(gen);
    fill_uniform(classifier.weight.value, -paper_init_range, paper_init_range, gen);
    classifier.bias.value.setZero();
  }

  /// \brief Every parameter, in initialisation order (pointers into this object).
  parameter_list<T> parameters() {
    parameter_list<T> list;
    embed.append_parameters(list);
    for (block_type& b : blocks) b.append_parameters(list);
    classifier.append_parameters(list);
    return list;
  }

  /// \brief Logits [batch, classes] of tokens (batch * n ids, sequence b at [b n, (b + 1) n));
  /// caches the activations for backward. \throws invalid_argument on a bad token or shape, or
  /// as semfocus::forward (e.g. top_k with k > n).
  matrix<T> forward(std::span<const int> tokens, index_t batch, index_t n) {
    rng* gen = training_ && config_.dropout > 0 ? &dropout_gen_ : nullptr;
    matrix<T> x = embed.forward(tokens, batch, n);
    if (gen != nullptr) {
      drop_embed.set_row_offset(mask_offset_ * n);
      for (block_type& b : blocks) b.set_dropout_row_offset(mask_offset_ * n);
    }
    drop_embed.forward(x, gen);
    for (block_type& b : blocks) x = b.forward(x, batch, gen);
    return classifier.forward(pool.forward(x, batch));
  }
  /// \brief As above for tokens[batch][n] (all of one length n).
  matrix<T> forward(const std::vector<std::vector<int>>& tokens) {
    const token_batch t = token_batch::from(tokens);
    return forward(t.ids, t.batch, t.n);
  }

  /// \brief Mean cross-entropy of the batch (forward only; gradients untouched). \throws as
  /// forward, or if labels.size() != batch or a label is outside [0, classes).
  T loss(std::span<const int> tokens, index_t batch, index_t n, std::span<const int> labels) {
    return cross_entropy<T>(forward(tokens, batch, n), labels).loss;
  }
  /// \brief As above for tokens[batch][n].
  T loss(const std::vector<std::vector<int>>& tokens, std::span<const int> labels) {
    return cross_entropy<T>(forward(tokens), labels).loss;
  }

  /// \brief Mean cross-entropy of the batch; sets every parameter's grad to its gradient
  /// (zeroed first, so grads are not accumulated across calls). With mean_over = M > 0 the mean
  /// is over M sequences of which these are a part (cross_entropy): the share of a group of a
  /// larger batch. \throws as forward, or if labels.size() != batch, a label is outside
  /// [0, classes) or 0 < mean_over < batch.
  T loss_and_backward(std::span<const int> tokens, index_t batch, index_t n,
                      std::span<const int> labels, index_t mean_over = 0) {
    const loss_result<T> r = cross_entropy<T>(forward(tokens, batch, n), labels, mean_over);
    zero_grad(parameters());
    backward(r.dlogits);
    return r.loss;
  }
  /// \brief As above for tokens[batch][n].
  T loss_and_backward(const std::vector<std::vector<int>>& tokens, std::span<const int> labels) {
    const token_batch t = token_batch::from(tokens);
    return loss_and_backward(t.ids, t.batch, t.n, labels);
  }

  /// \brief Accumulates (+=) the gradients of L into the parameters given dL/dlogits of the last
  /// forward (for a loss other than cross-entropy).
  void backward(const matrix<T>& dlogits) {
    matrix<T> dx = pool.backward(classifier.backward(dlogits));
    for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) dx = b->backward(dx);
    drop_embed.backward(dx);
    embed.backward(dx);
  }

  /// \brief Predicted classes: argmax of the logits per sequence (lowest index on ties);
  /// runs forward (caches overwritten).
  std::vector<int> predict(std::span<const int> tokens, index_t batch, index_t n) {
    const matrix<T> z = forward(tokens, batch, n);
    std::vector<int> out(static_cast<std::size_t>(z.rows()));
    for (index_t b = 0; b < z.rows(); ++b) {
      index_t best = 0;
      z.row(b).maxCoeff(&best);
      out[static_cast<std::size_t>(b)] = static_cast<int>(best);
    }
    return out;
  }
  /// \brief As above for tokens[batch][n].
  std::vector<int> predict(const std::vector<std::vector<int>>& tokens) {
    const token_batch t = token_batch::from(tokens);
    return predict(t.ids, t.batch, t.n);
  }

  /// \brief Fraction of sequences whose prediction equals the label.
  /// \throws invalid_argument if labels.size() != batch.
  double accuracy(std::span<const int> tokens, index_t batch, index_t n,
                  std::span<const int> labels) {
    semfocus::detail::require(static_cast<index_t>(labels.size()) == batch,
                              "semfocus::nn::encoder_classifier::accuracy: need ", batch,
                              " labels, got ", labels.size());
    const std::vector<int> p = predict(tokens, batch, n);
    index_t hits = 0;
    for (std::size_t b = 0; b < p.size(); ++b) hits += p[b] == labels[b] ? 1 : 0;
    return static_cast<double>(hits) / static_cast<double>(batch);
  }
  /// \brief As above for tokens[batch][n].
  double accuracy(const std::vector<std::vector<int>>& tokens, std::span<const int> labels) {
    const token_batch t = token_batch::from(tokens);
    return accuracy(t.ids, t.batch, t.n, labels);
  }

 private:
  static const model_config& checked(const model_config& c) {
    c.validate();
    return c;
  }

  static constexpr std::uint64_t dropout_stream = 0xd207a9c3e1ull;  // seed ^ this: the mask stream

  model_config config_;
  rng dropout_gen_;
  bool training_ = true;
  index_t mask_offset_ = 0;  // set_mask_offset
};

}  // namespace semfocus::nn
