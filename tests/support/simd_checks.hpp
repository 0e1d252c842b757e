// SPDX-License-Identifier: MIT
#pragma once

// doctest checks shared by tests/test_simd.cpp and test_simd_edges.cpp, over the comparisons of
// support/simd_compare.hpp.
#if defined(SEMFOCUS_HAS_XSIMD)

#include <doctest/doctest.h>

#include <cmath>

#include "support/simd_compare.hpp"

namespace semfocus::test {

/// Forward results of the SIMD backend against the reference run `ref` (forward_differences).
template <class Policy, class T>
void check_forward(const Policy& p, const problem<T>& pr, const tensor<T>& out,
                   const forward_record_t<Policy, T>& rec, const result<Policy, T>& ref,
                   bool exact_scores) {
  const differences d =
      forward_differences(out, rec, ref, reference_kept_sets(p, pr, ref.record), exact_scores);
  CHECK_MESSAGE(d.empty(), join(d));
}

/// Gradients against the reference run `ref` (gradient_differences).
template <class Policy, class T>
void check_gradients(const tensor<T>& dq, const tensor<T>& dk, const tensor<T>& dv,
                     const result<Policy, T>& ref, bool whole_norm = false) {
  const differences d = gradient_differences(dq, dk, dv, ref, whole_norm);
  CHECK_MESSAGE(d.empty(), join(d));
}

/// For integer problems with scale `unit`: x moved to the nearest half unit, so that no exact
/// score (a multiple of the unit) sits on a threshold.
inline auto half_units(double unit) {
  return [unit](double x) { return (std::floor(x / unit) + 0.5) * unit; };
}

}  // namespace semfocus::test

#endif  // SEMFOCUS_HAS_XSIMD
