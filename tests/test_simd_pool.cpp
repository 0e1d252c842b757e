// SPDX-License-Identifier: MIT
// The SIMD backend's worker pool: every task runs once, slots stay in range, exceptions reach the
// caller, and an ordered handshake cannot hang on a task that threw.
#if defined(SEMFOCUS_HAS_XSIMD)
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <semfocus/semfocus.hpp>

namespace bs = semfocus::backend::simd;
using semfocus::index_t;

TEST_CASE("simd pool: every task exactly once, slots below the thread count") {
  for (const int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> runs(1000);
    std::atomic<int> bad_slot{0};
    bs::thread_pool::instance().run(1000, threads, [&](index_t t, int slot) {
      runs[std::size_t(t)].fetch_add(1);
      if (slot < 0 || slot >= threads) bad_slot.fetch_add(1);
    });
    int wrong = 0;
    for (auto& r : runs) wrong += r.load() != 1;
    CHECK(wrong == 0);
    CHECK(bad_slot.load() == 0);
  }
}

TEST_CASE("simd pool: ordered turns give the sequential order on any thread count") {
  for (const int threads : {1, 2, 4}) {
    std::atomic<index_t> turn{0};
    std::vector<index_t> order;
    bs::thread_pool::instance().run(64, threads, [&](index_t t, int) {
      bs::wait_turn(turn, t);
      order.push_back(t);  // serialised by the turn
      turn.store(t + 1, std::memory_order_release);
    });
    REQUIRE(order.size() == 64);
    bool ascending = true;
    for (std::size_t x = 0; x < order.size(); ++x) ascending = ascending && order[x] == index_t(x);
    CHECK(ascending);
  }
}

TEST_CASE("simd pool: an exception reaches the caller, and waiting tasks do not hang") {
  std::atomic<index_t> turn{0};
  auto job = [&](index_t t, int) {
    if (t == 3) throw std::runtime_error("task 3");
    bs::wait_turn(turn, t);  // tasks after 3 would wait forever without the failure flag
    if (turn.load() == t) turn.store(t + 1, std::memory_order_release);
  };
  CHECK_THROWS_WITH_AS(bs::thread_pool::instance().run(16, 2, job), "task 3", std::runtime_error);
  // The pool is usable afterwards.
  std::atomic<int> count{0};
  bs::thread_pool::instance().run(10, 2, [&](index_t, int) { count.fetch_add(1); });
  CHECK(count.load() == 10);
}

TEST_CASE("simd tag: thread count and workspace") {
  CHECK(semfocus::exec::simd.with_threads(3).resolved_threads() == 3);
  CHECK(semfocus::exec::simd.resolved_threads() >= 1);
  CHECK_THROWS_AS(semfocus::exec::simd.with_threads(-1), semfocus::invalid_argument);
  semfocus::simd_workspace ws;
  CHECK(semfocus::exec::simd.with_workspace(ws).workspace == &ws);
  void* p = ws.get(2, 1000);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % semfocus::simd_workspace::alignment == 0);
  CHECK(ws.bytes() >= 1000);
  CHECK(ws.get(2, 10) == p);  // no reallocation when it fits
  ws.release();
  CHECK(ws.bytes() == 0);
}
#endif
