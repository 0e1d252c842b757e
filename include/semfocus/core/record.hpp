// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "semfocus/config.hpp"
#include "semfocus/core/shape.hpp"

namespace semfocus {

/// \brief The per-row statistic of an elementwise policy: nothing.
struct no_statistic {};

/// \brief What forward saves for backward (the analogue of FlashAttention's saved LSE): the policy
/// it ran with, the problem shape, the scale, the log-sum-exp of every score row over its kept
/// set (in double whatever T is; -inf for an empty row) and, for a row policy, every row's
/// statistic, so that backward applies exactly the forward selection. Rows are indexed
/// ((b * heads) + h) * n_q + i. Reusing one record across calls reuses its memory.
template <class Policy, class T, class Statistic = no_statistic>
struct forward_record {
  std::optional<Policy> policy;  // empty until a forward fills the record
  attention_shape shape{};
  double scale = 0;
  std::vector<double> lse;       // [batch, heads, n_q]
  std::vector<Statistic> stats;  // [batch, heads, n_q] for row policies, else empty

  /// Optional, filled by backends that exploit sparse selections (simd, for row policies whose
  /// rows keep few keys), else empty: row r kept the keys
  /// selection[selection_offsets[r] .. selection_offsets[r + 1]), ascending. Backward uses it
  /// when present and otherwise re-derives the kept set from the scores and `stats`.
  std::vector<std::int64_t> selection_offsets;  // [rows + 1] or empty
  std::vector<std::uint32_t> selection;

  /// \brief Whether a backend saved the kept sets (selection_offsets has rows + 1 entries).
  bool has_selection() const noexcept {
    return selection_offsets.size() == static_cast<std::size_t>(shape.rows()) + 1;
  }

  static constexpr bool has_statistics = !std::is_same_v<Statistic, no_statistic>;

  /// \brief Flat index of row (b, h, i).
  index_t row_index(index_t b, index_t h, index_t i) const noexcept {
    return (b * shape.heads + h) * shape.n_q + i;
  }

  /// \brief Sets the policy, shape and scale and sizes the arrays (keeps their capacity).
  void reset(const Policy& p, const attention_shape& s, double scale_) {
    policy = p;
    shape = s;
    scale = scale_;
    lse.resize(static_cast<std::size_t>(s.rows()));
    stats.resize(has_statistics ? static_cast<std::size_t>(s.rows()) : 0);
    selection_offsets.clear();
    selection.clear();
  }
};

}  // namespace semfocus
