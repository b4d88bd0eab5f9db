// SPDX-License-Identifier: Apache-2.0
// cpu_moe_detail.h - small helpers the engine's files share: element sizes, bf16 rounding
// (as the tiles round: to nearest even, NaN kept quiet), integer rounding.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu_kernels.h"

namespace moereg::cpu {

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
inline std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }

// Bytes of one element; for the 4-bit codes, of one byte (two codes), which ABI strides count.
inline std::size_t elem_bytes(int e) { return e == elem_bf16 ? 2 : e == elem_fp8 || e == elem_int4 || e == elem_mxfp4 || e == elem_int8 ? 1 : 4; }
inline bool four_bit(int e) { return e == elem_int4 || e == elem_mxfp4; }
// Weights that come with scales and are always widened into panels.
inline bool scaled(int e) { return e == elem_fp8 || e == elem_int8 || four_bit(e); }
// Bytes from a weight row's start to its element k.
inline std::int64_t weight_offset(int e, std::int64_t k) { return four_bit(e) ? k / 2 : k * static_cast<std::int64_t>(elem_bytes(e)); }

inline float bf16_value(std::uint16_t v) {
  std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline std::uint16_t to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  return static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace moereg::cpu
