// SPDX-License-Identifier: Apache-2.0
#include "progress.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "command.h"
#include "moereg/exec/progress_text.h"

namespace moereg::cli {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

progress_line::progress_line(std::string what, const execute_progress& p) : what_(std::move(what)), p_(p), start_(now_seconds()) {
  if (!stderr_is_tty()) return;
  thread_ = std::thread([this] {
    while (!stop_) {
      print(false);
      for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

progress_line::~progress_line() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
    print(true);
  }
}

void progress_line::print(bool final) const {
  progress_counts c;
  c.tensors = p_.tensors.load();
  c.total_tensors = p_.total_tensors;
  c.bytes = p_.bytes.load();
  c.total_bytes = p_.total_bytes;
  // Padding clears what a longer previous line left behind; the cursor goes back with \r.
  std::string text = progress_text(what_, c, now_seconds() - start_, final);
  std::fprintf(stderr, "\r%-*s%s", static_cast<int>(last_width_), text.c_str(), final ? "\n" : "");
  last_width_ = std::max(last_width_, text.size());
  std::fflush(stderr);
}

}  // namespace moereg::cli
