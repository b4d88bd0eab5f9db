// SPDX-License-Identifier: Apache-2.0
// pack_quantized_int4.h - compressed-tensors "pack-quantized" symmetric int4 weights to bf16.
//
// weight_packed I32 [N, ceil(K/8)]: eight 4-bit values per int32 along K, lowest bits first;
// weight_scale [N, ceil(K/g)]; W[n, k] = (q(n, k) - 8) * scale[n, k/g]. weight_shape holds
// the real [N, K]. Asymmetric configs (zero points) are refused.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "moereg/base/json.h"

namespace moereg {

struct pack_quantized_config {
  std::int64_t group_size = 0;  // 0: one group per row ("channel" strategy)
};

// Reads quantization_config of a compressed-tensors checkpoint: format "pack-quantized",
// the config group's weights {num_bits 4, type "int", symmetric true, strategy "group" or
// "channel"}. Throws moereg::error "<where>: quantization_config.<field> ..." otherwise.
pack_quantized_config read_pack_quantized_config(const json::value& quantization_config, std::string_view where);

struct pack_quantized_shape {
  std::int64_t n = 0, k = 0, group = 0;
};
// Checks weight_packed [N, ceil(K/8)] and weight_scale [N, ceil(K/g)] for the real
// shape [N, K]; throws moereg::error naming `tensor`.
pack_quantized_shape check_pack_quantized_shapes(std::string_view tensor, std::span<const std::int64_t> packed_shape,
                                                 std::span<const std::int64_t> scale_shape, std::int64_t n, std::int64_t k,
                                                 std::int64_t group_size);

// packed: N x ceil(K/8) int32 (any alignment); scales: N x ceil(K/g); out: N x K bf16.
void dequantize_pack_quantized_int4(const void* packed, std::span<const float> scales, pack_quantized_shape s,
                                    std::uint16_t* out);

}  // namespace moereg
