// SPDX-License-Identifier: Apache-2.0
// cpu_thread_pool.h - a persistent pool: threads start at create, each forward hands them
// a flat list of work items through one function pointer (no allocation per call).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace moereg::cpu {

class thread_pool {
 public:
  // `threads` counts the calling thread: threads - 1 workers are started.
  explicit thread_pool(int threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(context, item, thread_index) for item in [0, items), items claimed one at a
  // time by whichever thread is free; returns when all are done. Not reentrant.
  using item_fn = void (*)(void* context, std::int64_t item, int thread);
  void run(std::int64_t items, item_fn fn, void* context);

 private:
  void work(int thread);
  void drain(int thread);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  item_fn fn_ = nullptr;
  void* context_ = nullptr;
  std::int64_t items_ = 0;
  std::atomic<std::int64_t> next_{0};
};

}  // namespace moereg::cpu
