// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <optional>

#include "semfocus/core/error.hpp"
#include "semfocus/core/record.hpp"
#include "semfocus/core/shape.hpp"
#include "semfocus/core/view.hpp"

namespace semfocus {

/// \brief Options of an attention call.
struct attention_options {
  /// Scores are scale * q.k; unset means 1 / sqrt(d). Must be finite.
  std::optional<double> scale;
};

namespace detail {

/// \brief Validates one view argument: strides >= 0, non-null data when non-empty, the expected
/// shape, and for an output (written) view, no two elements aliased.
template <class T>
void check_view(const char* fn, const char* name, const tensor_view<T>& v,
                const tensor_shape& expected, bool output) {
  require(v.shape() == expected, fn, ": ", name, " must have shape ", expected, ", got ",
          v.shape());
  const tensor_strides& s = v.strides();
  require(s.batch >= 0 && s.heads >= 0 && s.seq >= 0, fn, ": ", name,
          " strides must be >= 0, got {", s.batch, ", ", s.heads, ", ", s.seq, "}");
  require(v.empty() || v.data() != nullptr, fn, ": ", name, " data is null for a non-empty shape ",
          v.shape());
  require(!output || v.is_non_overlapping(), fn, ": ", name,
          " strides make distinct elements overlap; an output needs non-overlapping strides");
}

/// \brief Derives the problem shape from Q, K, V, checks them against it and returns it.
/// \throws invalid_argument naming the first bad argument.
template <class T>
attention_shape check_inputs(const char* fn, const tensor_view<const T>& q,
                             const tensor_view<const T>& k, const tensor_view<const T>& v) {
  const attention_shape s{q.batch(), q.heads(), q.seq(), k.seq(), q.dim(), v.dim()};
  require(s.batch >= 0 && s.heads >= 0 && s.n_q >= 0, fn, ": q extents must be >= 0, got ",
          q.shape());
  require(s.d >= 1, fn, ": q.dim must be >= 1, got ", s.d);
  require(s.d_v >= 1, fn, ": v.dim must be >= 1, got ", s.d_v);
  require(s.n_k >= 0, fn, ": k.seq must be >= 0, got ", s.n_k);
  check_view(fn, "q", q, s.q(), false);
  check_view(fn, "k", k, s.k(), false);
  check_view(fn, "v", v, s.v(), false);
  return s;
}

/// \brief The scale to use: options.scale or 1 / sqrt(d). \throws unless finite.
inline double resolve_scale(const char* fn, const attention_options& o, index_t d) {
  const double scale = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(d));
  require(std::isfinite(scale), fn, ": scale must be finite, got ", scale);
  return scale;
}

/// \brief Checks that a record was produced by forward for this shape and policy kind.
template <class T, class S>
void check_record(const char* fn, const forward_record<T, S>& r, const attention_shape& s) {
  require(r.shape == s, fn, ": record was made for shape ", r.shape,
          " but the arguments have shape ", s);
  require(std::isfinite(r.scale), fn, ": record scale must be finite, got ", r.scale);
  require(static_cast<index_t>(r.lse.size()) == s.rows(), fn, ": record lse must hold ", s.rows(),
          " rows, got ", r.lse.size());
  const index_t stats = forward_record<T, S>::has_statistics ? s.rows() : 0;
  require(static_cast<index_t>(r.stats.size()) == stats, fn, ": record stats must hold ", stats,
          " rows, got ", r.stats.size());
}

}  // namespace detail
}  // namespace semfocus
