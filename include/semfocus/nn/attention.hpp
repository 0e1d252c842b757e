// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <utility>

#include "semfocus/semfocus.hpp"

#include "semfocus/nn/init.hpp"
#include "semfocus/nn/layers.hpp"
#include "semfocus/nn/parallel.hpp"
#include "semfocus/nn/tensor.hpp"

// Multi-head self-attention with any selection policy, as in the paper: every head is d wide, so
// for an input X [batch n, d]
//   Q = X Wq^T + bq, K = X Wk^T + bk, V = X Wv^T + bv      (Wq, Wk, Wv [heads d, d])
//   O_h = softmax over the policy's kept keys of (Q_h K_h^T / sqrt(d)) V_h    (per sequence)
//   Y = [O_1 | ... | O_heads] Wo^T + bo                     (Wo [d, heads d])
// The three input projections run as one GEMM, [Q | K | V] = X [Wq; Wk; Wv]^T + [bq | bk | bv]
// (one pass over X, one cached copy of it). Q, K and V are column blocks of that [batch n,
// 3 heads d] matrix and O is [batch n, heads d] (head h in columns [h d, (h + 1) d) of its
// block); all reach semfocus::forward / backward without a copy as strided views of shape
// {batch, heads, n, d}. The projections run on the executor's threads (threads_of(exec)) in
// fixed chunks (parallel.hpp), so every result is the same for every thread count. The gradient
// treats the kept set as a constant (see
// DESIGN.md), so it is exact wherever no score crosses the selection boundary.
namespace semfocus::nn {

/// \brief The {batch, heads, n, d} view of the heads d columns starting at `data` of a
/// [batch n, width] row-major matrix (width = heads d by default): head h of sequence b, position
/// i is row b n + i, columns [h d, (h + 1) d) from `data`. O(1); checks nothing.
template <class T>
tensor_view<T> head_view(T* data, index_t batch, index_t heads, index_t n, index_t d,
                         index_t width = 0) noexcept {
  const index_t w = width == 0 ? heads * d : width;
  return {data, {batch, heads, n, d}, {n * w, d, w}};
}

/// \brief Multi-head attention layer (projections with biases, `heads` heads each d wide)
/// running `Policy` on backend `Exec` (exec::reference_t, exec::simd_t, ...).
///
/// Costs per forward: the fused input projection O(batch n d * 3 heads d), the attention of the
/// backend (O(batch heads n^2 d) for the reference), the output projection; backward about twice
/// that. Memory: [Q | K | V], O, the stacked weights and one cached copy of the input; the
/// buffers are kept between calls (no allocation while the shapes stay the same).
template <class Policy, class Exec = exec::reference_t, class T = float>
requires attention_policy<Policy, T>
class multi_head_attention {
 public:
  using record_type = forward_record_t<Policy, T>;

  linear<T> wq;  ///< [heads d, d]
  linear<T> wk;  ///< [heads d, d]
  linear<T> wv;  ///< [heads d, d]
  linear<T> wo;  ///< [d, heads d]

  /// \brief Zero-initialised projections named prefix + ".wq" etc. (call reset_parameters).
  /// \throws invalid_argument if d < 1 or heads < 1.
  multi_head_attention(index_t d, index_t heads, Policy policy, Exec exec = {},
                       const std::string& prefix = "attn", attention_options options = {})
      : wq(d, checked_heads(heads) * d, prefix + ".wq"),
        wk(d, heads * d, prefix + ".wk"),
        wv(d, heads * d, prefix + ".wv"),
        wo(heads * d, d, prefix + ".wo"),
        policy_(std::move(policy)),
        exec_(std::move(exec)),
        options_(options),
        heads_(heads),
        d_(d),
        threads_(threads_of(exec_)) {}

  /// \brief PyTorch's default Linear initialisation of wq, wk, wv, wo, in that order.
  void reset_parameters(rng& gen) {
    wq.reset_parameters(gen);
    wk.reset_parameters(gen);
    wv.reset_parameters(gen);
    wo.reset_parameters(gen);
  }

  /// \brief Appends wq, wk, wv, wo (weight then bias each).
  void append_parameters(parameter_list<T>& list) {
    wq.append_parameters(list);
    wk.append_parameters(list);
    wv.append_parameters(list);
    wo.append_parameters(list);
  }

  /// \brief Y [batch n, d] from X [batch n, d] (see the file comment); keeps Q, K, V, O and the
  /// forward record for backward, and X (moved in when passed an rvalue). Each chunk of rows
  /// [r0, r1) of Y is followed in its task by epilogue(Y, r0, r1) (linear::forward). \throws
  /// invalid_argument if X is not [batch n, d] for some n >= 1, or as semfocus::forward (e.g.
  /// top_k with k > n).
  template <class Epilogue = detail::no_epilogue>
  matrix<T> forward(matrix<T> x, index_t batch, Epilogue&& epilogue = {}) {
    constexpr const char* fn = "semfocus::nn::multi_head_attention::forward";
    semfocus::detail::require(batch >= 1 && x.rows() >= batch && x.rows() % batch == 0, fn,
                              ": batch = ", batch, " must divide the ", x.rows(), " rows of x");
    detail::require_shape(fn, "x", x, -1, d_);
    batch_ = batch;
    n_ = x.rows() / batch;
    const index_t hd = heads_ * d_;
    x_ = std::move(x);
    w_qkv_.resize(3 * hd, d_);
    b_qkv_.resize(1, 3 * hd);
    const linear<T>* projections[] = {&wq, &wk, &wv};
    for (index_t p = 0; p < 3; ++p) {
      w_qkv_.middleRows(p * hd, hd) = projections[p]->weight.value;
      b_qkv_.middleCols(p * hd, hd) = projections[p]->bias.value;
    }
    detail::affine_forward(x_, w_qkv_, b_qkv_, qkv_, threads_);
    o_.resize(x_.rows(), hd);
    semfocus::forward(exec_, policy_, query_view(), key_view(), value_view(), view(o_), record_,
                      options_);
    matrix<T> y;  // wo applied to O in place of wo.forward (which would cache a copy of O)
    detail::affine_forward(o_, wo.weight.value, wo.bias.value, y, threads_, epilogue);
    return y;
  }

