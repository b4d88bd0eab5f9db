// SPDX-License-Identifier: Apache-2.0
// progress.h - a progress line on stderr (tensors, bytes, rate, ETA) while a job runs, only
// when stderr is a terminal; fed by the job's progress callback. Its words:
// moereg/exec/progress_text.h.
#pragma once

#include <cstddef>
#include <string>

#include "moereg/app/convert.h"

namespace moereg::cli {

class progress_line {
 public:
  explicit progress_line(std::string what);
  // Prints `p` over the previous line (the last one, p.final, ends it).
  void operator()(const app::convert_progress& p);

 private:
  std::string what_;
  bool enabled_;
  std::size_t last_width_ = 0;
  double last_seconds_ = -1;
};

}  // namespace moereg::cli
