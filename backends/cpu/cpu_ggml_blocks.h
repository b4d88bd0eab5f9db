// SPDX-License-Identifier: Apache-2.0
// cpu_ggml_blocks.h - ggml's Q8_0, Q4_0, Q4_K and Q6_K blocks (GGUF experts) widened to f32
// for the panels, value for value what ggml's dequantize_row_* gives (the same integer
// unpacking and float operations in the same order; tests compare with core's decoder, which
// is itself checked bit for bit against libggml).
#pragma once

#include <cstdint>

#include "cpu_kernels.h"

namespace moereg::cpu {

// The elem_type of a ggml type id (llama.cpp's numbering), or -1 when the backend does not
// read it.
int ggml_elem(std::int32_t ggml_type);
// "Q4_K" for messages.
const char* ggml_elem_name(int elem);

// Quantizes k values (whole blocks) of one row into ggml blocks of type `elem`
// (cpu_ggml_quantize.cpp: the online quantization's quantize=q8_0|q4_0|q4_k|q6_k).
void ggml_quantize_row(int elem, const float* x, std::int64_t k, std::uint8_t* dst);

// Puts the ggml widening functions into a table (they are the same portable code on every
// ISA: decoding a block costs far less than streaming it from memory).
void fill_ggml_widen(kernel_table& t);

}  // namespace moereg::cpu
