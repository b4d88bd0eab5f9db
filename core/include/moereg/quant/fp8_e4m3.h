// SPDX-License-Identifier: Apache-2.0
// fp8_e4m3.h - FP8 E4M3 (e4m3fn) weights with scales to bf16.
//
// e4m3fn: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities, 0x7F/0xFF NaN,
// largest finite 448. Dequantized element = fp8 value x its scale (the stored multiplier,
// DeepSeek's weight_scale_inv), rounded once to bf16, nearest even.
#pragma once

#include <cstdint>
#include <span>

#include "moereg/quant/scale_grid.h"

namespace moereg {

// The exact value of an e4m3fn byte.
float fp8_e4m3_value(std::uint8_t v);

// w: g.batch matrices of g.rows x g.cols bytes, row-major; scales: g.batch x
// g.scales_per_matrix() values (scales_as_f32); out: bf16 bits, same element order as w.
// Throws moereg::error when scales has the wrong length.
void dequantize_fp8_e4m3(const std::uint8_t* w, std::span<const float> scales, const scale_grid& g, std::uint16_t* out);

}  // namespace moereg
