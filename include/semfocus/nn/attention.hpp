// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <utility>

#include "semfocus/semfocus.hpp"

#include "semfocus/nn/init.hpp"
#include "semfocus/nn/layers.hpp"
#include "semfocus/nn/tensor.hpp"

// Multi-head self-attention with any selection policy, as in the paper: every head is d wide, so
// for an input X [batch n, d]
//   Q = X Wq^T + bq, K = X Wk^T + bk, V = X Wv^T + bv      (Wq, Wk, Wv [heads d, d])
//   O_h = softmax over the policy's kept keys of (Q_h K_h^T / sqrt(d)) V_h    (per sequence)
//   Y = [O_1 | ... | O_heads] Wo^T + bo                     (Wo [d, heads d])
// Q, K, V and O are stored [batch n, heads d] (head h in columns [h d, (h + 1) d)) and reach
// semfocus::forward / backward without a copy as strided views of shape {batch, heads, n, d}
// with strides {n heads d, d, heads d}. The gradient treats the kept set as a constant (see
// DESIGN.md), so it is exact wherever no score crosses the selection boundary.
namespace semfocus::nn {

/// \brief The {batch, heads, n, d} view of a [batch n, heads d] row-major matrix (head h of
/// sequence b, position i is row b n + i, columns [h d, (h + 1) d)). O(1); checks nothing.
template <class T>
tensor_view<T> head_view(T* data, index_t batch, index_t heads, index_t n, index_t d) noexcept {
  return {data, {batch, heads, n, d}, {n * heads * d, d, heads * d}};
}

/// \brief Multi-head attention layer (projections with biases, `heads` heads each d wide)
/// running `Policy` on backend `Exec` (exec::reference_t, exec::simd_t, ...).
///
/// Costs per forward: 3 projections O(batch n d * heads d), the attention of the backend
/// (O(batch heads n^2 d) for the reference), the output projection; backward about twice that.
/// Memory: Q, K, V, O and three cached copies of the input (for the projections' backward).
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
        d_(d) {}

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
  /// forward record for backward. \throws invalid_argument if X is not [batch n, d] for some
  /// n >= 1, or as semfocus::forward (e.g. top_k with k > n).
  matrix<T> forward(const matrix<T>& x, index_t batch) {
    constexpr const char* fn = "semfocus::nn::multi_head_attention::forward";
    semfocus::detail::require(batch >= 1 && x.rows() >= batch && x.rows() % batch == 0, fn,
                              ": batch = ", batch, " must divide the ", x.rows(), " rows of x");
    detail::require_shape(fn, "x", x, -1, d_);
    batch_ = batch;
    n_ = x.rows() / batch;
    q_ = wq.forward(x);
    k_ = wk.forward(x);
    v_ = wv.forward(x);
    o_.resize(x.rows(), heads_ * d_);
    semfocus::forward(exec_, policy_, view(q_), view(k_), view(v_), view(o_), record_, options_);
    return wo.forward(o_);
  }

  /// \brief dX from dY [batch n, d]: through wo, semfocus::backward (kept set of the last
  /// forward), then dX = dQ Wq + dK Wk + dV Wv; accumulates every projection's gradients.
  /// \throws invalid_argument if dY does not match the last forward.
  matrix<T> backward(const matrix<T>& dy) {
    const matrix<T> d_o = wo.backward(dy);
    matrix<T> dq(q_.rows(), q_.cols()), dk(k_.rows(), k_.cols()), dv(v_.rows(), v_.cols());
    semfocus::backward(exec_, policy_, view(q_), view(k_), view(v_), view(o_), view(d_o), record_,
                       view(dq), view(dk), view(dv));
    matrix<T> dx = wq.backward(dq);
    dx += wk.backward(dk);
    dx += wv.backward(dv);
    return dx;
  }

  /// \name Accessors: the policy, backend, options, sizes, and what the last forward kept
  /// (Q, K, V, O [batch n, heads d] and the record); views are {batch, heads, n, d}.
  /// \{
  const Policy& policy() const noexcept { return policy_; }
  const Exec& exec() const noexcept { return exec_; }
  const attention_options& options() const noexcept { return options_; }
  index_t heads() const noexcept { return heads_; }
  index_t dim() const noexcept { return d_; }
  index_t batch() const noexcept { return batch_; }
  index_t seq() const noexcept { return n_; }
  const matrix<T>& queries() const noexcept { return q_; }
  const matrix<T>& keys() const noexcept { return k_; }
  const matrix<T>& values() const noexcept { return v_; }
  const matrix<T>& attended() const noexcept { return o_; }
  const record_type& record() const noexcept { return record_; }
  tensor_view<const T> query_view() const noexcept { return view(q_); }
  tensor_view<const T> key_view() const noexcept { return view(k_); }
  tensor_view<const T> value_view() const noexcept { return view(v_); }
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

  Policy policy_;
  Exec exec_;
  attention_options options_;
  index_t heads_, d_;
  index_t batch_ = 0, n_ = 0;
  matrix<T> q_, k_, v_, o_;
  record_type record_;
};

}  // namespace semfocus::nn
