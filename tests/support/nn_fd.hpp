// SPDX-License-Identifier: MIT
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include <semfocus/nn/tensor.hpp>

namespace semfocus::test {

/// \brief Largest |analytic - central FD| / (1e-6 + 1e-5 |FD|) over the entries of `target` (<= 1:
/// agreement), with L = f() evaluated at target +- h e_x (target restored after each entry).
inline double fd_error(nn::matrix<double>& target, const nn::matrix<double>& analytic,
                       const std::function<double()>& f, double h = 1e-6) {
  REQUIRE(target.rows() == analytic.rows());
  REQUIRE(target.cols() == analytic.cols());
  double worst = 0;
  for (index_t x = 0; x < target.size(); ++x) {
    const double saved = target.data()[x];
    target.data()[x] = saved + h;
    const double up = f();
    target.data()[x] = saved - h;
    const double down = f();
    target.data()[x] = saved;
    const double fd = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(analytic.data()[x] - fd) / (1e-6 + 1e-5 * std::abs(fd)));
  }
  return worst;
}

}  // namespace semfocus::test
