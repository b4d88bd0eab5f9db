// SPDX-License-Identifier: Apache-2.0
#include "progress.h"

#include <chrono>
#include <cstdio>

#include "command.h"

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
  double t = now_seconds() - start_;
  double done = static_cast<double>(p_.bytes.load()), total = static_cast<double>(p_.total_bytes);
  double rate = t > 0 ? done / t : 0;
  double eta = rate > 0 ? (total - done) / rate : 0;
  std::fprintf(stderr, "\r%s: %llu/%llu tensors, %.2f/%.2f GB, %.0f MB/s, ETA %.0fs   %s", what_.c_str(),
               static_cast<unsigned long long>(p_.tensors.load()), static_cast<unsigned long long>(p_.total_tensors),
               done / 1e9, total / 1e9, rate / 1e6, final ? 0.0 : eta, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace moereg::cli
