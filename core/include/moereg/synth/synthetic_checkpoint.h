// SPDX-License-Identifier: Apache-2.0
// synthetic_checkpoint.h - writes a checkpoint of real MoE shapes filled with random bf16.
//
// Used by `moereg demo`, the benchmarks and the tests: no download, any size. The model is
// qwen3_moe-shaped (hf layout: one tensor per expert and projection), which every later
// stage (convert, moe run) understands. Data is a deterministic function of the seed.
#pragma once

#include <cstdint>
#include <string>

namespace moereg {

struct synthetic_dims {
  int layers = 2;
  int experts = 8;        // E
  int hidden = 64;        // H
  int intermediate = 32;  // I (expert)
  int top_k = 2;
  int vocab = 128;
  int heads = 4;
  int kv_heads = 2;
  int head_dim = 16;
};

struct synthetic_options {
  std::uint64_t seed = 1;
  std::uint64_t shard_size = 0;  // bytes; 0 = one file
  int threads = 0;               // 0 = all cores
};

// Writes OUT/config.json and the safetensors files. Returns the bytes of tensor data written.
std::uint64_t write_synthetic_qwen3_moe(const std::string& out_dir, const synthetic_dims& dims,
                                        const synthetic_options& options);

// Named real-model shapes: "tiny" (the demo), "qwen3_30b_a3b" (E=128 H=2048 I=768, layers as given).
synthetic_dims synthetic_preset(const std::string& name, int layers);

}  // namespace moereg
