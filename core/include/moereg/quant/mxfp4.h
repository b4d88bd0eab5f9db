// SPDX-License-Identifier: Apache-2.0
// mxfp4.h - MXFP4 weights (E2M1 nibbles, UE8M0 group scales of 32) to bf16.
//
// Bytes [rows, cols/2]: element 2j is the low nibble of byte j, 2j+1 the high one. E2M1
// codes 0-7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; 8-15 the same negated. Scales [rows,
// ceil(cols/32)], one byte u meaning 2^(u-127); u = 255 is NaN (OCP MX), so its group is NaN.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace moereg {

float e2m1_value(std::uint8_t nibble);

// A UE8M0 scale as bf16 bits: the bit shift u << 7, exact for u in 1..254; u = 0 gives +0
// (2^-127 is below bf16's normal range) and u = 255 gives +inf.
inline std::uint16_t ue8m0_to_bf16(std::uint8_t u) { return static_cast<std::uint16_t>(u << 7); }

struct mxfp4_shape {
  std::int64_t rows = 0, cols = 0;
};
// Checks weight [rows, cols/2] against scale [rows, ceil(cols/32)]; throws moereg::error
// naming `tensor` otherwise.
mxfp4_shape check_mxfp4_shapes(std::string_view tensor, std::span<const std::int64_t> weight_shape,
                               std::span<const std::int64_t> scale_shape);

// packed: rows x cols/2 bytes; scales: rows x ceil(cols/32) bytes; out: rows x cols bf16.
void dequantize_mxfp4(const std::uint8_t* packed, const std::uint8_t* scales, mxfp4_shape s, std::uint16_t* out);

}  // namespace moereg
