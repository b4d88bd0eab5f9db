// SPDX-License-Identifier: Apache-2.0
// cpu_thread_pool.h - a persistent pool: threads start at create, each forward hands them
// a flat list of work items through one function pointer (no allocation per call). A forward
// is several runs back to back (sort, gate/up, down, sum), so between runs the threads spin
// for a short while (spin_us, yielding the core as they do) before they sleep on the condition
// variable: a run that follows within it starts without a futex wake per thread, which at
// decode sizes cost more than the work (docs/bench-cpu.md, session 13: the phases at T = 1).
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
  // `threads` counts the calling thread: threads - 1 workers are started. With thread_cpu
  // (one per thread), worker t pins itself to CPU thread_cpu[t] (the caller, thread 0, is the
  // host's and stays as it is); thread_node (one per thread) says whose items each takes
  // first in run_by_node.
  // spin_us: how long an idle thread polls for the next run before it sleeps (0: at once).
  explicit thread_pool(int threads, std::vector<int> thread_cpu = {}, std::vector<int> thread_node = {},
                       int spin_us = 100);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(context, item, thread_index) for item in [0, items), items claimed one at a
  // time by whichever thread is free; returns when all are done. Not reentrant.
  using item_fn = void (*)(void* context, std::int64_t item, int thread);
  void run(std::int64_t items, item_fn fn, void* context);
  // The same with the items grouped by node: node n's are [node_begin[n], node_begin[n + 1])
  // (node_begin has nodes + 1 entries). Each thread drains its own node's items first, then
  // helps the others.
  void run_by_node(std::int64_t items, item_fn fn, void* context, const std::int64_t* node_begin, int nodes);

 private:
  void work(int thread);
  void drain(int thread);
  // Hands the items to every thread (by node when nodes > 0), works on them, and returns when
  // all are done.
  void dispatch(std::int64_t items, item_fn fn, void* context, const std::int64_t* node_begin, int nodes);
  void wait_done();  // until every worker has finished the current run
  template <class Ready>
  bool spin_until(Ready ready) const;  // polls ready() for up to spin_ (true: it held)

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  // Written under mutex_ (so a sleeper cannot miss a change), read by spinners without it.
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> busy_{0};
  std::atomic<bool> stop_{false};
  item_fn fn_ = nullptr;
  void* context_ = nullptr;
  std::int64_t items_ = 0;
  std::atomic<std::int64_t> next_{0};
  // run_by_node: per node the next item and the end (nodes_ = 0 in plain run).
  static constexpr int max_nodes = 64;
  int nodes_ = 0;
  std::atomic<std::int64_t> node_next_[max_nodes];
  std::int64_t node_end_[max_nodes] = {};
  std::vector<int> thread_node_;
  std::int64_t spin_ns_ = 0;
};

}  // namespace moereg::cpu
