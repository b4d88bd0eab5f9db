// SPDX-License-Identifier: Apache-2.0
// quant_support.h - tiny quantized checkpoints for tests: tensors with known bytes written by
// the project's own safetensors writer, beside a DeepSeek-V3-style config.json.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/tensor/dtype.h"

namespace moereg::test {

struct tiny_tensor {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;
};

// A deepseek_v3 config: 2 decoder layers, layer 0 dense, layer 1 MoE with E experts.
// quantization_config is set when `quantization` is not null.
json::value deepseek_config(int E, int H, int I, const json::value& quantization = {});

// Writes dir/config.json and dir/model.safetensors holding `tensors` (any order).
void write_checkpoint(const std::string& dir, const json::value& config, const std::vector<tiny_tensor>& tensors);

// Typed payloads.
template <typename T>
std::vector<std::byte> as_bytes(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  __builtin_memcpy(b.data(), v.data(), b.size());
  return b;
}

// n random FP8 E4M3 bytes, never NaN (0x7F / 0xFF).
std::vector<std::uint8_t> random_fp8(std::size_t n, std::mt19937& rng);

}  // namespace moereg::test
