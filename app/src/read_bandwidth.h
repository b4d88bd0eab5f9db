// SPDX-License-Identifier: Apache-2.0
// read_bandwidth.h - (in-tree) the host's read bandwidth and last-level cache, the two numbers
// a bench's "of bw" column needs: the ceiling of a weight stream, and how many bytes a layer
// must stream per cycle of repetitions before the cache stops serving them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moereg::app {

struct read_pattern_rate {
  std::string name;  // e.g. "4 streams, prefetch 2 KiB"
  double bytes_per_second = 0;
};

struct read_bandwidth {
  double best = 0;                          // the fastest pattern: the ceiling "of bw" divides by
  std::vector<read_pattern_rate> patterns;  // each pattern's best of five
};

// Reads a buffer of eight times the last-level cache (256 MiB to 2 GiB) with `threads` pinned
// threads, each streaming its own first-touched share, in several patterns (one stream or
// four interleaved streams per thread, with and without software prefetch), best of five each.
read_bandwidth measure_read_bandwidth(int threads);

// The last-level cache this process can fill: the sizes of the distinct L3 instances of the
// CPUs it may run on (sysfs), else sysconf's L3 size, else 0 (unknown).
std::uint64_t last_level_cache_bytes();

}  // namespace moereg::app
