// SPDX-License-Identifier: Apache-2.0
// read_bandwidth.h - (in-tree) the host's read bandwidth and last-level cache, the two numbers
// a bench's "of bw" column needs: the ceiling of a weight stream, and how many bytes a layer
// must stream per cycle of repetitions before the cache stops serving them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moereg::app {

struct read_pattern_rate {
  std::string name;  // e.g. "4 streams, prefetch 2 KiB"
  double bytes_per_second = 0;  // the median of its timed reads
  double spread = 1;            // its slowest read's time over its fastest's
};

struct read_bandwidth {
  double best = 0;                          // the fastest pattern: the ceiling "of bw" divides by
  std::vector<read_pattern_rate> patterns;  // each pattern's median of five
  // Non-empty: why `best` cannot be this machine's memory read rate (doubt_about); the bench
  // then prints no "of bw" rather than a wrong one.
  std::string doubt;
};

// Reads a buffer of eight times the last-level cache (256 MiB to 2 GiB) with `threads` pinned
// threads, each streaming its own first-touched share, in several patterns (one stream or
// four interleaved streams per thread, with and without software prefetch into L1, one also
// prefetching into L2 far ahead), five timed reads each (time_phases); each pattern's rate is
// the median of its five (one stalled or mis-timed read does not decide it), and `doubt` says
// when the result is not believable.
read_bandwidth measure_read_bandwidth(int threads);
inline constexpr int read_reps = 5;  // timed reads per pattern

// Runs `threads` threads, each pinned to one of the CPUs this process may use (round robin)
// and first running setup(thread), then `phases` timed phases in which every thread runs
// work(thread, phase); returns each phase's seconds, from the moment the last thread was ready
// for it to the moment the last finished it. The threads take the times themselves (the last
// to arrive at each barrier reads the clock before any is released), so the figure does not
// depend on when the calling thread gets a CPU.
std::vector<double> time_phases(int threads, std::size_t phases, const std::function<void(int)>& setup,
                                const std::function<void(int, std::size_t)>& work);

// A pattern's rate from the seconds its timed reads of `bytes` took: the median rate, and the
// slowest time over the fastest.
read_pattern_rate summarize_reads(std::string name, double bytes, std::vector<double> seconds);

// Why a probe result cannot be a memory read rate, or "" when it can: more than
// max_thread_read_rate per reading thread (no core streams that from memory: the buffer is
// eight times the last-level cache, so a higher figure means the clock or the timing is off),
// or the best pattern's five reads spread more than max_read_spread-fold (the machine was
// busy, or its clock unsteady). Seen on a 16-core VM: 0.17 to 6.45 TB/s from one run to the
// next (session 14, docs/bench-cpu.md).
inline constexpr double max_thread_read_rate = 150e9;
inline constexpr double max_read_spread = 2.0;
std::string doubt_about(const read_bandwidth& bw, int threads);

// The last-level cache this process can fill: the sizes of the distinct L3 instances of the
// CPUs it may run on (sysfs), else sysconf's L3 size, else 0 (unknown).
std::uint64_t last_level_cache_bytes();

}  // namespace moereg::app
