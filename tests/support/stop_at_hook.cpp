// SPDX-License-Identifier: Apache-2.0
// Linked into bin/moereg_stoppable only (the command line's objects plus this file): with
// MOEREG_TEST_STOP_AT=<point>[:<n>] the process stops itself with SIGSTOP the n-th time
// (default: the first) it reaches <point> (moereg/base/test_stop.h). With
// MOEREG_TEST_FAIL_AT=<point>[:<n>][@<rank>] it fails there instead, as a write error would,
// and only as that rank of an MPI job (OMPI_COMM_WORLD_RANK, PMI_RANK). The shipped moereg has
// no such hook.
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>

#include "moereg/base/error.h"
#include "moereg/base/test_stop.h"

namespace {

// "<point>[:<n>][@<rank>]": whether this is the n-th time at <point> (on that rank).
bool reached(const std::string& spec, const char* point, std::atomic<int>& count) {
  std::string s = spec;
  if (auto at = s.find('@'); at != std::string::npos) {
    const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = std::getenv("PMI_RANK");
    if (!rank || s.substr(at + 1) != rank) return false;
    s = s.substr(0, at);
  }
  const auto colon = s.find(':');
  if (s.substr(0, colon) != point) return false;
  const int nth = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
  return ++count == nth;
}

void stop_at(const char* point) {
  static const char* stop = std::getenv("MOEREG_TEST_STOP_AT");
  static const char* fail = std::getenv("MOEREG_TEST_FAIL_AT");
  static std::atomic<int> stops{0}, fails{0};
  if (stop && reached(stop, point, stops)) ::raise(SIGSTOP);
  if (fail && reached(fail, point, fails)) throw moereg::error(std::string("injected failure at ") + point + " (MOEREG_TEST_FAIL_AT)");
}

[[maybe_unused]] const bool installed = [] {
  if (std::getenv("MOEREG_TEST_STOP_AT") || std::getenv("MOEREG_TEST_FAIL_AT")) moereg::set_test_stop_hook(stop_at);
  return true;
}();

}  // namespace
