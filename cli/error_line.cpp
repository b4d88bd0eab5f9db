// SPDX-License-Identifier: Apache-2.0
#include "error_line.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

namespace moereg::cli {

void print_error_line(const std::string& text) {
  const std::string line = text + "\n";
  std::cerr.flush();  // what was written before comes first
  std::fflush(stderr);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report that reporting failed
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace moereg::cli
