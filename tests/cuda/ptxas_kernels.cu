// SPDX-License-Identifier: MIT
// The tensor-core kernels instantiated for ptxas's resource report (tests/cuda/ptxas_check.sh):
// both formats, both tile configurations, an elementwise mask, a fixed mask with tile skipping,
// and the three row policies with their own statistic paths (radix select, row max, a user's
// row_statistic on lane 0). Compiled, never run.
#include <semfocus/cuda.cuh>

#include "support/custom_policy.hpp"

namespace sb = semfocus::backend::cuda;

// Every block must fit the opt-in shared memory of every sm_80+ GPU (99 KiB on sm_86 / sm_89).
template <class Cfg, class Stat>
constexpr bool fits = std::max({semfocus::backend::cuda::tc::stats_smem_bytes<Cfg>(),
                                semfocus::backend::cuda::tc::forward_smem_bytes<Cfg>(),
                                semfocus::backend::cuda::tc::dq_smem_bytes<Cfg>(),
                                semfocus::backend::cuda::tc::dkdv_smem_bytes<Cfg, Stat>()}) <=
                      99 * 1024;
static_assert(fits<sb::tc_tiles_64, semfocus::rank_cut<float, true>>);
static_assert(fits<sb::tc_tiles_128, semfocus::rank_cut<float, true>>);

template <class Fmt, class Cfg, class Policy>
void instantiate() {
  using Stat = semfocus::row_statistic_t<Policy, float>;
  if constexpr (semfocus::row_policy<Policy, float>) (void)&sb::tc_stats<Fmt, Cfg, Policy, Stat>;
  (void)&sb::tc_forward<Fmt, Cfg, Policy, Stat>;
  (void)&sb::tc_row_dot<Fmt, Stat>;
  (void)&sb::tc_dq<Fmt, Cfg, Policy, Stat>;
  (void)&sb::tc_dkdv<Fmt, Cfg, Policy, Stat>;
}

template <class Fmt, class Cfg>
void instantiate_policies() {
  instantiate<Fmt, Cfg, semfocus::dense>();
  instantiate<Fmt, Cfg, semfocus::banded>();
  instantiate<Fmt, Cfg, semfocus::top_k>();
  instantiate<Fmt, Cfg, semfocus::threshold>();
  instantiate<Fmt, Cfg, user::above_mean>();
}

int main() {
  namespace tc = semfocus::backend::cuda::tc;
  instantiate_policies<tc::f16, sb::tc_tiles_64>();
  instantiate_policies<tc::f16, sb::tc_tiles_128>();
  instantiate_policies<tc::bf16, sb::tc_tiles_64>();
  instantiate_policies<tc::bf16, sb::tc_tiles_128>();
  return 0;
}
