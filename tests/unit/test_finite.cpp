// SPDX-License-Identifier: Apache-2.0
// first_non_finite: the one scan behind every refusal of NaN or infinite weights (decoded ggml
// blocks, dequantized FP8/int4/MXFP4, LoRA factors).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/tensor/finite.h"

using namespace moereg;

TEST(Finite, FindsTheFirstNanOrInfinityOfEachFloatType) {
  std::vector<float> f(1000, 1.5f);
  f.back() = std::numeric_limits<float>::max();  // the largest finite is finite
  EXPECT_EQ(first_non_finite(dtype::F32, f.data(), 1000), -1);
  f[700] = -std::numeric_limits<float>::infinity();
  f[900] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(first_non_finite(dtype::F32, f.data(), 1000), 700);
  EXPECT_EQ(first_non_finite(dtype::F32, f.data(), 700), -1);  // only `count` elements are read

  // bf16: exponent 0x7f80; 0x7f7f is the largest finite, 0xff80 is -inf, 0x7fc1 a NaN.
  std::vector<std::uint16_t> b(64, 0x3f80);
  b[3] = 0x7f7f;
  EXPECT_EQ(first_non_finite(dtype::BF16, b.data(), 64), -1);
  b[40] = 0x7fc1;
  b[50] = 0xff80;
  EXPECT_EQ(first_non_finite(dtype::BF16, b.data(), 64), 40);

  // f16: exponent 0x7c00; 0x7bff (65504) is finite, 0xfc00 is -inf.
  std::vector<std::uint16_t> h(17, 0x7bff);
  EXPECT_EQ(first_non_finite(dtype::F16, h.data(), 17), -1);
  h[16] = 0xfc00;
  EXPECT_EQ(first_non_finite(dtype::F16, h.data(), 17), 16);
  // The same bits as bf16 are finite (-1.7e38): each type is read by its own layout.
  EXPECT_EQ(first_non_finite(dtype::BF16, h.data(), 17), -1);
  EXPECT_EQ(first_non_finite(dtype::F16, h.data(), 0), -1);
}

TEST(Finite, OtherTypesAreACallersBug) {
  const std::uint8_t e4m3[2] = {0x7f, 0};
  EXPECT_THROW(first_non_finite(dtype::F8_E4M3, e4m3, 2), error);
}
