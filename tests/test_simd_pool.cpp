// SPDX-License-Identifier: MIT
// The SIMD backend's worker pool and host runners (exec::simd_runner): every task runs once,
// slots stay in range, exceptions reach the caller, an ordered handshake cannot hang on a task that
// threw, and a runner gives the own pool's bits.
#if defined(SEMFOCUS_HAS_XSIMD)
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include <semfocus/semfocus.hpp>

namespace bs = semfocus::backend::simd;
namespace sf = semfocus;
using semfocus::index_t;

namespace {

/// Host pools as a runner sees them: slots one after another in reverse order on the calling
/// thread, or each slot on its own std::thread. `launches` and `widest` record the calls.
struct test_runner {
  bool threaded = false;
  std::atomic<int> launches{0}, widest{0};

  static void launch(void* state, int n, void (*body)(void*, int), void* body_state) {
    auto& self = *static_cast<test_runner*>(state);
    self.launches.fetch_add(1);
    if (n > self.widest.load()) self.widest.store(n);
    if (!self.threaded) {
      for (int s = n - 1; s >= 0; --s) body(body_state, s);
      return;
    }
    std::vector<std::thread> helpers;
    for (int s = 1; s < n; ++s) helpers.emplace_back([=] { body(body_state, s); });
    body(body_state, 0);
    for (std::thread& t : helpers) t.join();
  }
  sf::exec::simd_runner runner() { return {&test_runner::launch, this}; }
};

/// Each case runs with the backend's own pool, then with both test runners.
template <class F>
void for_each_runner(F&& f) {
  f(sf::exec::simd_runner{}, "own pool");
  for (const bool threaded : {false, true}) {
    test_runner r;
    r.threaded = threaded;
    f(r.runner(), threaded ? "runner, threads" : "runner, in turn");
  }
}

}  // namespace

TEST_CASE("simd pool: every task exactly once, slots below the thread count") {
  for_each_runner([](const sf::exec::simd_runner& runner, const char* name) {
    INFO(name);
    for (const int threads : {1, 2, 3, 8}) {
      std::vector<std::atomic<int>> runs(1000);
      std::atomic<int> bad_slot{0};
      bs::thread_pool::instance().run(
          1000, threads,
          [&](index_t t, int slot) {
            runs[std::size_t(t)].fetch_add(1);
            if (slot < 0 || slot >= threads) bad_slot.fetch_add(1);
          },
          runner);
      int wrong = 0;
      for (auto& r : runs) wrong += r.load() != 1;
      CHECK(wrong == 0);
      CHECK(bad_slot.load() == 0);
    }
  });
}

TEST_CASE("simd pool: its own threads take the tasks round-robin by slot") {
  // Slot s runs tasks s, s + threads, ... (the same rows on the same core from pass to pass),
  // 1, 2, 3 and 8 threads on 2 cores (so also with more threads than cores).
  for (const int threads : {1, 2, 3, 8}) {
    std::vector<int> slot_of(100, -1);
    bs::thread_pool::instance().run(100, threads,
                                    [&](index_t t, int slot) { slot_of[std::size_t(t)] = slot; });
    int wrong = 0;
    for (std::size_t t = 0; t < slot_of.size(); ++t) wrong += slot_of[t] != int(t) % threads;
    CHECK(wrong == 0);
  }
}

TEST_CASE("simd pool: ordered turns give the sequential order on any thread count") {
  for_each_runner([](const sf::exec::simd_runner& runner, const char* name) {
    INFO(name);
    for (const int threads : {1, 2, 4}) {
      std::atomic<index_t> turn{0};
      std::vector<index_t> order;
      bs::thread_pool::instance().run(
          64, threads,
          [&](index_t t, int) {
            bs::wait_turn(turn, t);
            order.push_back(t);  // serialised by the turn
            turn.store(t + 1, std::memory_order_release);
          },
          runner);
      REQUIRE(order.size() == 64);
      bool ascending = true;
      for (std::size_t x = 0; x < order.size(); ++x)
        ascending = ascending && order[x] == index_t(x);
      CHECK(ascending);
    }
  });
}

TEST_CASE("simd pool: an exception reaches the caller, and waiting tasks do not hang") {
  std::atomic<index_t> turn{0};
  auto job = [&](index_t t, int) {
    if (t == 3) throw std::runtime_error("task 3");
    bs::wait_turn(turn, t);  // tasks after 3 would wait forever without the failure flag
    if (turn.load() == t) turn.store(t + 1, std::memory_order_release);
  };
  for_each_runner([&](const sf::exec::simd_runner& runner, const char* name) {
    INFO(name);
    turn.store(0);
    CHECK_THROWS_WITH_AS(bs::thread_pool::instance().run(16, 2, job, runner), "task 3",
                         std::runtime_error);
    // The pool is usable afterwards.
    std::atomic<int> count{0};
    bs::thread_pool::instance().run(
        10, 2, [&](index_t, int) { count.fetch_add(1); }, runner);
    CHECK(count.load() == 10);
  });
}

TEST_CASE("simd runner: a host pool gives the own pool's bits, forward and backward") {
  const sf::attention_shape s{3, 2, 70, 90, 16, 8};
  std::vector<double> q(std::size_t(s.q().size())), k(std::size_t(s.k().size())),
      v(std::size_t(s.v().size())), g(std::size_t(s.out().size()));
  std::uint64_t x = 7;
  for (auto* t : {&q, &k, &v, &g})
    for (double& e : *t)
      e = double((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 11) * 0x1p-53 - 0.5;
  auto run = [&](const auto& policy, const sf::exec::simd_t& ex) {
    std::vector<double> out(g.size()), dq(q.size()), dk(k.size()), dv(v.size());
    const sf::tensor_view<const double> Q(q.data(), s.q()), K(k.data(), s.k()), V(v.data(), s.v()),
        G(g.data(), s.out());
    const auto rec = sf::forward(ex, policy, Q, K, V, sf::tensor_view<double>(out.data(), s.out()));
    sf::backward(ex, policy, Q, K, V, sf::tensor_view<const double>(out.data(), s.out()), G, rec,
                 sf::tensor_view<double>(dq.data(), s.q()),
                 sf::tensor_view<double>(dk.data(), s.k()),
                 sf::tensor_view<double>(dv.data(), s.v()));
    return std::vector<std::vector<double>>{out, dq, dk, dv};
  };
  auto check = [&](const auto& policy) {
    const auto own = run(policy, sf::exec::simd.with_threads(3));
    for (const bool threaded : {false, true}) {
      test_runner r;
      r.threaded = threaded;
      const char* name = threaded ? "runner, threads" : "runner, in turn";
      INFO(name);
      CHECK(run(policy, sf::exec::simd.with_threads(3).with_runner(r.runner())) == own);
      CHECK(r.launches.load() > 0);
      CHECK(r.widest.load() == 3);
    }
  };
  check(sf::dense{});   // ordered reductions of the tiled backward (wait_turn)
  check(sf::top_k(5));  // the sparse backward's three phases
  check(sf::banded(9));
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
