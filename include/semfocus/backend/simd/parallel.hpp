// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "semfocus/backend/simd/exec.hpp"
#include "semfocus/config.hpp"

namespace semfocus::backend::simd {

/// \brief A process-wide pool of worker threads running one job at a time. Between jobs a worker
/// polls for about 50 microseconds, then sleeps on a condition variable (and so does the caller
/// waiting for the workers): a training step's many small jobs then need no wake-up.
///
/// run(n_tasks, threads, fn) calls fn(task, slot) for every task in [0, n_tasks) on `threads`
/// threads (the caller is slot 0, workers slots 1..threads-1), or, given a runner
/// (exec::simd_runner), on the runner's threads as slots 0..threads-1. On the own threads, slot s
/// runs tasks s, s + threads, s + 2 threads, ... in that order, so that the chunk of rows a slot
/// wrote in one pass is the one it reads in the next, still in its core's cache (the nn layers'
/// passes: 2-3% more training steps/s on 2 cores than tasks claimed from a counter); on a
/// runner's threads (which may run the slots one after another) tasks are claimed in increasing
/// order from one atomic counter. Either way a task may wait for a smaller task of the same job
/// (the ordered reductions of backward): the smallest unfinished task is running or is next in
/// its slot, and never waits, hence no deadlock. If the pool is busy (a concurrent call from
/// another thread, or a nested call), the caller runs every task itself; results never depend on
/// this. The first exception thrown by fn is rethrown on the caller after every task has stopped;
/// once a task has thrown, no new task starts and wait_turn stops waiting, so ordered tasks cannot
/// hang on a task that never ran.
class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }

  template <class F>
  void run(index_t n_tasks, int threads, F&& fn, const exec::simd_runner& runner = {}) {
    if (n_tasks <= 0) return;
    const int want = static_cast<int>(std::min<index_t>(threads, n_tasks));
    std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
    if (want <= 1 || !busy.owns_lock()) {
      for (index_t t = 0; t < n_tasks; ++t) fn(t, 0);
      return;
    }
    std::function<void(index_t, int)> task = [&fn](index_t t, int slot) { fn(t, slot); };
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &task;
      n_tasks_ = n_tasks;
      next_.store(0, std::memory_order_relaxed);
      error_ = nullptr;
      failed_.store(false, std::memory_order_relaxed);
      active_ = participants_ = runner ? 0 : want - 1;  // the own workers taking part
      stride_ = runner ? 0 : want;
      if (!runner) {
        while (static_cast<int>(workers_.size()) < want - 1)
          workers_.emplace_back([this, id = static_cast<int>(workers_.size()) + 1] { loop(id); });
        generation_.fetch_add(1, std::memory_order_release);
      }
    }
    if (runner) {  // the same claim loop, on the runner's threads (slots 0..want-1)
      runner.launch(
          runner.state, want,
          [](void* self, int slot) { static_cast<thread_pool*>(self)->work(slot); }, this);
    } else {
      cv_.notify_all();
      work(0);
    }
    spin_until([&] { return active_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return active_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  /// \brief Whether a task of the running job has thrown.
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

 private:
  thread_pool() = default;

  // Polls `done` for at most about 50 microseconds (then the caller sleeps on its condition).
  template <class Done>
  static void spin_until(Done done) noexcept {
    const auto limit = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    for (int i = 1; !done(); ++i) {
      if (i % 64 == 0 && std::chrono::steady_clock::now() > limit) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }

  void work(int slot) {
    if (stride_ > 0) {  // the own threads: tasks slot, slot + stride, ...
      for (index_t t = slot; t < n_tasks_ && !failed(); t += stride_) run_task(t, slot);
      return;
    }
    for (;;) {
      const index_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks_) return;
      run_task(t, slot);
    }
  }

  void run_task(index_t t, int slot) {
    try {
      (*job_)(t, slot);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
      next_.store(n_tasks_, std::memory_order_relaxed);  // stop handing out tasks
      failed_.store(true, std::memory_order_release);
    }
  }

  void loop(int id) {
    std::uint64_t seen = 0;
    for (;;) {
      // A step's jobs come back to back: poll a while before sleeping on the condition variable,
      // whose wake-up (a futex, an interrupt between cores) can cost more than a job at small
      // sizes. The decision is then taken under the mutex, as without the poll.
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || (generation_ != seen && job_ && id <= participants_); });
        if (stop_) return;
        seen = generation_;
      }
      work(id);
      std::lock_guard<std::mutex> lk(m_);
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::function<void(index_t, int)>* job_ = nullptr;
  index_t n_tasks_ = 0;
  std::atomic<index_t> next_{0};
  std::atomic<int> active_{0};  // written under m_, polled without it
  int participants_ = 0;
  index_t stride_ = 0;  // > 0: slot s runs tasks s + i stride_ (own threads); 0: claimed in order
  std::atomic<std::uint64_t> generation_{0};  // written under m_, polled without it
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  bool stop_ = false;
};

/// \brief Waits until `turn` equals `value` (acquire): the ordered-reduction handshake. Returns
/// early if a task of the job has thrown (the job's results are then discarded).
inline void wait_turn(const std::atomic<index_t>& turn, index_t value) noexcept {
  for (int spins = 0; turn.load(std::memory_order_acquire) != value; ++spins) {
    if (spins > 64) std::this_thread::yield();
    if (thread_pool::instance().failed()) return;
  }
}

}  // namespace semfocus::backend::simd
