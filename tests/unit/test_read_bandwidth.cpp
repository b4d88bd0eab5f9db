// SPDX-License-Identifier: Apache-2.0
// The bandwidth probe's summary of its timed reads and the doubt it attaches to a result that
// cannot be a memory read rate (a VM once gave 0.17-6.45 TB/s from one run to the next).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "read_bandwidth.h"

namespace moereg::app {
namespace {

// Each phase runs from the moment the last thread is ready to the moment the last is done: the
// slowest thread's work counts, the setup before the first phase does not.
TEST(ReadBandwidth, PhasesAreTimedFromTheLastReadyToTheLastDone) {
  using namespace std::chrono_literals;
  const std::vector<double> s = time_phases(
      3, 3, [](int t) { if (t == 1) std::this_thread::sleep_for(500ms); },
      [](int t, std::size_t phase) {
        if (phase == 0 && t == 2) std::this_thread::sleep_for(40ms);
        if (phase == 2) std::this_thread::sleep_for(20ms);
      });
  ASSERT_EQ(s.size(), 3u);
  EXPECT_GE(s[0], 0.040) << "thread 2's 40 ms are in phase 0";
  EXPECT_LT(s[0], 0.45) << "thread 1's 500 ms of setup are not";
  EXPECT_GE(s[1], 0.0);
  EXPECT_LT(s[1], 0.45);
  EXPECT_GE(s[2], 0.020);
}

TEST(ReadBandwidth, PatternRateIsTheMedianOfItsReads) {
  // One read mis-timed as far too fast and one stalled: neither decides the rate.
  const read_pattern_rate r = summarize_reads("4 streams", 1e9, {0.010, 0.0001, 0.011, 0.012, 0.5});
  EXPECT_EQ(r.name, "4 streams");
  EXPECT_DOUBLE_EQ(r.bytes_per_second, 1e9 / 0.011);
  EXPECT_DOUBLE_EQ(r.spread, 0.5 / 0.0001);
  const read_pattern_rate even = summarize_reads("1 stream", 2e9, {0.02, 0.01, 0.03, 0.04});
  EXPECT_DOUBLE_EQ(even.bytes_per_second, 2e9 / 0.025);
  EXPECT_DOUBLE_EQ(even.spread, 4.0);
  EXPECT_EQ(summarize_reads("none", 1e9, {}).bytes_per_second, 0.0);
}

read_bandwidth probe_of(std::vector<read_pattern_rate> patterns) {
  read_bandwidth bw;
  for (const auto& p : patterns) bw.best = std::max(bw.best, p.bytes_per_second);
  bw.patterns = std::move(patterns);
  return bw;
}

TEST(ReadBandwidth, BelievableResultsCarryNoDoubt) {
  // A 16-core server: 250 GB/s, steady reads.
  EXPECT_EQ(doubt_about(probe_of({{"1 stream", 180e9, 1.1}, {"4 streams", 250e9, 1.2}}), 16), "");
  // The development VM: 2 threads, 25 GB/s; a noisy but not broken pattern elsewhere.
  EXPECT_EQ(doubt_about(probe_of({{"1 stream", 25e9, 1.05}, {"4 streams", 17e9, 3.0}}), 2), "");
}

TEST(ReadBandwidth, ImpossibleRatesAndUnsteadyReadsAreDoubted) {
  // 6.45 TB/s over 16 threads: 403 GB/s a thread from a buffer eight times the cache.
  const std::string fast = doubt_about(probe_of({{"1 stream", 6.45e12, 1.1}}), 16);
  EXPECT_NE(fast.find("6450.0 GB/s over 16 threads is 403.1 GB/s per thread"), std::string::npos) << fast;
  EXPECT_NE(fast.find("the clock or the timing is off"), std::string::npos) << fast;
  // The best pattern's reads 5-fold apart.
  const std::string unsteady = doubt_about(probe_of({{"1 stream", 90e9, 1.2}, {"4 streams", 170e9, 5.0}}), 16);
  EXPECT_NE(unsteady.find("pattern '4 streams': its five timed reads spread 5.0-fold"), std::string::npos) << unsteady;
  EXPECT_EQ(doubt_about(read_bandwidth{}, 4), "no pattern was timed");
}

}  // namespace
}  // namespace moereg::app
