// SPDX-License-Identifier: Apache-2.0
// dtype.h - element types as the safetensors format names them, with their sizes.
//
// The numeric values equal moereg_dtype in abi/moereg_abi.h, so a dtype crosses the C
// boundary as a plain int.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "moereg/abi/moereg_abi.h"

namespace moereg {

enum class dtype : std::int32_t {
  BOOL = MOEREG_DTYPE_BOOL,
  U8 = MOEREG_DTYPE_U8,
  I8 = MOEREG_DTYPE_I8,
  I16 = MOEREG_DTYPE_I16,
  I32 = MOEREG_DTYPE_I32,
  I64 = MOEREG_DTYPE_I64,
  F16 = MOEREG_DTYPE_F16,
  BF16 = MOEREG_DTYPE_BF16,
  F32 = MOEREG_DTYPE_F32,
  F64 = MOEREG_DTYPE_F64,
  F8_E4M3 = MOEREG_DTYPE_F8_E4M3,
  F8_E5M2 = MOEREG_DTYPE_F8_E5M2,
  F8_E8M0 = MOEREG_DTYPE_F8_E8M0,
  U16 = MOEREG_DTYPE_U16,
  U32 = MOEREG_DTYPE_U32,
  U64 = MOEREG_DTYPE_U64,
};

// Bytes per element.
std::size_t dtype_size(dtype t);

// The safetensors spelling: "BF16", "F8_E4M3", ...
std::string_view dtype_name(dtype t);

// Parse a safetensors dtype name; nullopt if unknown.
std::optional<dtype> parse_dtype(std::string_view name);

// Every known name, comma-separated, for error messages.
std::string_view known_dtype_names();

// Decode element i of a buffer of this dtype to double (for messages and comparisons).
double element_as_double(dtype t, const void* data, std::size_t i);

// bf16 <-> f32 helpers (round to nearest even, NaN kept quiet).
inline float bf16_to_f32(std::uint16_t v) {
  std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
std::uint16_t f32_to_bf16(float f);
float f16_to_f32(std::uint16_t h);

}  // namespace moereg
