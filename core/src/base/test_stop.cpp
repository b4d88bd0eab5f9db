// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/test_stop.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace moereg {

void test_stop_point(const char* point) {
  static const char* spec = std::getenv("MOEREG_TEST_STOP_AT");
  if (!spec) return;
  std::string s(spec);
  std::string name = s.substr(0, s.find(':'));
  if (name != point) return;
  int nth = s.find(':') == std::string::npos ? 1 : std::atoi(s.c_str() + s.find(':') + 1);
  static std::atomic<int> reached{0};
  if (++reached == nth) ::raise(SIGSTOP);
}

}  // namespace moereg
