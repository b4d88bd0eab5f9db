// cpu_prefetch.h - software prefetch of the weight rows a work item reads next, spread over
// the calls that compute with the current ones.
#pragma once

#include <algorithm>
#include <cstdint>

namespace moereg::cpu {

// Prefetches (into L2) the K segment of the next weight tile's rows, a share per row tile of
// the current one, so the next tile's first row tile does not wait on DRAM: items with a
// few dozen rows are otherwise bound by the latency of starting each short weight stream.
// With a single row tile (T = 1) it stays off: the weight streams are long, the hardware
// prefetcher keeps up, and a burst of software prefetches only got in its way (measured).
class next_tile_prefetch {
 public:
  // rows consecutive weight rows from `first` (already offset to the pass), `stride` bytes
  // apart, `seg` bytes each; spread over `steps` calls of step().
  next_tile_prefetch(const char* first, std::int64_t stride, std::int64_t rows, std::int64_t seg, std::int64_t steps)
      : first_(first), stride_(stride), lines_per_row_((seg + 63) / 64), total_(first && steps > 1 ? rows * lines_per_row_ : 0),
        per_step_((total_ + steps - 1) / std::max<std::int64_t>(1, steps)) {}
  void step() {
    const std::int64_t end = std::min(total_, done_ + per_step_);
    for (; done_ < end; ++done_)
      __builtin_prefetch(first_ + (done_ / lines_per_row_) * stride_ + (done_ % lines_per_row_) * 64, 0, 2);
  }

 private:
  const char* first_;
  std::int64_t stride_, lines_per_row_, total_, per_step_, done_ = 0;
};

}  // namespace moereg::cpu
