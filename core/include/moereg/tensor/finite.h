// SPDX-License-Identifier: Apache-2.0
// finite.h - the first NaN or infinity in a run of floating-point elements.
//
// Weights are finite. A NaN or an infinity written into a checkpoint makes a complete-looking
// file whose model computes NaN, so the places that make weights (ggml blocks decoded, FP8 or
// int4 dequantized, LoRA factors before a merge) scan what they produce and refuse it, naming
// the element. The scan tests exponent bits (all set: NaN or infinite), with no branch per
// element, so it vectorises and costs little beside the work that made the values.
#pragma once

#include <cstdint>

#include "moereg/tensor/dtype.h"

namespace moereg {

// Index of the first element of `count` elements of `type` (F32, BF16 or F16) at `data` that is
// NaN or infinite, or -1 when all are finite. Other types throw moereg::error (a caller's bug).
std::int64_t first_non_finite(dtype type, const void* data, std::int64_t count);

}  // namespace moereg
