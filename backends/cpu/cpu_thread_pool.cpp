// SPDX-License-Identifier: Apache-2.0
#include "cpu_thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace moereg::cpu {

thread_pool::thread_pool(int threads, std::vector<int> thread_cpu, std::vector<int> thread_node)
    : thread_node_(std::move(thread_node)) {
  for (int n : thread_node_)
    if (n < 0 || n >= max_nodes) throw std::invalid_argument("thread pool: node " + std::to_string(n) + " out of range");
  thread_node_.resize(static_cast<std::size_t>(std::max(1, threads)), 0);
  for (auto& a : node_next_) a.store(0, std::memory_order_relaxed);
  for (int i = 1; i < threads; ++i) {
    const int cpu = static_cast<std::size_t>(i) < thread_cpu.size() ? thread_cpu[static_cast<std::size_t>(i)] : -1;
    workers_.emplace_back([this, i, cpu] {
      if (cpu >= 0 && cpu < CPU_SETSIZE) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        ::pthread_setaffinity_np(::pthread_self(), sizeof one, &one);  // best effort: a CPU gone offline runs unpinned
      }
      work(i);
    });
  }
}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::drain(int thread) {
  if (nodes_ > 0) {
    const int home = thread_node_[static_cast<std::size_t>(thread)];
    for (int k = 0; k < nodes_; ++k) {
      const int n = (home + k) % nodes_;
      for (;;) {
        const std::int64_t i = node_next_[n].fetch_add(1, std::memory_order_relaxed);
        if (i >= node_end_[n]) break;
        fn_(context_, i, thread);
      }
    }
    return;
  }
  for (;;) {
    std::int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= items_) return;
    fn_(context_, i, thread);
  }
}

void thread_pool::run(std::int64_t items, item_fn fn, void* context) {
  if (items <= 0) return;
  if (workers_.empty() || items == 1) {
    for (std::int64_t i = 0; i < items; ++i) fn(context, i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    context_ = context;
    items_ = items;
    nodes_ = 0;
    next_.store(0, std::memory_order_relaxed);
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  start_.notify_all();
  drain(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return busy_ == 0; });
}

void thread_pool::run_by_node(std::int64_t items, item_fn fn, void* context, const std::int64_t* node_begin, int nodes) {
  if (items <= 0) return;
  if (workers_.empty() || nodes <= 1 || nodes > max_nodes) {
    run(items, fn, context);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    context_ = context;
    items_ = items;
    nodes_ = nodes;
    for (int n = 0; n < nodes; ++n) {
      node_next_[n].store(node_begin[n], std::memory_order_relaxed);
      node_end_[n] = node_begin[n + 1];
    }
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  start_.notify_all();
  drain(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return busy_ == 0; });
}

void thread_pool::work(int thread) {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    drain(thread);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--busy_ == 0) done_.notify_one();
  }
}

}  // namespace moereg::cpu
