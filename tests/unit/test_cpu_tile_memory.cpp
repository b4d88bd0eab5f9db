// SPDX-License-Identifier: Apache-2.0
// The cpu backend's tile-ordered weight memory (cpu_tile_weights.h): how much of it the kernel
// backs with transparent huge pages, read from /proc/self/smaps. The parser on a written smaps
// text (ranges inside, across and outside mappings, a mapping larger than its huge pages, lines
// that only look like fields), and the real memory of this process: never more than its size.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "cpu_tile_weights.h"
#include "moereg/base/meminfo.h"

namespace {

using moereg::cpu::anon_huge_bytes;

// Three mappings: 8 MiB with 4 MiB in huge pages, 2 MiB with none, 4 MiB with 4 MiB.
const std::string smaps =
    "7f0000000000-7f0000800000 rw-p 00000000 00:00 0 \n"
    "Size:               8192 kB\n"
    "AnonHugePages:      4096 kB\n"
    "7f0000800000-7f0000a00000 r--p 00000000 08:01 1234                       /usr/lib/libx.so\n"
    "Size:               2048 kB\n"
    "AnonHugePages:         0 kB\n"
    "7f0000a00000-7f0000e00000 rw-p 00000000 00:00 0 \n"
    "Size:               4096 kB\n"
    "AnonHugePages:      4096 kB\n"
    "ShmemPmdMapped:        0 kB\n"
    "VmFlags: rd wr mr mw me ac hg\n";

constexpr std::uintptr_t base = 0x7f0000000000, MiB = 1 << 20;

TEST(cpu_tile_memory, anon_huge_bytes_counts_the_mappings_a_range_overlaps) {
  EXPECT_EQ(anon_huge_bytes(smaps, base, base + 8 * MiB), 4 * MiB);            // the first mapping
  EXPECT_EQ(anon_huge_bytes(smaps, base, base + 14 * MiB), 8 * MiB);           // all three
  EXPECT_EQ(anon_huge_bytes(smaps, base + 8 * MiB, base + 10 * MiB), 0u);      // the library's
  EXPECT_EQ(anon_huge_bytes(smaps, base + 11 * MiB, base + 12 * MiB), 1 * MiB);  // at most the overlap
  EXPECT_EQ(anon_huge_bytes(smaps, base + 7 * MiB, base + 11 * MiB), 2 * MiB);   // 1 + 0 + 1
  EXPECT_EQ(anon_huge_bytes(smaps, base + 14 * MiB, base + 20 * MiB), 0u);     // past every mapping
  EXPECT_EQ(anon_huge_bytes("", base, base + MiB), 0u);
  EXPECT_EQ(anon_huge_bytes("AnonHugePages: 2048 kB\n", base, base + MiB), 0u);  // no mapping line before it
  EXPECT_EQ(anon_huge_bytes("7f0000000000-7f0000200000 rw-p 0 00:00 0\nAnonHugePages: x kB\n", base, base + 2 * MiB), 0u);
}

TEST(cpu_tile_memory, huge_page_bytes_of_real_memory_stay_within_it) {
  moereg::cpu::tile_memory m(5 * MiB + 123);
  ASSERT_NE(m.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m.data()) % (2 * MiB), 0u);
  EXPECT_EQ(m.bytes(), 6 * MiB);
  for (std::size_t i = 0; i < m.bytes() / 2; i += 2048) m.data()[i] = 1;  // touch every page
  EXPECT_LE(m.huge_page_bytes(), m.bytes());
  EXPECT_EQ(moereg::cpu::tile_memory().huge_page_bytes(), 0u);
}

// The copies' budget: the option's figure as given, else this host's MemAvailable less an eighth.
TEST(cpu_tile_memory, copy_budget_is_the_option_or_most_of_the_available_memory) {
  std::string source;
  EXPECT_EQ(moereg::cpu::copy_budget(5, &source), 5);
  EXPECT_EQ(source, "backend option copy_memory_limit");
  const std::int64_t budget = moereg::cpu::copy_budget(-1, &source);
  EXPECT_EQ(source, "the host's MemAvailable less an eighth");
  const auto available = moereg::memory_available();
  ASSERT_TRUE(available.has_value());
  EXPECT_GT(budget, 0);
  EXPECT_LE(budget, static_cast<std::int64_t>(*available));
}

}  // namespace
