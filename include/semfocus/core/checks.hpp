// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <functional>
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
  require(v.extents_fit(), fn, ": ", name, " of shape ", v.shape(),
          " addresses more elements than index_t can count");
  require(v.empty() || v.data() != nullptr, fn, ": ", name, " data is null for a non-empty shape ",
          v.shape());
  require(!output || v.is_non_overlapping(), fn, ": ", name,
          " strides make distinct elements overlap; an output needs non-overlapping strides");
}

/// \brief Throws unless the memory spans [data, data + required_size) of output `a` and of `b`
/// are disjoint (an output may not alias an input or another output). O(1).
template <class T, class U>
void check_disjoint(const char* fn, const char* a_name, const tensor_view<T>& a, const char* b_name,
                    const tensor_view<U>& b) {
  if (a.empty() || b.empty()) return;
  const std::less<const void*> before;  // a total order even across allocations
  const void* a0 = a.data();
  const void* a1 = a.data() + a.required_size();
  const void* b0 = b.data();
  const void* b1 = b.data() + b.required_size();
  require(!before(a0, b1) || !before(b0, a1), fn, ": ", a_name, " overlaps the memory of ", b_name,
          "; outputs must not alias inputs or other outputs");
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

/// \brief Checks that a record was produced by forward for this shape and, when the policy type is
/// equality-comparable (every built-in one is), for an equal policy.
template <class P, class T, class S>
void check_record(const char* fn, const forward_record<P, T, S>& r, const P& policy,
                  const attention_shape& s) {
  require(r.policy.has_value(), fn, ": record was not filled by forward");
  if constexpr (std::equality_comparable<P>)
    require(*r.policy == policy, fn,
            ": record was made by forward with a different policy value (parameters differ)");
  require(r.shape == s, fn, ": record was made for shape ", r.shape,
          " but the arguments have shape ", s);
  require(std::isfinite(r.scale), fn, ": record scale must be finite, got ", r.scale);
  require(static_cast<index_t>(r.lse.size()) == s.rows(), fn, ": record lse must hold ", s.rows(),
          " rows, got ", r.lse.size());
  const index_t stats = forward_record<P, T, S>::has_statistics ? s.rows() : 0;
  require(static_cast<index_t>(r.stats.size()) == stats, fn, ": record stats must hold ", stats,
          " rows, got ", r.stats.size());
}

}  // namespace detail
}  // namespace semfocus
