// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <vector>

#include "semfocus/bounds/quantiles.hpp"
#include "semfocus/nn/init.hpp"
#include "semfocus/nn/tensor.hpp"

// The paper's empirical Lipschitz estimate of the loss (PAPER.md, "Empirical Lipschitz"):
//   1. two random directions d1, d2 with one block per parameter tensor t; each block has
//      N(0, 1) entries rescaled so that ||d_t||_F = ||theta_t||_F (a zero tensor gets a zero
//      block);
//   2. the loss L(a, b) = loss(theta + a d1 + b d2) on a G x G grid over [-e, e]^2 (e = 1 and
//      G = 200 in the paper);
//   3. for each radius r, every pair of grid neighbours (horizontal or vertical) with both points
//      within Euclidean distance r of the origin gives |L(p) - L(p')| / h, h = 2e / (G - 1) the
//      grid step in (a, b) units; the 50/75/95/99% quantiles (type 7) of these ratios are the
//      estimate.
// The directions are scaled to theta, so a unit of a moves every tensor by its own norm.
namespace semfocus::nn {

/// \brief One random direction: a block per parameter (same shapes), N(0, 1) entries from `gen`
/// rescaled to the parameter's Frobenius norm. O(total size).
template <class T>
std::vector<matrix<T>> normalized_direction(const parameter_list<T>& params, rng& gen) {
  std::vector<matrix<T>> dir;
  dir.reserve(params.size());
  for (const parameter<T>* p : params) {
    matrix<T> d(p->value.rows(), p->value.cols());
    for (index_t i = 0; i < d.size(); ++i) d.data()[i] = T(gen.normal());
    const double norm = double(d.norm()), target = double(p->value.norm());
    d *= norm > 0 ? T(target / norm) : T(0);
    dir.push_back(std::move(d));
  }
  return dir;
}

/// \brief Losses on the grid: loss[ib * points + ia] = L(coord(ia), coord(ib)).
struct landscape_grid {
  index_t points = 0;  ///< G, grid points per axis (>= 2)
  double extent = 1;   ///< e: the grid covers [-e, e]^2
  std::vector<double> loss;

