// SPDX-License-Identifier: Apache-2.0
// bf16_round.h - rounding an exact product to bf16 once, to nearest even.
//
// Dequantized values are products like fp8 x f32 scale (28 significant bits): rounding to
// f32 first and then to bf16 can round twice the wrong way. These functions round once.
#pragma once

#include <cstdint>

namespace moereg {

// Correctly rounded (nearest, ties to even) bf16 bits of a double; NaN stays NaN (quiet),
// magnitudes past bf16's range become infinities, tiny ones bf16 subnormals or zero.
std::uint16_t f64_to_bf16(double v);

}  // namespace moereg
