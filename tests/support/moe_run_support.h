// SPDX-License-Identifier: Apache-2.0
// moe_run_support.h - `moereg moe run` from a test: a random input file, one run on the cpu
// backend read back, and the relative L2 distance the quantized-expert tests bound.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moereg::test {

// A safetensors file with one tensor "input" [T, H] of N(0, 1) values, F32 or BF16.
void write_random_input(const std::string& path, std::int64_t T, std::int64_t H, bool bf16, unsigned seed);

struct moe_run_output {
  std::vector<float> out;           // "output", [T, H]
  std::vector<std::int64_t> ids;    // "topk_ids", [T, top_k]
  std::string log;                  // what the command printed
};

// `moereg moe run CKPT --layer 1 --input IN --output OUT --backend cpu EXTRA`; records a test
// failure (and returns what it could read) when the command fails or its output lacks a tensor.
moe_run_output moe_run_cpu(const std::string& ckpt, const std::string& in, const std::string& out_path,
                           const std::string& extra = "");

// |a - b| / |b| over all elements (infinity when b is all zeros).
double rel_l2(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace moereg::test
