// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "semfocus/core/error.hpp"

namespace semfocus {

/// \brief Reusable scratch memory of the SIMD backend: one growing, 64-byte aligned arena per
/// worker thread plus shared per-call buffers (packed operands, saved statistics). Pass one to
/// `exec::simd.with_workspace(ws)` to reuse memory across calls (first touch of fresh memory
/// costs about a microsecond per page); without one, each calling thread reuses a thread_local
/// workspace. Not thread-safe: one workspace per concurrently running call. Memory only grows
/// until release().
class simd_workspace {
 public:
  simd_workspace() = default;
  simd_workspace(const simd_workspace&) = delete;
  simd_workspace& operator=(const simd_workspace&) = delete;
  simd_workspace(simd_workspace&&) noexcept = default;
  simd_workspace& operator=(simd_workspace&&) noexcept = default;

  /// \brief Bytes currently held (all arenas).
  std::size_t bytes() const noexcept {
    std::size_t total = 0;
    for (const arena& a : arenas_) total += a.capacity;
    return total;
  }

  /// \brief Frees every arena.
  void release() noexcept {
    arenas_.clear();
    lists.clear();
  }

  /// \brief Arena `slot` with at least `size` bytes, 64-byte aligned; contents unspecified.
  /// Slots are independent, so concurrent workers may each use their own.
  void* get(std::size_t slot, std::size_t size) {
    if (arenas_.size() <= slot) arenas_.resize(slot + 1);
    arena& a = arenas_[slot];
    if (a.capacity < size) {
      const std::size_t cap = round_up(std::max(size, a.capacity + a.capacity / 2));
      a.data.reset(static_cast<std::byte*>(::operator new (cap, std::align_val_t{alignment})));
      a.capacity = cap;
    }
    return a.data.get();
  }

  /// \brief Makes sure slots [0, n) exist, so that concurrent get(slot) never reallocates the
  /// slot table.
  void reserve_slots(std::size_t n) {
    if (arenas_.size() < n) arenas_.resize(n);
  }

  /// \brief Backend scratch: per-task lists of kept keys (capacity reused across calls).
  std::vector<std::vector<std::uint32_t>> lists;

  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t round_up(std::size_t n) noexcept {
    return (n + alignment - 1) / alignment * alignment;
  }

 private:
  struct aligned_delete {
    void operator()(std::byte* p) const noexcept {
      ::operator delete (p, std::align_val_t{alignment});
    }
  };
  struct arena {
    std::unique_ptr<std::byte, aligned_delete> data;
    std::size_t capacity = 0;
  };
  std::vector<arena> arenas_;
};

}  // namespace semfocus

namespace semfocus::exec {

/// \brief Where the SIMD backend's worker threads come from. Empty (the default): the backend's
/// own process-wide pool of sleeping threads. Set: a host framework's pool, so that two pools
/// never compete for the same cores (semfocus_torch passes PyTorch's at::parallel_for, whose
/// threads are already awake between the operators of a model).
///
/// launch(state, n, body, body_state) must call body(body_state, s) exactly once for every slot
/// s in [0, n) and return when all calls have returned; the calls may run concurrently (at most
/// n threads help) or one after another on fewer threads, in any order. body never throws (the
/// backend rethrows a task's exception on the calling thread after launch returns). A trivially
/// copyable value; the caller keeps `state` alive for as long as the executor is used.
struct simd_runner {
  void (*launch)(void* state, int n, void (*body)(void* body_state, int slot),
                 void* body_state) = nullptr;
  void* state = nullptr;

  explicit operator bool() const noexcept { return launch != nullptr; }
};

/// \brief The SIMD CPU backend (backend/simd): xsimd kernels for the arch the translation unit is
/// compiled for (AVX-512, AVX2, SSE, NEON, ...), multi-threaded over batch x heads x row blocks
/// (forward) and key blocks (backward). Results are bit-identical whatever the thread count.
///
/// A small value: `exec::simd` uses every hardware thread of its own pool and a thread_local
/// workspace; `exec::simd.with_threads(2).with_workspace(ws).with_runner(r)` chooses all three.
struct simd_t {
  /// Worker threads, the calling thread included; 0 = std::thread::hardware_concurrency().
  int threads = 0;
  /// Scratch memory to reuse; nullptr = the calling thread's thread_local workspace.
  simd_workspace* workspace = nullptr;
  /// The worker threads' source; empty = the backend's own pool.
  simd_runner runner{};

  /// \brief A copy running on n threads (n >= 1; 0 = all hardware threads).
  /// \throws invalid_argument if n < 0.
  simd_t with_threads(int n) const {
    detail::require(n >= 0, "semfocus::exec::simd_t::with_threads: n must be >= 0, got ", n);
    simd_t s = *this;
    s.threads = n;
    return s;
  }

  /// \brief A copy using `ws` for scratch memory (ws must outlive the calls).
  simd_t with_workspace(simd_workspace& ws) const noexcept {
    simd_t s = *this;
    s.workspace = &ws;
    return s;
  }

  /// \brief A copy whose calls run their tasks through `r` (see simd_runner) on up to
  /// resolved_threads() slots.
  simd_t with_runner(simd_runner r) const noexcept {
    simd_t s = *this;
    s.runner = r;
    return s;
  }

  /// \brief The thread count a call will use (>= 1).
  int resolved_threads() const noexcept {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }
};

/// \brief The SIMD backend with default settings.
inline constexpr simd_t simd{};

}  // namespace semfocus::exec
