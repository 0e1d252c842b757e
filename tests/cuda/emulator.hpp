// SPDX-License-Identifier: MIT
#pragma once
// Host emulation of a CUDA launch for the tensor-core kernel bodies (backend/cuda/tc/): one CPU
// thread per thread of the block, std::barrier for __syncthreads and for the warp-synchronous
// operations, and mma.m16n8k16 assembled from the documented fragment layouts (tc/context.hpp).
// Blocks run one after another; shared memory is filled with 0xff bytes (NaN) before each block,
// so a read of an element no thread wrote shows up in the results.

#include <semfocus/backend/cuda/tc/context.hpp>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace semfocus::test::emu {

namespace tc = semfocus::backend::cuda::tc;

/// What the lanes of one warp exchange.
struct warp_state {
  std::barrier<> bar{32};
  std::uint32_t a[32][4], b[32][2], u[32];
  float c[32][4], x[32];
};

/// One launch: the block barrier, the warps and the block's shared memory.
struct launch_state {
  launch_state(index_t grid_, int threads_, std::size_t smem_bytes)
      : grid(grid_), threads(threads_), block_bar(threads_), smem(smem_bytes + 16) {
    for (int w = 0; w < threads_ / 32; ++w) warps.push_back(std::make_unique<warp_state>());
  }
  index_t grid;
  int threads;
  std::barrier<> block_bar;
  std::vector<std::unique_ptr<warp_state>> warps;
  std::vector<unsigned char> smem;
};

/// The kernel_context of one emulated thread.
class context {
 public:
  context(launch_state& s, int tid) : s_(&s), tid_(tid) {}
  int thread() const { return tid_; }
  int threads() const { return s_->threads; }
  index_t block() const { return block_; }
  index_t grid() const { return s_->grid; }
  unsigned char* smem() const {
    auto at = reinterpret_cast<std::uintptr_t>(s_->smem.data());
    return s_->smem.data() + ((16 - at % 16) % 16);
  }
  void sync() { s_->block_bar.arrive_and_wait(); }
  void sync_warp() { warp().bar.arrive_and_wait(); }
  float shfl_xor(float v, int mask) {
    warp_state& w = warp();
    w.x[lane()] = v;
    w.bar.arrive_and_wait();
    const float r = w.x[lane() ^ mask];
    w.bar.arrive_and_wait();
    return r;
  }
  std::uint32_t ballot(bool v) {
    warp_state& w = warp();
    w.u[lane()] = v ? 1u : 0u;
    w.bar.arrive_and_wait();
    std::uint32_t r = 0;
    for (int l = 0; l < 32; ++l) r |= w.u[l] << l;
    w.bar.arrive_and_wait();
    return r;
  }
  std::uint32_t atomic_add(std::uint32_t* p, std::uint32_t v) {
    return std::atomic_ref<std::uint32_t>(*p).fetch_add(v);
  }
  /// c += A B from the 32 lanes' fragments: the 16 exact products and c summed in double and
  /// rounded once to float (the tensor core's internal alignment may differ within rounding).
  template <class Fmt>
  void mma(float* c, const std::uint32_t* a, const std::uint32_t* b) {
    warp_state& w = warp();
    const int me = lane();
    for (int e = 0; e < 4; ++e) w.a[me][e] = a[e];
    for (int e = 0; e < 2; ++e) w.b[me][e] = b[e];
    w.bar.arrive_and_wait();
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; ++l) {
      for (int e = 0; e < 8; ++e) {
        const tc::frag_coord at = tc::mma_a_at(l, e);
        A[at.row][at.col] = tc::to_float<Fmt>(std::uint16_t(w.a[l][e / 2] >> (16 * (e % 2))));
      }
      for (int e = 0; e < 4; ++e) {
        const tc::frag_coord at = tc::mma_b_at(l, e);
        B[at.row][at.col] = tc::to_float<Fmt>(std::uint16_t(w.b[l][e / 2] >> (16 * (e % 2))));
      }
    }
    w.bar.arrive_and_wait();
    for (int e = 0; e < 4; ++e) {
      const tc::frag_coord at = tc::mma_c_at(me, e);
      double acc = c[e];
      for (int k = 0; k < 16; ++k) acc += double(A[at.row][k]) * double(B[k][at.col]);
      c[e] = float(acc);
    }
  }
  void set_block(index_t b) { block_ = b; }

 private:
  int lane() const { return tid_ % 32; }
  warp_state& warp() const { return *s_->warps[std::size_t(tid_ / 32)]; }
  launch_state* s_;
  int tid_;
  index_t block_ = 0;
};

static_assert(tc::kernel_context<context>);

/// Runs body(ctx) as a launch of `grid` blocks of `threads` threads (a multiple of 32) with
/// `smem_bytes` of dynamic shared memory, blocks one after another; returns when all are done.
template <class Body>
void launch(index_t grid, int threads, std::size_t smem_bytes, const Body& body) {
  launch_state s(grid, threads, smem_bytes);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&s, &body, t] {
      context ctx(s, t);
      for (index_t blk = 0; blk < s.grid; ++blk) {
        if (t == 0) std::memset(s.smem.data(), 0xff, s.smem.size());
        ctx.sync();
        ctx.set_block(blk);
        body(ctx);
        ctx.sync();
      }
    });
  for (std::thread& th : pool) th.join();
}

}  // namespace semfocus::test::emu
