// SPDX-License-Identifier: Apache-2.0
// parallel.h - worker threads for jobs made of ordered items, with failures reported the
// same way whatever the timing.
//
// A conversion runs the same hook on many tensors at once; when several of them fail, the
// message a user sees must not depend on which thread lost the race. run_ordered therefore
// ranks items (plan order, by default the item index), stops starting items ranked after the
// first failure it sees, lets the items already running finish, and rethrows the failure of
// the lowest-ranked failing item. Since every item ranked below a failure is still run, that
// is the first failing item in plan order, on every run and with any number of threads.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace moereg {

// CPUs the calling thread may run on: its affinity mask (taskset, cpusets), lowered to the cgroup's
// CPU quota where one is set (cgroup v2 cpu.max, v1 cpu.cfs_quota_us). At least 1.
unsigned usable_cpus();

// The thread count to use for a request: 0 (or negative) means usable_cpus(); otherwise the
// request. `what` names the option in the message when the request is out of range
// (1..max_threads).
constexpr int max_threads = 4096;
unsigned resolve_threads(int requested, const std::string& what = "--threads");

struct ordered_run {
  std::size_t items = 0;
  unsigned threads = 1;  // at most `items` are started
  // Plan position of item i, when it differs from i (interleaved work lists). Lower runs first
  // in plan order; equal ranks keep the lower item index.
  std::function<std::size_t(std::size_t)> rank;
};

// Runs body(item, worker) for every item, items taken in index order by `threads` workers
// (worker 0 is the calling thread; worker < threads, for per-worker scratch). Throws the
// failure of the first failing item in plan order (see above). A thread that cannot be
// started is an error like any other: the started ones are stopped and joined first.
void run_ordered(const ordered_run& run, const std::function<void(std::size_t item, unsigned worker)>& body);

}  // namespace moereg
