// SPDX-License-Identifier: Apache-2.0
// progress_text.h - the words of the progress line a command shows while a plan executes.
//
// "convert: 12/69 tensors, 1.20/57.00 GB, 134 MB/s, ETA 7 min 05 s". Bytes done and the total
// share the unit the total needs (decimal, as format_bytes and format_rate in
// moereg/base/units.h, the only unit system moereg prints), so the line keeps its units from
// one update to the next. The rate and the ETA appear only once a rate is known (some bytes
// done in a measurable time); the final line says how long the whole took instead.
#pragma once

#include <cstdint>
#include <string>

namespace moereg {

struct progress_counts {
  std::uint64_t tensors = 0, total_tensors = 0;
  std::uint64_t bytes = 0, total_bytes = 0;
};

std::string progress_text(const std::string& what, const progress_counts& counts, double seconds, bool final);

}  // namespace moereg
