// SPDX-License-Identifier: Apache-2.0
// bench_fp8.h - (in-tree) synthetic FP8 experts for `moe bench --weights f8_e4m3`: random
// bf16 experts quantized as DeepSeek-V3 ships them (E4M3 with one F32 scale per 128x128
// block, scale = block amax / 448), written beside their dequantized bf16 values so that
// PyTorch's reference multiplies exactly the weights the backend reads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moereg/safetensors/safetensors_writer.h"

namespace moereg::app {

constexpr std::int64_t bench_fp8_block = 128;

// The tensors of one expert stack in F8: `name`_f8 [E, rows, cols] F8_E4M3, `name`_scale
// [E, parts * ceil(rows / parts / 128), ceil(cols / 128)] F32, for `parts` matrices stacked
// in rows with a grid each (gate and up: 2), beside `name` [E, rows, cols] BF16.
std::vector<tensor_spec> fp8_expert_specs(const std::string& name, std::int64_t experts, std::int64_t rows,
                                          std::int64_t cols, int parts);

// Fills the tensors fp8_expert_specs named: random bf16 (standard deviation `scale`),
// quantized per block, and the bf16 tensor with the dequantized values; `threads` threads.
void write_fp8_experts(safetensors_writer& w, const std::string& name, std::int64_t experts, std::int64_t rows,
                       std::int64_t cols, int parts, float scale, std::uint64_t seed, int threads);

// The nearest E4M3 byte to v (|v| <= 448; ties to the even code).
std::uint8_t to_fp8_e4m3(float v);

}  // namespace moereg::app
