// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>

#include "semfocus/backend/simd/exec.hpp"
#include "semfocus/backend/simd/kernels.hpp"
#include "semfocus/backend/simd/parallel.hpp"

namespace semfocus::backend::simd {

/// \brief The calling thread's workspace, used when the tag names none.
inline simd_workspace& default_workspace() {
  thread_local simd_workspace ws;
  return ws;
}

/// \brief A bump layout of one arena: take<U>(n) reserves n U's (64-byte aligned) and returns
/// their byte offset; size is the total.
struct arena_layout {
  std::size_t size = 0;
  template <class U>
  std::size_t take(index_t n) noexcept {
    const std::size_t at = size;
    size += simd_workspace::round_up(static_cast<std::size_t>(n) * sizeof(U));
    return at;
  }
};

/// \brief Typed pointer at a byte offset of an arena.
template <class U>
U* at(void* base, std::size_t offset) noexcept {
  return reinterpret_cast<U*>(static_cast<std::byte*>(base) + offset);
}

/// \brief The resources of one call: the workspace, the thread count, the shared arena (slot 0)
/// and one scratch arena per worker (slots 1..threads), all allocated before any task runs.
struct call_context {
  simd_workspace* ws;
  int threads;
  void* shared;
  std::size_t scratch_bytes;
  exec::simd_runner runner;

  call_context(const exec::simd_t& ex, index_t max_tasks, std::size_t shared_bytes,
               std::size_t scratch_bytes_)
      : ws(ex.workspace ? ex.workspace : &default_workspace()),
        threads(static_cast<int>(std::max<index_t>(
            1, std::min<index_t>(ex.resolved_threads(), std::max<index_t>(max_tasks, 1))))),
        shared(nullptr),
        scratch_bytes(scratch_bytes_),
        runner(ex.runner) {
    ws->reserve_slots(std::size_t(threads) + 1);
    shared = ws->get(0, std::max<std::size_t>(shared_bytes, 1));
    for (int s = 0; s < threads; ++s)
      ws->get(std::size_t(s) + 1, std::max<std::size_t>(scratch_bytes, 1));
  }

  /// \brief The scratch arena of worker `slot`.
  void* scratch(int slot) const { return ws->get(std::size_t(slot) + 1, scratch_bytes); }

  /// \brief Runs fn(task, slot) for task in [0, n) on the pool (or the executor's runner).
  template <class F>
  void run(index_t n, F&& fn) const {
    thread_pool::instance().run(n, threads, std::forward<F>(fn), runner);
  }
};

}  // namespace semfocus::backend::simd
