// SPDX-License-Identifier: Apache-2.0
#include "moereg/exec/progress_text.h"

#include <cstdio>

#include "moereg/base/units.h"

namespace moereg {

std::string progress_text(const std::string& what, const progress_counts& c, double seconds, bool final) {
  static const char* const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double scale = 1;
  int u = 0;
  while (u + 1 < 6 && static_cast<double>(c.total_bytes) >= scale * 1000) {
    scale *= 1000;
    ++u;
  }
  char bytes[96];
  if (u == 0)
    std::snprintf(bytes, sizeof bytes, "%llu/%llu B", static_cast<unsigned long long>(c.bytes),
                  static_cast<unsigned long long>(c.total_bytes));
  else
    std::snprintf(bytes, sizeof bytes, "%.2f/%.2f %s", static_cast<double>(c.bytes) / scale,
                  static_cast<double>(c.total_bytes) / scale, units[u]);
  std::string line = what + ": " + std::to_string(c.tensors) + "/" + std::to_string(c.total_tensors) + " tensors, " + bytes;
  const bool rate_known = c.bytes > 0 && seconds > 0;
  if (rate_known) {
    double rate = static_cast<double>(c.bytes) / seconds;
    line += ", " + format_rate(rate);
    if (!final && c.total_bytes >= c.bytes) line += ", ETA " + format_duration(static_cast<double>(c.total_bytes - c.bytes) / rate);
  }
  if (final) line += ", done in " + format_duration(seconds);
  return line;
}

}  // namespace moereg
