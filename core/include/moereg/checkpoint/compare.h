// SPDX-License-Identifier: Apache-2.0
// compare.h - tensor-by-tensor comparison of two checkpoints (names, dtypes, shapes, bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"

namespace moereg {

struct tensor_difference {
  std::string name;
  std::string kind;    // "missing_in_a", "missing_in_b", "dtype", "shape", "bytes"
  std::string detail;  // human-readable: "BF16 vs F32", "first difference at element 17: 0.25 vs 0.5"
};

struct comparison {
  std::uint64_t compared = 0;       // tensors present on both sides
  std::uint64_t bytes_compared = 0;
  std::vector<tensor_difference> differences;
  bool equal() const { return differences.empty(); }
};

// A tensor source: name -> (dtype, shape, bytes). Lets verify compare checkpoints directly or
// after decoding layouts.
struct tensor_ref {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  const std::byte* data;
  std::uint64_t nbytes;
  bool mapped = false;  // data lies in a read-only file mapping: pages may be released after use
  std::optional<std::uint32_t> ggml_blocks{};  // GGUF block-quantized bytes (tensor_info::ggml_blocks)
};

comparison compare_tensors(const std::vector<tensor_ref>& a, const std::vector<tensor_ref>& b);
comparison compare_checkpoints(const checkpoint& a, const checkpoint& b);

json::value comparison_to_json(const comparison& c);

}  // namespace moereg
