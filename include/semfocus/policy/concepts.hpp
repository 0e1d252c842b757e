// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <type_traits>

#include "semfocus/config.hpp"
#include "semfocus/core/record.hpp"
#include "semfocus/core/shape.hpp"

// The policy contract. A policy is a small trivially copyable value that says which keys each
// query row keeps; every backend (reference, SIMD, CUDA) receives the same object.
//
// Two localities:
//  - elementwise: `p.keep(slice, i, j, s)` decides alone from the row i, the key j, the scaled
//    score s and the slice (batch, head, n_q, n_k). Dense, causal, banded, block-local,
//    strided, global tokens, explicit masks, random_k, absolute thresholds.
//  - row: the decision needs the whole row of scores. It is split in two passes that any backend
//    can run: `p.row_statistic(slice, i, scores)` reads the n_k scaled scores of row i and returns
//    a small trivially copyable statistic `st`; then `st.keep(j, s)` is an elementwise predicate.
//    Top-k (the k-th score and a tie cut-off index), bottom-k, threshold relative to the max.
//
// Semantics every backend implements (see core/softmax.hpp for the formulas):
//  - The kept set K_i is a constant for differentiation: dS = P * (dP - rowsum(P * dP)) on K_i,
//    0 elsewhere (exact wherever no score sits on a selection boundary).
//  - Backward reuses what forward saved (the row log-sum-exp and, for row policies, the row
//    statistic) and recomputes scores with bit-identical arithmetic, so it never selects
//    differently from forward.
//  - A row whose kept set is empty (or whose kept scores are all -inf) has output 0, log-sum-exp
//    -inf and zero gradients, never NaN. Selection policies never keep a NaN score.
//  - Scores are scale * q.k; every predicate compares scaled scores.
//
// Optional members, detected (never required):
//  - `static constexpr bool input_agnostic`: true when keep ignores s (a fixed mask); such a policy
//    may be wrapped by with_global and its selection is the same for every input.
//  - `p.validate(const attention_shape&)`: throws semfocus::invalid_argument when the policy cannot
//    serve the shape (e.g. k > n_k). Every backend calls it before any work.
//  - `p.classify(slice, tile) -> tile_kind`: for an input-agnostic policy, says that a tile keeps
//    everything or nothing so kernels skip the tile or the per-element test. Must be exact when it
//    says all_kept or none_kept; `partial` is always a correct answer. Callers pass non-empty
//    tiles inside the slice (i0 < i1 <= n_q, j0 < j1 <= n_k): kernels clip padded tiles first.
//  - `operator==`: lets backward check that the record was made with an equal policy value.
//
// Positional masks (causal, banded, block-local, strided, global tokens) place query i at key
// position head_slice::position(i) = i + n_k - n_q: identical to i for self-attention, and the
// queries are the last n_q positions otherwise (as FlashAttention's causal mask).
// Every member a kernel calls (keep, row_statistic, the statistic's keep, classify) must be
// SEMFOCUS_HD, must not allocate and must not throw.
namespace semfocus {

/// \brief What a policy needs to decide: one score (elementwise) or the whole row (row).
enum class locality { elementwise, row };

/// \brief Coverage of a tile of the score matrix by an input-agnostic policy.
enum class tile_kind { none_kept, partial, all_kept };

/// \brief The common part: a trivially copyable value with a compile-time locality.
template <class P>
concept selection_policy = std::copyable<P> && std::is_trivially_copyable_v<P> && requires {
  { P::locality_kind } -> std::convertible_to<locality>;
  typename std::integral_constant<locality, P::locality_kind>;  // a constant expression
};

/// \brief An elementwise policy: `bool keep(head_slice, i, j, T s) const`.
template <class P, class T>
concept elementwise_policy = selection_policy<P> &&(P::locality_kind == locality::elementwise) &&
                             requires(const P& p, const head_slice& hs, index_t i, index_t j, T s) {
  { p.keep(hs, i, j, s) } -> std::same_as<bool>;
};

/// \brief What row_statistic returns: a trivially copyable, default-constructible (records hold
/// arrays of them) predicate `bool keep(j, T s) const`.
template <class S, class T>
concept row_predicate = std::copyable<S> && std::is_trivially_copyable_v<S> &&
    std::default_initializable<S> && requires(const S& st, index_t j, T s) {
  { st.keep(j, s) } -> std::same_as<bool>;
};

/// \brief A row policy: `row_statistic(head_slice, i, const T* scores)` over the n_k scores of
/// row i returns a row_predicate.
template <class P, class T>
concept row_policy = selection_policy<P> &&(P::locality_kind == locality::row) &&
                     requires(const P& p, const head_slice& hs, index_t i, const T* scores) {
  { p.row_statistic(hs, i, scores) } -> row_predicate<T>;
};

/// \brief Anything a backend accepts for score type T.
template <class P, class T>
concept attention_policy = elementwise_policy<P, T> || row_policy<P, T>;

/// \brief True when the policy declares `input_agnostic = true` (its keep ignores the score).
template <class P>
inline constexpr bool is_input_agnostic_v = [] {
  if constexpr (requires { P::input_agnostic; })
    return static_cast<bool>(P::input_agnostic);
  else
    return false;
}();

/// \brief An input-agnostic elementwise policy: the same selection for every input.
template <class P>
concept fixed_mask = selection_policy<P> &&(P::locality_kind == locality::elementwise) &&
                     is_input_agnostic_v<P>&& requires(const P& p, const head_slice& hs, index_t i,
                                                       index_t j) {
  { p.keep(hs, i, j, 0.0) } -> std::same_as<bool>;
};

namespace detail {
template <class P, class T>
struct row_statistic_type {
  using type = no_statistic;
};
template <class P, class T>
requires row_policy<P, T>
struct row_statistic_type<P, T> {
  using type = decltype(std::declval<const P&>().row_statistic(head_slice{}, index_t{},
                                                               static_cast<const T*>(nullptr)));
};
}  // namespace detail

/// \brief Type of the per-row statistic of policy P for scores of type T.
template <class P, class T>
using row_statistic_t = typename detail::row_statistic_type<P, T>::type;

/// \brief Calls p.validate(shape) when the policy has it. \throws invalid_argument.
template <class P>
void validate_policy(const P& p, const attention_shape& shape) {
  if constexpr (requires { p.validate(shape); }) p.validate(shape);
}

/// \brief p.classify(hs, t) when available, else tile_kind::partial (always correct).
template <class P>
SEMFOCUS_HD constexpr tile_kind classify_tile(const P& p, const head_slice& hs, const tile& t) {
  if constexpr (requires {
                  { p.classify(hs, t) } -> std::same_as<tile_kind>;
                })
    return p.classify(hs, t);
  else
    return tile_kind::partial;
}

/// \brief Whether key j of row i is kept, for either locality. `st` is the row's statistic
/// (ignored for elementwise policies).
template <class P, class T>
requires attention_policy<P, T> SEMFOCUS_HD constexpr bool is_kept(
    const P& p, const head_slice& hs, index_t i, index_t j, T s, const row_statistic_t<P, T>& st) {
  if constexpr (row_policy<P, T>)
    return st.keep(j, s);
  else
    return p.keep(hs, i, j, s);
}

}  // namespace semfocus
