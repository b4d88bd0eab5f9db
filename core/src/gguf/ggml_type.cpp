// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/ggml_type.h"

namespace moereg {

namespace {
// Block sizes and byte sizes from llama.cpp (ggml-common.h structs; gguf-py GGML_QUANT_SIZES).
constexpr std::uint32_t qk_k = ggml_qk_k;
const ggml_type_traits table[] = {
    {ggml_type::F32, "F32", 1, 4, dtype::F32},
    {ggml_type::F16, "F16", 1, 2, dtype::F16},
    {ggml_type::Q4_0, "Q4_0", 32, 2 + 16, std::nullopt},
    {ggml_type::Q4_1, "Q4_1", 32, 2 + 2 + 16, std::nullopt},
    {ggml_type::Q5_0, "Q5_0", 32, 2 + 4 + 16, std::nullopt},
    {ggml_type::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, std::nullopt},
    {ggml_type::Q8_0, "Q8_0", 32, 2 + 32, std::nullopt},
    {ggml_type::Q8_1, "Q8_1", 32, 4 + 4 + 32, std::nullopt},
    {ggml_type::Q2_K, "Q2_K", qk_k, 2 + 2 + qk_k / 16 + qk_k / 4, std::nullopt},
    {ggml_type::Q3_K, "Q3_K", qk_k, 2 + qk_k / 4 + qk_k / 8 + 12, std::nullopt},
    {ggml_type::Q4_K, "Q4_K", qk_k, 2 + 2 + 12 + qk_k / 2, std::nullopt},
    {ggml_type::Q5_K, "Q5_K", qk_k, 2 + 2 + 12 + qk_k / 8 + qk_k / 2, std::nullopt},
    {ggml_type::Q6_K, "Q6_K", qk_k, 2 + qk_k / 16 + 3 * qk_k / 4, std::nullopt},
    {ggml_type::Q8_K, "Q8_K", qk_k, 4 + qk_k + qk_k / 8, std::nullopt},
    {ggml_type::IQ2_XXS, "IQ2_XXS", qk_k, 2 + qk_k / 4, std::nullopt},
    {ggml_type::IQ2_XS, "IQ2_XS", qk_k, 2 + qk_k / 4 + qk_k / 32, std::nullopt},
    {ggml_type::IQ3_XXS, "IQ3_XXS", qk_k, 2 + 3 * qk_k / 8, std::nullopt},
    {ggml_type::IQ1_S, "IQ1_S", qk_k, 2 + qk_k / 8 + qk_k / 16, std::nullopt},
    {ggml_type::IQ4_NL, "IQ4_NL", 32, 2 + 16, std::nullopt},
    {ggml_type::IQ3_S, "IQ3_S", qk_k, 2 + qk_k / 4 + qk_k / 8 + qk_k / 32 + 4, std::nullopt},
    {ggml_type::IQ2_S, "IQ2_S", qk_k, 2 + qk_k / 4 + qk_k / 16, std::nullopt},
    {ggml_type::IQ4_XS, "IQ4_XS", qk_k, 2 + 2 + qk_k / 2 + qk_k / 64, std::nullopt},
    {ggml_type::I8, "I8", 1, 1, dtype::I8},
    {ggml_type::I16, "I16", 1, 2, dtype::I16},
    {ggml_type::I32, "I32", 1, 4, dtype::I32},
    {ggml_type::I64, "I64", 1, 8, dtype::I64},
    {ggml_type::F64, "F64", 1, 8, dtype::F64},
    {ggml_type::IQ1_M, "IQ1_M", qk_k, qk_k / 8 + qk_k / 16 + qk_k / 32, std::nullopt},
    {ggml_type::BF16, "BF16", 1, 2, dtype::BF16},
    {ggml_type::TQ1_0, "TQ1_0", qk_k, 2 + 4 * 13, std::nullopt},
    {ggml_type::TQ2_0, "TQ2_0", qk_k, 2 + 64, std::nullopt},
    {ggml_type::MXFP4, "MXFP4", 32, 1 + 16, std::nullopt},
};
}  // namespace

std::optional<ggml_type_traits> ggml_traits(std::uint32_t id) {
  for (const auto& t : table)
    if (static_cast<std::uint32_t>(t.type) == id) return t;
  return std::nullopt;
}

const ggml_type_traits& ggml_traits(ggml_type type) {
  for (const auto& t : table)
    if (t.type == type) return t;
  return table[0];  // unreachable for enumerators; they are all in the table
}

std::optional<ggml_type> ggml_type_for(dtype d) {
  for (const auto& t : table)
    if (t.dtype == d) return t.type;
  return std::nullopt;
}

std::string known_ggml_types() {
  std::string s;
  for (const auto& t : table) {
    if (!s.empty()) s += ", ";
    s += std::string(t.name) + " (" + std::to_string(static_cast<std::uint32_t>(t.type)) + ")";
  }
  return s;
}

std::string storage_type_name(const tensor_info& t) {
  if (t.ggml_blocks) {
    auto tr = ggml_traits(*t.ggml_blocks);
    return tr ? std::string(tr->name) : "ggml type " + std::to_string(*t.ggml_blocks);
  }
  return std::string(dtype_name(t.type));
}

std::vector<std::int64_t> element_shape(const tensor_info& t) {
  std::vector<std::int64_t> s = t.shape;
  if (t.ggml_blocks && !s.empty())
    if (auto tr = ggml_traits(*t.ggml_blocks))
      s.back() = s.back() / static_cast<std::int64_t>(tr->type_size) * static_cast<std::int64_t>(tr->block_size);
  return s;
}

std::optional<ggml_type> ggml_type_of(const tensor_info& t) {
  if (t.ggml_blocks) {
    auto tr = ggml_traits(*t.ggml_blocks);
    return tr ? std::optional<ggml_type>(tr->type) : std::nullopt;
  }
  return ggml_type_for(t.type);
}

}  // namespace moereg
