// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "semfocus/core/error.hpp"

namespace semfocus::bounds {

/// \brief The quantile levels of the paper's diagnostics: 0, 1, 5, 10, 25, 50, 75, 90, 95, 99
/// and 100 percent.
inline constexpr std::array<double, 11> paper_levels = {0.0,  0.01, 0.05, 0.10, 0.25, 0.50,
                                                        0.75, 0.90, 0.95, 0.99, 1.0};

/// \brief Quantile of `sorted` (ascending, no NaN) at `level` in [0, 1] by linear interpolation
/// between order statistics (Hyndman-Fan type 7, numpy's default): with h = level (n - 1),
/// x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]). Infinite values are allowed: an
/// interpolation that touches +inf (or -inf) returns it. O(1).
/// \throws invalid_argument if `sorted` is empty or level is outside [0, 1].
inline double quantile_sorted(std::span<const double> sorted, double level) {
  semfocus::detail::require(!sorted.empty(), "semfocus::bounds::quantile: no values");
  semfocus::detail::require(level >= 0 && level <= 1,
                            "semfocus::bounds::quantile: level must be in [0, 1], got ", level);
  const double h = level * double(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const double frac = h - double(lo);
  const double a = sorted[lo];
  if (frac == 0 || lo + 1 >= sorted.size()) return a;
  const double b = sorted[lo + 1];
  if (a == b) return a;
  if (std::isinf(a)) return a;
  if (std::isinf(b)) return b;
  return a + frac * (b - a);
}

/// \brief Quantiles of `values` at every level of `levels` (see quantile_sorted); NaN values are
/// dropped first. O(n log n).
/// \throws invalid_argument if no non-NaN value is left or a level is outside [0, 1].
template <std::size_t N>
std::array<double, N> quantiles(std::span<const double> values,
                                const std::array<double, N>& levels) {
  std::vector<double> v;
  v.reserve(values.size());
  for (const double x : values)
    if (!std::isnan(x)) v.push_back(x);
  std::sort(v.begin(), v.end());
  std::array<double, N> out{};
  for (std::size_t l = 0; l < N; ++l) out[l] = quantile_sorted(v, levels[l]);
  return out;
}

/// \brief Quantiles of one quantity at the paper's levels, with the number of values summarised.
struct quantile_summary {
  std::array<double, paper_levels.size()> values{};  // values[l] at paper_levels[l]
  std::size_t count = 0;

  /// \brief The summary of `values` (NaN dropped); an empty input gives count 0 and NaN values.
  static quantile_summary of(std::span<const double> values) {
    quantile_summary s;
    s.count = std::size_t(
        std::count_if(values.begin(), values.end(), [](double x) { return !std::isnan(x); }));
    if (s.count == 0)
      s.values.fill(std::nan(""));
    else
      s.values = quantiles(values, paper_levels);
    return s;
  }

  /// \brief The value at `level`, which must be one of paper_levels.
  /// \throws invalid_argument naming the level otherwise.
  double at(double level) const {
    return values[index_of("semfocus::bounds::quantile_summary::at", level)];
  }

  /// \brief Sets the value at `level` (one of paper_levels), e.g. to enter published figures.
  /// \throws invalid_argument as at().
  void set(double level, double value) {
    values[index_of("semfocus::bounds::quantile_summary::set", level)] = value;
  }

 private:
  /// \brief Position of `level` in paper_levels (to 1e-12). \throws invalid_argument otherwise.
  static std::size_t index_of(const char* fn, double level) {
    for (std::size_t l = 0; l < paper_levels.size(); ++l)
      if (std::abs(paper_levels[l] - level) < 1e-12) return l;
    semfocus::detail::require(false, fn,
                              ": level must be one of 0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, "
                              "0.95, 0.99, 1; got ",
                              level);
    return 0;
  }
};

}  // namespace semfocus::bounds
