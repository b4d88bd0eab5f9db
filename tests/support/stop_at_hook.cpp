// SPDX-License-Identifier: Apache-2.0
// Linked into bin/moereg_stoppable only (the command line's objects plus this file): with
// MOEREG_TEST_STOP_AT=<point>[:<n>] the process stops itself with SIGSTOP the n-th time
// (default: the first) it reaches <point> (moereg/base/test_stop.h). The shipped moereg has
// no such hook.
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>

#include "moereg/base/test_stop.h"

namespace {

void stop_at(const char* point) {
  static const std::string spec = std::getenv("MOEREG_TEST_STOP_AT");
  const std::string name = spec.substr(0, spec.find(':'));
  if (name != point) return;
  const int nth = spec.find(':') == std::string::npos ? 1 : std::atoi(spec.c_str() + spec.find(':') + 1);
  static std::atomic<int> reached{0};
  if (++reached == nth) ::raise(SIGSTOP);
}

[[maybe_unused]] const bool installed = [] {
  if (std::getenv("MOEREG_TEST_STOP_AT")) moereg::set_test_stop_hook(stop_at);
  return true;
}();

}  // namespace
