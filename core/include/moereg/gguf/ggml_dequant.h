// SPDX-License-Identifier: Apache-2.0
// ggml_dequant.h - ggml's block types decoded to float32, value for value what ggml's own
// `to_float` (dequantize_row_* in ggml-quants.c) gives: the same integer unpacking and the
// same float operations in the same order, so results are bit-identical (tested against the
// pinned release's libggml-base.so, tests/unit/test_ggml_dequant.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "moereg/gguf/ggml_type.h"

namespace moereg {

// Whether ggml_dequantize decodes this type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
// Q5_K, Q6_K, MXFP4 (and F32, F16, BF16 elements).
bool ggml_dequantize_supported(ggml_type type);

// Decodes `count` values (a multiple of the type's block) from `src` into `dst`.
// Throws moereg::error for a type it does not decode or a count that is not whole blocks.
void ggml_dequantize(ggml_type type, const std::byte* src, float* dst, std::int64_t count);

}  // namespace moereg
