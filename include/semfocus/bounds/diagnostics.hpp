// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "semfocus/bounds/quantiles.hpp"
#include "semfocus/bounds/selection.hpp"

// The paper's per-head diagnostics of a forward pass (its Table 6 quantities): the dispersion of
// the scores each softmax normalises over, the separation of an input-dependent selection, and
// how many rows keep each key.
namespace semfocus::bounds {

/// \brief Diagnostics of one attention call. Rows are indexed r = (b heads + h) n_q + i (as the
/// forward record), keys c = (b heads + h) n_k + j.
struct attention_diagnostics {
  attention_shape shape{};  // of Q and K; d_v is set to d (V plays no part)
  double scale = 0;
  /// delta_i: max - min of the finite kept scores of row i (0 when it keeps fewer than 2).
  std::vector<double> dispersion;
  /// max - min of all finite scores of row i, the dispersion the dense softmax would see.
  std::vector<double> dispersion_all;
  /// Delta_i: smallest kept minus largest unkept score (bounds::separation); +inf when nothing
  /// is unkept. Meaningful for input-dependent policies; for fixed masks it may be negative.
  std::vector<double> separation;
  /// |K_i|: how many keys row i keeps.
  std::vector<index_t> kept_count;
  /// beta_j: how many rows of its (batch, head) keep key j (the sink count).
  std::vector<index_t> sink_count;

  /// \brief The rows of head (b, h) as a half-open range [first, last).
  std::pair<std::size_t, std::size_t> rows_of(index_t b, index_t h) const {
    const auto first = std::size_t((b * shape.heads + h) * shape.n_q);
    return {first, first + std::size_t(shape.n_q)};
  }
  /// \brief The keys of head (b, h) as a half-open range [first, last).
  std::pair<std::size_t, std::size_t> keys_of(index_t b, index_t h) const {
    const auto first = std::size_t((b * shape.heads + h) * shape.n_k);
    return {first, first + std::size_t(shape.n_k)};
  }
};

/// \brief Computes the diagnostics of attention with policy `p` on (Q, K): the kept sets are the
/// reference backend's (bounds::select_head), the scores s = scale Q K^T in T widened to double.
/// Shapes: q [batch, heads, n_q, d], k [batch, heads, n_k, d]. V plays no part.
/// Time O(batch heads n_q n_k d), memory O(n_q n_k) per head plus the result.
/// \throws invalid_argument on mismatched shapes, null data, a non-finite scale or a policy that
/// rejects the shape (as forward).
template <class Policy, class U, class T = std::remove_const_t<U>>
requires real_scalar<T> && attention_policy<Policy, T> attention_diagnostics
diagnose(const Policy& p, tensor_view<U> q_, std::type_identity_t<tensor_view<U>> k_,
         const attention_options& options = {}) {
  constexpr const char* fn = "semfocus::bounds::diagnose";
  const tensor_view<const T> q = q_, k = k_;
  const attention_shape s = semfocus::detail::check_inputs(fn, q, k, k);
  validate_policy(p, s);
  attention_diagnostics out;
  out.shape = s;
  out.scale = semfocus::detail::resolve_scale(fn, options, s.d);
  const auto rows = std::size_t(s.rows());
  out.dispersion.assign(rows, 0.0);
  out.dispersion_all.assign(rows, 0.0);
  out.separation.assign(rows, 0.0);
  out.kept_count.assign(rows, 0);
  out.sink_count.assign(std::size_t(s.batch * s.heads * s.n_k), 0);
  constexpr double inf = std::numeric_limits<double>::infinity();
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h) {
      const head_selection sel = select_head(p, q, k, b, h, out.scale);
      const std::size_t r0 = out.rows_of(b, h).first, c0 = out.keys_of(b, h).first;
      for (index_t i = 0; i < s.n_q; ++i) {
        const auto sc = sel.score_row(i);
        const auto kp = sel.kept_row(i);
        double kmin = inf, kmax = -inf, amin = inf, amax = -inf;
        index_t count = 0;
        for (std::size_t j = 0; j < sc.size(); ++j) {
          if (kp[j]) {
            ++count;
            ++out.sink_count[c0 + j];
          }
          if (!std::isfinite(sc[j])) continue;
          amin = std::min(amin, sc[j]);
          amax = std::max(amax, sc[j]);
          if (kp[j]) {
            kmin = std::min(kmin, sc[j]);
            kmax = std::max(kmax, sc[j]);
          }
        }
        const std::size_t r = r0 + std::size_t(i);
        out.dispersion[r] = kmax > kmin ? kmax - kmin : 0.0;
        out.dispersion_all[r] = amax > amin ? amax - amin : 0.0;
        out.separation[r] = separation(sc, kp);
        out.kept_count[r] = count;
      }
    }
  return out;
}

/// \brief Quantiles (paper_levels) of the diagnostics, pooled over every row and key given.
/// dispersion and separation pool only rows that keep at least one key; dispersion_all pools
/// every row; sink_count pools every key.
struct diagnostics_summary {
  quantile_summary dispersion;
  quantile_summary dispersion_all;
  quantile_summary separation;
  quantile_summary sink_count;
};

/// \brief Summary of several diagnostics pooled together (layers, batches, samples).
/// O(m log m) in the number m of pooled values.
inline diagnostics_summary summarize(std::span<const attention_diagnostics> all) {
  std::vector<double> disp, disp_all, sep, sink;
  for (const attention_diagnostics& d : all) {
    for (std::size_t r = 0; r < d.dispersion.size(); ++r) {
      disp_all.push_back(d.dispersion_all[r]);
      if (d.kept_count[r] == 0) continue;
      disp.push_back(d.dispersion[r]);
      sep.push_back(d.separation[r]);
    }
    for (const index_t c : d.sink_count) sink.push_back(double(c));
  }
  return {quantile_summary::of(disp), quantile_summary::of(disp_all), quantile_summary::of(sep),
          quantile_summary::of(sink)};
}

/// \brief Summary of one diagnostics object (all its heads pooled).
inline diagnostics_summary summarize(const attention_diagnostics& d) {
  return summarize(std::span<const attention_diagnostics>(&d, 1));
}

/// \brief Summary of head (b, h) of one diagnostics object alone.
/// \throws invalid_argument if (b, h) is outside its shape.
inline diagnostics_summary summarize(const attention_diagnostics& d, index_t b, index_t h) {
  semfocus::detail::require(b >= 0 && b < d.shape.batch && h >= 0 && h < d.shape.heads,
                            "semfocus::bounds::summarize: (b, h) must be in [0, ", d.shape.batch,
                            ") x [0, ", d.shape.heads, "), got (", b, ", ", h, ")");
  attention_diagnostics one;
  one.shape = d.shape;
  one.shape.batch = one.shape.heads = 1;
  one.scale = d.scale;
  const std::pair<std::size_t, std::size_t> rr = d.rows_of(b, h), cc = d.keys_of(b, h);
  const std::size_t r0 = rr.first, r1 = rr.second, c0 = cc.first, c1 = cc.second;
  const auto rows = [&](const auto& v) {
    return std::vector(v.begin() + std::ptrdiff_t(r0), v.begin() + std::ptrdiff_t(r1));
  };
  one.dispersion = rows(d.dispersion);
  one.dispersion_all = rows(d.dispersion_all);
  one.separation = rows(d.separation);
  one.kept_count = rows(d.kept_count);
  one.sink_count.assign(d.sink_count.begin() + std::ptrdiff_t(c0),
                        d.sink_count.begin() + std::ptrdiff_t(c1));
  return summarize(one);
}

}  // namespace semfocus::bounds
