// SPDX-License-Identifier: Apache-2.0
// progress.h - a progress line on stderr (tensors, bytes, rate, ETA) while work runs,
// only when stderr is a terminal. Its words: moereg/exec/progress_text.h.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "moereg/exec/executor.h"

namespace moereg::cli {

class progress_line {
 public:
  progress_line(std::string what, const execute_progress& p);
  ~progress_line();
  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

 private:
  void print(bool final) const;
  std::string what_;
  const execute_progress& p_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  double start_;
  mutable std::size_t last_width_ = 0;
};

double now_seconds();

}  // namespace moereg::cli
