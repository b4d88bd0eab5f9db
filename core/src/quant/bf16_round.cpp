// SPDX-License-Identifier: Apache-2.0
#include "moereg/quant/bf16_round.h"

#include <cmath>
#include <cstring>

#include "moereg/tensor/dtype.h"

namespace moereg {

std::uint16_t f64_to_bf16(double v) {
  // Round to f32 with "round to odd", then f32 -> bf16 to nearest even. Round-to-odd at
  // 24 bits followed by a rounding to 8 bits equals one direct rounding (24 >= 8 + 2).
  float f = static_cast<float>(v);
  if (std::isnan(v) || static_cast<double>(f) == v) return f32_to_bf16(f);
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::fabs(static_cast<double>(f)) > std::fabs(v)) --bits;  // truncate toward zero (same sign)
  bits |= 1u;
  std::memcpy(&f, &bits, 4);
  return f32_to_bf16(f);
}

}  // namespace moereg
