// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/test_stop.h"

#include <atomic>

namespace moereg {

namespace {
std::atomic<test_stop_hook> installed{nullptr};
}  // namespace

void set_test_stop_hook(test_stop_hook hook) noexcept { installed.store(hook); }

void test_stop_point(const char* point) {
  if (test_stop_hook hook = installed.load(std::memory_order_relaxed)) hook(point);
}

}  // namespace moereg
