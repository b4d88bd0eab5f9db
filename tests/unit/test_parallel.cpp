// SPDX-License-Identifier: Apache-2.0
// run_ordered reports the first failing item in plan order whatever the thread timing, stops
// starting later items after a failure, and counts the CPUs this process may use.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/base/parallel.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_parallel {
namespace {

std::string failure_of(const ordered_run& run, const std::function<void(std::size_t, unsigned)>& body) {
  try {
    run_ordered(run, body);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no failure)";
}

}  // namespace

TEST(RunOrdered, ReportsTheFirstFailingItemInPlanOrderWhateverTheTiming) {
  // Item 37 fails last in time (it sleeps first); 120 and 150 fail at once. The first in
  // time would be 120 or 150 on any run with more than one thread.
  for (unsigned threads : {1u, 2u, 3u, 4u, 8u, 16u})
    for (int round = 0; round < 5; ++round) {
      ordered_run run;
      run.items = 200;
      run.threads = threads;
      std::string msg = failure_of(run, [](std::size_t i, unsigned) {
        if (i == 37) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          throw error("item 37");
        }
        if (i == 120 || i == 150) throw error("item " + std::to_string(i));
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      });
      EXPECT_EQ(msg, "item 37") << threads << " threads, round " << round;
    }
}

TEST(RunOrdered, RankDecidesWhichFailureIsReported) {
  // The work list is interleaved (as the executor's windows of shards are); the plan order is
  // the rank, here the reverse of the list.
  for (unsigned threads : {1u, 2u, 5u}) {
    ordered_run run;
    run.items = 200;
    run.threads = threads;
    run.rank = [](std::size_t i) { return 199 - i; };
    std::string msg = failure_of(run, [](std::size_t i, unsigned) {
      if (i == 5 || i == 190) throw error("item " + std::to_string(i));
    });
    EXPECT_EQ(msg, "item 190") << threads << " threads";
  }
}

TEST(RunOrdered, StopsStartingItemsAfterAFailure) {
  std::atomic<int> started{0};
  ordered_run run;
  run.items = 1000;
  run.threads = 1;
  EXPECT_EQ(failure_of(run, [&](std::size_t i, unsigned) {
              ++started;
              if (i == 10) throw error("item 10");
            }),
            "item 10");
  EXPECT_EQ(started.load(), 11);

  // With several threads, only the items already taken when the failure is seen run on.
  started = 0;
  run.threads = 4;
  EXPECT_EQ(failure_of(run, [&](std::size_t i, unsigned) {
              ++started;
              if (i == 10) throw error("item 10");
              std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }),
            "item 10");
  EXPECT_LT(started.load(), 100);
}

TEST(RunOrdered, EveryItemRunsOnceAndWorkersAreInRange) {
  std::vector<std::atomic<int>> seen(500);
  std::atomic<unsigned> max_worker{0};
  ordered_run run;
  run.items = seen.size();
  run.threads = 7;
  run_ordered(run, [&](std::size_t i, unsigned w) {
    ++seen[i];
    unsigned m = max_worker.load();
    while (w > m && !max_worker.compare_exchange_weak(m, w)) {
    }
  });
  for (auto& s : seen) EXPECT_EQ(s.load(), 1);
  EXPECT_LT(max_worker.load(), 7u);
}

TEST(ResolveThreads, ZeroMeansUsableCpusAndOutOfRangeIsAUsageError) {
  EXPECT_EQ(resolve_threads(0), usable_cpus());
  EXPECT_EQ(resolve_threads(3), 3u);
  EXPECT_THROW(resolve_threads(-4), usage_error);
  EXPECT_THROW(resolve_threads(100000), usage_error);
  try {
    resolve_threads(-4);
  } catch (const usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("--threads -4: expected 1.."), std::string::npos) << e.what();
  }
}

TEST(UsableCpus, FollowsTheAffinityMask) {
  // hardware_concurrency ignores taskset and cpusets; usable_cpus must not.
  unsigned inside = 0;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    cpu_set_t mine;
    CPU_ZERO(&mine);
    ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mine)) {
        CPU_SET(c, &one);
        break;
      }
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    inside = usable_cpus();
  });
  t.join();
  EXPECT_EQ(inside, 1u);
}

}  // namespace test_parallel