  /// \brief dX from dY [batch n, d]: through wo, semfocus::backward (kept set of the last
  /// forward), then dX = dQ Wq + dK Wk + dV Wv, each chunk of its rows followed in its task by
  /// epilogue(dX, r0, r1); accumulates every projection's gradients. \throws invalid_argument if
  /// dY does not match the last forward.
  template <class Epilogue = detail::no_epilogue>
  matrix<T> backward(const matrix<T>& dy, Epilogue&& epilogue = {}) {
    semfocus::detail::require(dy.rows() == o_.rows() && dy.cols() == d_,
                              "semfocus::nn::multi_head_attention::backward: dy must be [",
                              o_.rows(), ", ", d_, "], got [", dy.rows(), ", ", dy.cols(), "]");
    matrix<T> d_o;
    detail::affine_backward(dy, o_, wo.weight.value, wo.weight.grad, wo.bias.grad, &d_o, threads_);
    const index_t hd = heads_ * d_, rows = qkv_.rows();
    // dQ, dK, dV are outputs of semfocus::backward and may not interleave in one buffer (its
    // aliasing check is by address span): separate, then stacked for the fused GEMMs.
    matrix<T>* grads[] = {&dq_, &dk_, &dv_};
    for (matrix<T>* g : grads) g->resize(rows, hd);
    semfocus::backward(exec_, policy_, query_view(), key_view(), value_view(), view(o_), view(d_o),
                       record_, view(dq_), view(dk_), view(dv_));
    dqkv_.resize(rows, 3 * hd);
    detail::for_chunks(rows, detail::row_chunk, threads_, [&](index_t r0, index_t r1) {
      for (index_t p = 0; p < 3; ++p)
        dqkv_.block(r0, p * hd, r1 - r0, hd) = grads[p]->middleRows(r0, r1 - r0);
    });
    // [dWq; dWk; dWv] = [dQ | dK | dV]^T X, the biases' gradients its column sums, and
    // dX = [dQ | dK | dV] [Wq; Wk; Wv].
    dw_qkv_.setZero(3 * hd, d_);
    db_qkv_.setZero(1, 3 * hd);
    matrix<T> dx;
    detail::affine_backward(dqkv_, x_, w_qkv_, dw_qkv_, db_qkv_, &dx, threads_, epilogue);
    linear<T>* projections[] = {&wq, &wk, &wv};
    for (index_t p = 0; p < 3; ++p) {
      projections[p]->weight.grad += dw_qkv_.middleRows(p * hd, hd);
      projections[p]->bias.grad += db_qkv_.middleCols(p * hd, hd);
    }
    return dx;
  }

  /// \name Accessors: the policy, backend, options, sizes, and what the last forward kept
  /// (O [batch n, heads d], Q, K, V as views {batch, heads, n, d}, and the record).
  /// \{
  const Policy& policy() const noexcept { return policy_; }
  const Exec& exec() const noexcept { return exec_; }
  const attention_options& options() const noexcept { return options_; }
  index_t heads() const noexcept { return heads_; }
  index_t dim() const noexcept { return d_; }
  index_t batch() const noexcept { return batch_; }
  index_t seq() const noexcept { return n_; }
  const matrix<T>& attended() const noexcept { return o_; }
  const record_type& record() const noexcept { return record_; }
  tensor_view<const T> query_view() const noexcept { return qkv_view(0); }
  tensor_view<const T> key_view() const noexcept { return qkv_view(1); }
  tensor_view<const T> value_view() const noexcept { return qkv_view(2); }
  /// \}

 private:
  static index_t checked_heads(index_t heads) {
    semfocus::detail::require(
        heads >= 1, "semfocus::nn::multi_head_attention: heads must be >= 1, got ", heads);
    return heads;
  }
  tensor_view<T> view(matrix<T>& m) const noexcept {
    return head_view(m.data(), batch_, heads_, n_, d_);
  }
  tensor_view<const T> view(const matrix<T>& m) const noexcept {
    return head_view(m.data(), batch_, heads_, n_, d_);
  }
  /// Block p (0: Q, 1: K, 2: V) of [Q | K | V].
  tensor_view<const T> qkv_view(index_t p) const noexcept {
    return head_view<const T>(qkv_.data() + p * heads_ * d_, batch_, heads_, n_, d_,
                              3 * heads_ * d_);
  }

  Policy policy_;
  Exec exec_;
  attention_options options_;
  index_t heads_, d_;
  int threads_;  // of the projections
  index_t batch_ = 0, n_ = 0;
  matrix<T> x_, w_qkv_, b_qkv_, qkv_, o_;  // forward: input, stacked weights and biases, outputs
  matrix<T> dq_, dk_, dv_, dqkv_, dw_qkv_, db_qkv_;  // backward's buffers, kept to be reused
  record_type record_;
};

}  // namespace semfocus::nn
