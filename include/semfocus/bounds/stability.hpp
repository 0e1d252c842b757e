// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

#include "semfocus/bounds/diagnostics.hpp"
#include "semfocus/core/error.hpp"

// Softmax stability constants of the paper (Ram et al. 2025, PAPER.md "Theory quantities"), each
// known up to a factor common to the full and the top-k softmax, so only their ratios (or the
// differences of their logarithms) are meaningful:
//   parameters  lambda_W(full) = e^{delta_s}
//               lambda_W(top-k) = 2 (1 + 1/Delta_h) e^{delta_h}
//   inputs      lambda_X(full) = e^{delta_s} (1 + delta_s)
//               lambda_X(top-k) = e^{delta_h} (beta + delta_s (1 + beta) (1 + 1/Delta_h))
// with delta_s the dispersion of a full-softmax row, delta_h that of a top-k row, Delta_h the
// top-k separation and beta = (sink count) / k. The logarithms are returned, so large
// dispersions (ListOps: 87.8) do not overflow.
namespace semfocus::bounds {

/// \brief Floor applied to delta_s and Delta_h before they divide (the paper floors at 1e-9).
inline constexpr double stability_floor = 1e-9;

namespace detail {
inline void check_stability_args(const char* fn, double delta_s, double delta_h, double sep,
                                 double beta) {
  semfocus::detail::require(delta_s >= 0 && !std::isnan(delta_s), fn,
                            ": delta_s must be >= 0, got ", delta_s);
  semfocus::detail::require(delta_h >= 0 && !std::isnan(delta_h), fn,
                            ": delta_h must be >= 0, got ", delta_h);
  semfocus::detail::require(sep >= 0 && !std::isnan(sep), fn,
                            ": separation Delta_h must be >= 0, got ", sep);
  semfocus::detail::require(beta >= 0 && std::isfinite(beta), fn,
                            ": beta must be finite and >= 0, got ", beta);
}
}  // namespace detail

/// \brief ln lambda_W(full) = delta_s.
inline double log_lambda_w_full(double delta_s) { return delta_s; }

/// \brief ln lambda_W(top-k) = ln 2 + ln(1 + 1/max(Delta_h, 1e-9)) + delta_h.
inline double log_lambda_w_topk(double delta_h, double separation) {
  return std::log(2.0) + std::log1p(1.0 / std::max(separation, stability_floor)) + delta_h;
}

/// \brief ln lambda_X(full) = delta_s + ln(1 + delta_s).
inline double log_lambda_x_full(double delta_s) { return delta_s + std::log1p(delta_s); }

/// \brief ln lambda_X(top-k) = delta_h + ln(beta + delta_s (1 + beta)(1 + 1/max(Delta_h, 1e-9))).
inline double log_lambda_x_topk(double delta_h, double delta_s, double separation, double beta) {
  const double inv = 1.0 + 1.0 / std::max(separation, stability_floor);
  return delta_h + std::log(beta + delta_s * (1.0 + beta) * inv);
}

/// \brief The paper's two sufficient conditions for top-k to be more stable than full attention
/// (its appendix equations 304 and 305): each holds when its value is < 1.
struct stability_lhs {
  double w = 0;  // LHS_W: top-k more stable with respect to the parameters when < 1
  double x = 0;  // LHS_X: top-k more stable with respect to the inputs when < 1
};

/// \brief LHS_W = c1 + ln(2 (1 + 1/Delta_h)) / delta_s and
/// LHS_X = c1 + [ln(delta_s (1 + beta)(1 + 1/Delta_h) + beta) - ln(1 + delta_s)] / delta_s,
/// with c1 = delta_h / delta_s and beta = beta_count / k; delta_s and Delta_h are floored at 1e-9.
/// Equivalently LHS = 1 + (ln lambda(top-k) - ln lambda(full)) / delta_s, so LHS < 1 exactly when
/// lambda(top-k) < lambda(full). O(1).
/// \throws invalid_argument if a dispersion, the separation or beta_count is negative or NaN, or
/// k < 1.
inline stability_lhs stability_conditions(double delta_s, double delta_h, double separation,
                                          double beta_count, index_t k) {
  constexpr const char* fn = "semfocus::bounds::stability_conditions";
  semfocus::detail::require(k >= 1, fn, ": k must be >= 1, got ", k);
  const double beta = beta_count / double(k);
  detail::check_stability_args(fn, delta_s, delta_h, separation, beta);
  const double ds = std::max(delta_s, stability_floor);
  return {1.0 + (log_lambda_w_topk(delta_h, separation) - log_lambda_w_full(ds)) / ds,
          1.0 + (log_lambda_x_topk(delta_h, ds, separation, beta) - log_lambda_x_full(ds)) / ds};
}

/// \brief One quantile pairing of the paper's Table 6: high quantile `high` of delta_s, delta_h
/// and the sink count against low quantile `low` = 1 - high of the separation.
struct stability_row {
  double high = 0, low = 0;
  double delta_s = 0, delta_h = 0, separation = 0, beta_count = 0;
  stability_lhs lhs;
};

/// \brief The paper's Table 6 evaluation: for each pairing (75 | 25), (90 | 10), (95 | 5),
/// (100 | 0) percent, delta_s from the full model's dispersion summary, delta_h, the sink count
/// (beta = count / k) and the separation from the top-k model's summary, and both LHS values.
/// \throws invalid_argument as stability_conditions (e.g. an empty summary gives NaN).
inline std::array<stability_row, 4> stability_table(const diagnostics_summary& full,
                                                    const diagnostics_summary& topk, index_t k) {
  constexpr std::array<double, 4> highs = {0.75, 0.90, 0.95, 1.0};
  std::array<stability_row, 4> out{};
  for (std::size_t x = 0; x < highs.size(); ++x) {
    stability_row& r = out[x];
    r.high = highs[x];
    r.low = x + 1 == highs.size() ? 0.0 : 1.0 - highs[x];
    r.delta_s = full.dispersion.at(r.high);
    r.delta_h = topk.dispersion.at(r.high);
    r.separation = topk.separation.at(r.low);
    r.beta_count = topk.sink_count.at(r.high);
    r.lhs = stability_conditions(r.delta_s, r.delta_h, r.separation, r.beta_count, k);
  }
  return out;
}

}  // namespace semfocus::bounds