  /// \brief The coordinate of grid index i: e (2 i - (G - 1)) / (G - 1) = -e + 2 e i / (G - 1),
  /// written so that the grid is exactly symmetric and an odd G has its centre at exactly 0.
  double coord(index_t i) const noexcept {
    return extent * double(2 * i - (points - 1)) / double(points - 1);
  }
  /// \brief The grid step h = 2 e / (G - 1).
  double step() const noexcept { return 2 * extent / double(points - 1); }
  double at(index_t ia, index_t ib) const { return loss[std::size_t(ib * points + ia)]; }
};

/// \brief Fills rows [row_begin, row_end) of `grid` (rows are b, columns a) with
/// loss() evaluated after setting every parameter to theta + a d1 + b d2; restores theta before
/// returning (also when loss throws). `loss` is a callable () -> double that reads the parameters
/// in `params`. Rows may be split across threads, each with its own model and parameter list.
/// Time: (row_end - row_begin) G calls of loss. \throws invalid_argument if the directions do not
/// match the parameters, the grid is not sized G x G with G >= 2, e is not finite and > 0, or
/// the row range is not within [0, G].
template <class T, class Loss>
void fill_landscape(const parameter_list<T>& params, const std::vector<matrix<T>>& d1,
                    const std::vector<matrix<T>>& d2, landscape_grid& grid, index_t row_begin,
                    index_t row_end, Loss&& loss) {
  constexpr const char* fn = "semfocus::nn::fill_landscape";
  semfocus::detail::require(d1.size() == params.size() && d2.size() == params.size(), fn,
                            ": directions must have one block per parameter (", params.size(),
                            "), got ", d1.size(), " and ", d2.size());
  for (std::size_t t = 0; t < params.size(); ++t)
    semfocus::detail::require(
        d1[t].rows() == params[t]->value.rows() && d1[t].cols() == params[t]->value.cols() &&
            d2[t].rows() == params[t]->value.rows() && d2[t].cols() == params[t]->value.cols(),
        fn, ": direction blocks must have the shape of parameter '", params[t]->name, "'");
  semfocus::detail::require(grid.points >= 2, fn, ": grid.points must be >= 2, got ", grid.points);
  semfocus::detail::require(std::isfinite(grid.extent) && grid.extent > 0, fn,
                            ": grid.extent must be finite and > 0, got ", grid.extent);
  semfocus::detail::require(grid.loss.size() == std::size_t(grid.points * grid.points), fn,
                            ": grid.loss must hold points^2 = ", grid.points * grid.points,
                            " values, got ", grid.loss.size());
  semfocus::detail::require(0 <= row_begin && row_begin <= row_end && row_end <= grid.points, fn,
                            ": rows must satisfy 0 <= row_begin <= row_end <= ", grid.points,
                            ", got [", row_begin, ", ", row_end, ")");
  std::vector<matrix<T>> theta;
  theta.reserve(params.size());
  for (const parameter<T>* p : params) theta.push_back(p->value);
  struct restore_on_exit {
    const parameter_list<T>& params;
    std::vector<matrix<T>>& theta;
    ~restore_on_exit() {
      for (std::size_t t = 0; t < params.size(); ++t) params[t]->value = theta[t];
    }
  } guard{params, theta};
  for (index_t ib = row_begin; ib < row_end; ++ib)
    for (index_t ia = 0; ia < grid.points; ++ia) {
      const T a = T(grid.coord(ia)), b = T(grid.coord(ib));
      for (std::size_t t = 0; t < params.size(); ++t)
        params[t]->value = theta[t] + a * d1[t] + b * d2[t];
      grid.loss[std::size_t(ib * grid.points + ia)] = double(loss());
    }
}

/// \brief The estimate at one radius: the number of neighbour pairs within it and the 50, 75,
/// 95 and 99% quantiles of |dL| / h (NaN when there is no pair).
struct landscape_lipschitz {
  double radius = 0;
  index_t pairs = 0;
  std::array<double, 4> quantile{};  ///< at landscape_levels
};

/// \brief The quantile levels of landscape_lipschitz: 0.50, 0.75, 0.95, 0.99.
inline constexpr std::array<double, 4> landscape_levels = {0.50, 0.75, 0.95, 0.99};

/// \brief Step 3 above for each radius. Time O(G^2 log G) per radius.
/// \throws invalid_argument if the grid is not filled (size G^2, G >= 2), its extent is not
/// finite and > 0, it holds a non-finite value, or a radius is negative or NaN.
inline std::vector<landscape_lipschitz> neighbour_lipschitz(const landscape_grid& grid,
                                                            std::span<const double> radii) {
  constexpr const char* fn = "semfocus::nn::neighbour_lipschitz";
  semfocus::detail::require(
      grid.points >= 2 && grid.loss.size() == std::size_t(grid.points * grid.points), fn,
      ": the grid must be G x G with G >= 2");
  semfocus::detail::require(std::isfinite(grid.extent) && grid.extent > 0, fn,
                            ": grid.extent must be finite and > 0, got ", grid.extent);
  for (const double v : grid.loss)
    semfocus::detail::require(std::isfinite(v), fn, ": every grid loss must be finite, got ", v);
  std::vector<landscape_lipschitz> out;
  const double h = grid.step();
  for (const double r : radii) {
    semfocus::detail::require(r >= 0, fn, ": radii must be >= 0, got ", r);
    const auto inside = [&](index_t ia, index_t ib) {
      return std::hypot(grid.coord(ia), grid.coord(ib)) <= r * (1 + 1e-12);
    };
    std::vector<double> ratios;
    for (index_t ib = 0; ib < grid.points; ++ib)
      for (index_t ia = 0; ia < grid.points; ++ia) {
        if (!inside(ia, ib)) continue;
        if (ia + 1 < grid.points && inside(ia + 1, ib))
          ratios.push_back(std::abs(grid.at(ia + 1, ib) - grid.at(ia, ib)) / h);
        if (ib + 1 < grid.points && inside(ia, ib + 1))
          ratios.push_back(std::abs(grid.at(ia, ib + 1) - grid.at(ia, ib)) / h);
      }
    landscape_lipschitz l{r, index_t(ratios.size()), {}};
    std::sort(ratios.begin(), ratios.end());
    for (std::size_t x = 0; x < landscape_levels.size(); ++x)
      l.quantile[x] =
          ratios.empty() ? std::nan("") : bounds::quantile_sorted(ratios, landscape_levels[x]);
    out.push_back(l);
  }
  return out;
}

}  // namespace semfocus::nn
