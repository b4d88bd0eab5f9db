// SPDX-License-Identifier: Apache-2.0
// How the cpu backend cuts an expert's routed rows into the row blocks of its work items
// (even_block, cpu_moe_detail.h): as few blocks of at most the cap as possible, near-equal,
// in whole quanta, so no block is a thin remainder that streams the weights for a few rows.
#include <gtest/gtest.h>

#include <cstdint>

#include "cpu_moe_detail.h"

namespace {

using moereg::cpu::even_block;

TEST(cpu_row_blocks, a_bucket_over_the_cap_is_split_evenly) {
  EXPECT_EQ(even_block(270, 256, 32), 160);  // 160 + 110, not 256 + 14
  EXPECT_EQ(even_block(257, 256, 32), 160);  // 160 + 97
  EXPECT_EQ(even_block(513, 256, 32), 192);  // 192 + 192 + 129
  EXPECT_EQ(even_block(512, 256, 32), 256);  // two full blocks
  EXPECT_EQ(even_block(100, 48, 16), 48);    // 48 + 48 + 4: three blocks are the fewest, and 34 rounds up to 48
  EXPECT_EQ(even_block(97, 48, 16), 48);
  EXPECT_EQ(even_block(60, 48, 4), 32);      // 32 + 28
}

TEST(cpu_row_blocks, a_bucket_within_the_cap_is_one_block) {
  for (std::int64_t rows : {1, 31, 255, 256}) EXPECT_EQ(even_block(rows, 256, 32), 256) << rows;
}

TEST(cpu_row_blocks, blocks_cover_every_row_and_never_pass_the_cap) {
  for (std::int64_t cap : {32, 48, 256})
    for (std::int64_t quantum : {4, 16, 32}) {
      if (cap % quantum) continue;
      for (std::int64_t rows = 1; rows <= 2000; ++rows) {
        const std::int64_t step = even_block(rows, cap, quantum);
        ASSERT_LE(step, cap);
        ASSERT_EQ(step % quantum, 0);
        // As few blocks as the cap allows.
        ASSERT_EQ((rows + step - 1) / step, (rows + cap - 1) / cap) << rows << " " << cap << " " << quantum;
      }
    }
}

}  // namespace
