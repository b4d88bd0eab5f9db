// SPDX-License-Identifier: Apache-2.0
// gptq_int4.h - symmetric GPTQ int4 weights to bf16.
//
// qweight I32 [K/8, N]: eight 4-bit values per int32 along the input axis K, lowest bits
// first; scales [ceil(K/g), N]; symmetric zero 8, so W[n, k] = (q(k, n) - 8) * scales[k/g, n],
// returned in PyTorch order [N, K]. Only sym = true and desc_act = false are supported:
// others are refused, naming the quantization_config field.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "moereg/base/json.h"

namespace moereg {

struct gptq_config {
  std::int64_t group_size = -1;  // -1: one group spanning all of K
};

// Reads config.json's quantization_config (`where` names the file). Requires quant_method
// "gptq", bits 4, sym true (absent: true, AutoGPTQ's default), desc_act false (absent:
// false). Throws moereg::error "<where>: quantization_config.<field> ..." otherwise.
gptq_config read_gptq_config(const json::value& quantization_config, std::string_view where);

struct gptq_shape {
  std::int64_t k = 0, n = 0, group = 0;  // group: the effective group size (K when -1)
};
// Checks qweight [K/8, N] and scales [ceil(K/g), N]; throws moereg::error naming `tensor`.
gptq_shape check_gptq_shapes(std::string_view tensor, std::span<const std::int64_t> qweight_shape,
                             std::span<const std::int64_t> scales_shape, std::int64_t group_size);

// g_idx (I32 [K]) must be the trivial k / group; anything else is act-order, refused with
// the first row that differs.
void check_gptq_g_idx(std::string_view tensor, const void* g_idx, gptq_shape s);

// qweight: K/8 x N int32 (any alignment); scales: ceil(K/g) x N (scales_as_f32); out: N x K bf16.
void dequantize_gptq_int4(const void* qweight, std::span<const float> scales, gptq_shape s, std::uint16_t* out);

}  // namespace moereg
