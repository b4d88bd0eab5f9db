// SPDX-License-Identifier: Apache-2.0
// ggml_type.h - the tensor element types a GGUF file may name, with their block geometry.
//
// A ggml type stores `block_size` elements in `type_size` bytes; F32/F16/BF16 and the
// integer types are blocks of one. Ids are llama.cpp's (ggml.h); removed ids are unknown.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moereg/safetensors/tensor_info.h"
#include "moereg/tensor/dtype.h"

namespace moereg {

// QK_K: values per K-quant super-block (Q2_K..Q8_K and the IQ types).
inline constexpr int ggml_qk_k = 256;

enum class ggml_type : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct ggml_type_traits {
  ggml_type type;
  std::string_view name;          // "Q4_K"
  std::uint32_t block_size;       // elements per block
  std::uint32_t type_size;        // bytes per block
  std::optional<moereg::dtype> dtype;  // set for plain element types, empty for block-quantized ones
};

// Traits of a known id; nullopt for ids llama.cpp never assigned or has removed.
std::optional<ggml_type_traits> ggml_traits(std::uint32_t id);
const ggml_type_traits& ggml_traits(ggml_type t);

// The ggml type that stores a moereg dtype element by element; nullopt if there is none
// (U8, BOOL, FP8 types: GGUF has no such element type).
std::optional<ggml_type> ggml_type_for(moereg::dtype t);

// "F32 (0), F16 (1), ..." for messages.
std::string known_ggml_types();

// A tensor's element type as people name it: "BF16", or the ggml block type ("Q4_K").
std::string storage_type_name(const tensor_info& t);
// Its shape in elements: `shape` itself, or for ggml blocks the byte shape with the
// innermost dimension turned back into elements.
std::vector<std::int64_t> element_shape(const tensor_info& t);
// The ggml type that stores a tensor as it is: its blocks, or its dtype element by element.
std::optional<ggml_type> ggml_type_of(const tensor_info& t);

}  // namespace moereg
