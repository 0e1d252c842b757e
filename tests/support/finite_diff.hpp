// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "support/tensors.hpp"

namespace semfocus::test {

/// \brief L = sum(d_out * forward(q, k, v)) through the reference backend, in double.
template <class Policy>
double loss(const Policy& p, const problem<double>& pr, const attention_options& opt = {}) {
  tensor<double> out(pr.shape.out());
  forward(exec::reference, p, pr.q.view(), pr.k.view(), pr.v.view(), out.view(), opt);
  double l = 0;
  for (std::size_t x = 0; x < out.data.size(); ++x) l += out.data[x] * pr.d_out.data[x];
  return l;
}

/// \brief Largest |analytic - central FD| / (abs_tol + |FD|) over every element of q, k and v
/// (step h), with the analytic gradient from backward. A value <= 1 means agreement to abs_tol
/// absolutely and to about 1 relatively.
template <class Policy>
double gradient_error(const Policy& p, const problem<double>& pr, double h = 1e-6,
                      const attention_options& opt = {}) {
  const auto r = run_reference(p, pr, opt);
  problem<double> work = pr;
  double worst = 0;
  auto sweep = [&](tensor<double> problem<double>::*member, const tensor<double>& grad) {
    tensor<double>& t = work.*member;
    for (std::size_t x = 0; x < t.data.size(); ++x) {
      const double saved = t.data[x];
      t.data[x] = saved + h;
      const double up = loss(p, work, opt);
      t.data[x] = saved - h;
      const double down = loss(p, work, opt);
      t.data[x] = saved;
      const double fd = (up - down) / (2 * h);
      const double err = std::abs(grad.data[x] - fd) / (1e-6 + 1e-6 * std::abs(fd));
      worst = std::max(worst, err);
    }
  };
  sweep(&problem<double>::q, r.dq);
  sweep(&problem<double>::k, r.dk);
  sweep(&problem<double>::v, r.dv);
  return worst;
}

}  // namespace semfocus::test
