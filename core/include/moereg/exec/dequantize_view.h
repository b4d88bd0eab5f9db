// SPDX-License-Identifier: Apache-2.0
// dequantize_view.h - one quantized matrix (a strided view of its stored units and its
// scales) to bf16, each element rounded once to nearest even (core/quant dequantizers).
//
// This is what `convert --dtype bf16` runs per expert piece and per quantized pass-through
// weight; a backend that dequantizes expert pieces can call it the same way.
#pragma once

#include <cstdint>
#include <vector>

#include "moereg/plan/decoded_checkpoint.h"

namespace moereg {

// Scratch buffers reused across calls (one per thread).
struct dequantize_scratch {
  std::vector<std::byte> units, scales;
  std::vector<std::uint16_t> out;
};

// data: [rows, cols / pack] storage units (any strides); s: its scales and grid (grid.rows x
// grid.cols logical elements). Writes grid.rows x grid.cols bf16 bits row-major to `out`.
// Throws moereg::error for a scheme that is none, or scales whose shape disagrees.
void dequantize_view(const matrix_view& data, const piece_scales& s, const quant_format& q, std::uint16_t* out,
                     dequantize_scratch& scratch);

}  // namespace moereg
