// SPDX-License-Identifier: Apache-2.0
#include "progress.h"

#include <algorithm>
#include <cstdio>

#include "command.h"
#include "moereg/exec/progress_text.h"

namespace moereg::cli {

progress_line::progress_line(std::string what) : what_(std::move(what)), enabled_(stderr_is_tty()) {}

void progress_line::operator()(const app::convert_progress& p) {
  if (!enabled_ || (!p.final && last_seconds_ >= 0 && p.seconds - last_seconds_ < 0.5)) return;  // twice a second
  last_seconds_ = p.seconds;
  progress_counts c;
  c.tensors = p.tensors;
  c.total_tensors = p.total_tensors;
  c.bytes = p.bytes;
  c.total_bytes = p.total_bytes;
  // Padding clears what a longer previous line left behind; the cursor goes back with \r.
  std::string text = progress_text(what_, c, p.seconds, p.final);
  std::fprintf(stderr, "\r%-*s%s", static_cast<int>(last_width_), text.c_str(), p.final ? "\n" : "");
  last_width_ = std::max(last_width_, text.size());
  std::fflush(stderr);
}

}  // namespace moereg::cli
