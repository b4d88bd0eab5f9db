// SPDX-License-Identifier: Apache-2.0
#include "cpu_thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

namespace moereg::cpu {

// Polls `ready` until it holds (true) or the spin time passes (false). Yields the core every
// few polls, so a spinning thread on an oversubscribed machine does not keep the thread it
// waits for from running.
template <class Ready>
bool thread_pool::spin_until(Ready ready) const {
  if (ready()) return true;
  if (spin_ns_ <= 0) return false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns_);
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
    if (i % 16 == 0) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}

thread_pool::thread_pool(int threads, std::vector<int> thread_cpu, std::vector<int> thread_node, int spin_us)
    : thread_node_(std::move(thread_node)), spin_ns_(std::int64_t{spin_us} * 1000) {
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
    stop_.store(true, std::memory_order_release);
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
  dispatch(items, fn, context, nullptr, 0);
}

void thread_pool::dispatch(std::int64_t items, item_fn fn, void* context, const std::int64_t* node_begin, int nodes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    context_ = context;
    items_ = items;
    nodes_ = nodes;
    next_.store(0, std::memory_order_relaxed);
    for (int n = 0; n < nodes; ++n) {
      node_next_[n].store(node_begin[n], std::memory_order_relaxed);
      node_end_[n] = node_begin[n + 1];
    }
    busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes the fields above to spinners
  }
  start_.notify_all();
  drain(0);
  wait_done();
}

void thread_pool::wait_done() {
  if (spin_until([this] { return busy_.load(std::memory_order_acquire) == 0; })) return;
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return busy_.load(std::memory_order_acquire) == 0; });
}

void thread_pool::run_by_node(std::int64_t items, item_fn fn, void* context, const std::int64_t* node_begin, int nodes) {
  if (items <= 0) return;
  if (workers_.empty() || nodes <= 1 || nodes > max_nodes) {
    run(items, fn, context);
    return;
  }
  dispatch(items, fn, context, node_begin, nodes);
}

void thread_pool::work(int thread) {
  std::uint64_t seen = 0;
  auto woken = [&] {
    return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
  };
  for (;;) {
    if (!spin_until(woken)) {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, woken);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    drain(thread);
    if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // a caller past its spin waits on done_
      done_.notify_one();
    }
  }
}

}  // namespace moereg::cpu
