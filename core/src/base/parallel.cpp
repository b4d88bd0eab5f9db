// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/parallel.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

#include "moereg/base/error.h"

namespace moereg {

namespace {

// CPUs the cgroup's quota allows (rounded up), or 0 when no quota is set or readable.
unsigned cgroup_quota_cpus() {
  // cgroup v2: "max 100000" or "<quota> <period>" in the process's own cgroup.
  std::string rel;
  {
    std::ifstream cg("/proc/self/cgroup");
    std::string line;
    while (std::getline(cg, line))
      if (line.rfind("0::", 0) == 0) rel = line.substr(3);
  }
  for (const std::string& dir : {"/sys/fs/cgroup" + rel, std::string("/sys/fs/cgroup")}) {
    std::ifstream f(dir + "/cpu.max");
    std::string quota;
    double period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      double q = std::strtod(quota.c_str(), nullptr);
      if (q > 0) return static_cast<unsigned>(std::ceil(q / period));
    }
  }
  // cgroup v1.
  std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  long long quota = -1, period = 0;
  if (q >> quota && p >> period && quota > 0 && period > 0)
    return static_cast<unsigned>((quota + period - 1) / period);
  return 0;
}

}  // namespace

unsigned usable_cpus() {
  // Not cached: the calling thread's mask is what counts, and reading it costs a few system
  // calls once per job.
  unsigned n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = static_cast<unsigned>(CPU_COUNT(&set));
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  if (unsigned quota = cgroup_quota_cpus(); quota > 0) n = std::min(n, quota);
  return std::max(1u, n);
}

unsigned resolve_threads(int requested, const std::string& what) {
  if (requested == 0) return usable_cpus();
  if (requested < 0 || requested > max_threads)
    throw usage_error(what + " " + std::to_string(requested) + ": expected 1.." + std::to_string(max_threads) +
                      ", or 0 for the CPUs this process may use (" + std::to_string(usable_cpus()) + ")");
  return static_cast<unsigned>(requested);
}

void run_ordered(const ordered_run& run, const std::function<void(std::size_t, unsigned)>& body) {
  if (run.items == 0) return;
  auto rank = [&](std::size_t i) { return run.rank ? run.rank(i) : i; };
  constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  std::atomic<std::size_t> next{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  std::size_t failed_rank = none, failed_item = none;
  std::atomic<std::size_t> cutoff{none};  // items ranked above this are not started

  auto record = [&](std::size_t item, std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(failure_mutex);
    std::size_t r = rank(item);
    if (!failure || r < failed_rank || (r == failed_rank && item < failed_item)) {
      failure = e;
      failed_rank = r;
      failed_item = item;
      cutoff = r;
    }
  };
  auto worker = [&](unsigned w) {
    for (std::size_t i; (i = next++) < run.items;) {
      if (rank(i) > cutoff.load()) continue;
      try {
        body(i, w);
      } catch (...) {
        record(i, std::current_exception());
      }
    }
  };

  const unsigned threads = static_cast<unsigned>(std::min<std::size_t>(std::max(1u, run.threads), run.items));
  std::vector<std::thread> pool;
  pool.reserve(threads);
  try {
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  } catch (const std::system_error& e) {
    // Stop the started workers before they take more items, then report (the calling thread
    // is worker 1, so the first thread started is number 2).
    cutoff = 0;
    next = run.items;
    for (auto& t : pool) t.join();
    throw error("cannot start thread " + std::to_string(pool.size() + 2) + " of " + std::to_string(threads) + ": " +
                e.code().message() + "; use fewer threads (--threads N), or raise the process limit (ulimit -u)");
  }
  worker(0);
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace moereg
