// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstdint>

#include "semfocus/backend/cuda/tc/numeric.hpp"

// What a tensor-core kernel body asks of the machine it runs on, as one context object:
// device_context (tc_launch.cuh: threadIdx, __syncthreads, __shfl_xor_sync, mma.sync) on a GPU,
// and the emulated context of tests/cuda/emulator.hpp (CPU threads, barriers, the fragment layout
// below) on the host. The bodies are written once over it, as xsimd's kernels over an arch.
namespace semfocus::backend::cuda::tc {

/// \brief The operations of a kernel body's context. Warp operations (sync_warp, shfl_xor,
/// ballot, mma) are called by all 32 lanes of a warp together, as their CUDA counterparts with a
/// full mask; sync by every thread of the block.
///  - thread(), threads(): threadIdx.x, blockDim.x; block(), grid(): blockIdx.x, gridDim.x.
///  - smem(): the block's dynamic shared memory (16-byte aligned).
///  - sync(): __syncthreads(); sync_warp(): __syncwarp().
///  - shfl_xor(x, m): the x of lane (lane ^ m); ballot(b): bit l set when lane l's b is true.
///  - atomic_add(p, v): *p += v on shared memory, atomically; returns the old value.
///  - mma<Fmt>(c, a, b): c += A B for the warp's 16x16 A, 16x8 B (Fmt elements) and 16x8 float C
///    held in fragments (mma_a_at, mma_b_at, mma_c_at): mma.sync.aligned.m16n8k16.row.col.f32.
template <class C>
concept kernel_context = requires(C& c, const C& cc, float* acc, const std::uint32_t* a,
                                  std::uint32_t* p) {
  { cc.thread() } -> std::same_as<int>;
  { cc.threads() } -> std::same_as<int>;
  { cc.block() } -> std::same_as<index_t>;
  { cc.grid() } -> std::same_as<index_t>;
  { cc.smem() } -> std::same_as<unsigned char*>;
  c.sync();
  c.sync_warp();
  { c.shfl_xor(1.f, 1) } -> std::same_as<float>;
  { c.ballot(true) } -> std::same_as<std::uint32_t>;
  { c.atomic_add(p, 1u) } -> std::same_as<std::uint32_t>;
  c.template mma<f16>(acc, a, a);
  c.template mma<bf16>(acc, a, a);
};

/// \brief Row and column of one element of a matrix fragment.
struct frag_coord {
  int row, col;
};

// The fragment layouts of mma.m16n8k16 with 16-bit A and B and float C (PTX ISA, "Matrix
// fragments for mma.m16n8k16 with floating point type"): lane l has group g = l / 4 and
// position t = l % 4. Element e of a lane's A (e in [0, 8), two per 32-bit register, the lower
// in bits 0-15) lies at row g + 8 ((e / 2) % 2), column 2 t + e % 2 + 8 (e / 4); element e of B
// (e in [0, 4)) at row 2 t + e % 2 + 8 (e / 2), column g; element e of C (e in [0, 4)) at row
// g + 8 (e / 2), column 2 t + e % 2. The kernel bodies use these offsets directly (rows g and
// g + 8, column pairs 2 t and 2 t + 8); the emulation assembles the matrices from them.

/// \brief Where element e of lane l's A fragment (16 x 16) lies.
SEMFOCUS_HD constexpr frag_coord mma_a_at(int l, int e) noexcept {
  return {l / 4 + 8 * ((e / 2) % 2), 2 * (l % 4) + e % 2 + 8 * (e / 4)};
}
/// \brief Where element e of lane l's B fragment (16 x 8, k x n) lies.
SEMFOCUS_HD constexpr frag_coord mma_b_at(int l, int e) noexcept {
  return {2 * (l % 4) + e % 2 + 8 * (e / 2), l / 4};
}
/// \brief Where element e of lane l's C (and D) fragment (16 x 8) lies.
SEMFOCUS_HD constexpr frag_coord mma_c_at(int l, int e) noexcept {
  return {l / 4 + 8 * (e / 2), 2 * (l % 4) + e % 2};
}

}  // namespace semfocus::backend::cuda::tc
