// SPDX-License-Identifier: Apache-2.0
// moereg/base/meminfo.h: MemAvailable read from a /proc/meminfo text (the line found among
// others, absent, malformed, in another unit) and from this host's.
#include <gtest/gtest.h>

#include <cstdint>

#include "moereg/base/meminfo.h"

namespace {

TEST(meminfo, available_is_read_from_its_line) {
  EXPECT_EQ(moereg::meminfo_available("MemTotal:       24000000 kB\nMemFree:         1000000 kB\n"
                                      "MemAvailable:   12345678 kB\nBuffers: 1 kB\n"),
            std::uint64_t{12345678} * 1024);
  EXPECT_EQ(moereg::meminfo_available("MemTotal: 1 kB\n"), std::nullopt);         // no such line
  EXPECT_EQ(moereg::meminfo_available("MemAvailable: lots kB\n"), std::nullopt);  // not a number
  EXPECT_EQ(moereg::meminfo_available("MemAvailable: 12 MB\n"), std::nullopt);    // not the kB /proc writes
  EXPECT_EQ(moereg::meminfo_available(""), std::nullopt);
  const auto here = moereg::memory_available();  // readable on Linux
  ASSERT_TRUE(here.has_value());
  EXPECT_GT(*here, 0u);
}

}  // namespace
