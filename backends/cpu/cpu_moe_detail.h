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

inline std::size_t elem_bytes(int e) { return e == elem_bf16 ? 2 : e == elem_fp8 ? 1 : 4; }

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
