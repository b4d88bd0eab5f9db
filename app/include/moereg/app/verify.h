// SPDX-License-Identifier: Apache-2.0
// verify.h - do two checkpoints hold the same tensors? Names, dtypes, shapes and bytes.
// Two checkpoints of one family in different layouts are compared through their layouts,
// expert piece by expert piece; anything else by tensor name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct verify_request {
  std::string a, b;  // checkpoints: directories, .safetensors or .gguf files
  std::vector<std::string> plugin_paths;
};

struct difference {
  std::string kind;    // "missing_in_a", "missing_in_b", "dtype", "shape", "bytes"
  std::string name;    // the tensor
  std::string detail;  // "BF16 vs F32", "first difference at element 17: 0.25 vs 0.5"
};

struct verify_report {
  bool equal = false;
  std::uint64_t compared = 0, bytes_compared = 0;
  std::string how;  // "by tensor name" or "through layouts hf and transformers_v5 (family qwen3_moe)"
  std::vector<difference> differences;
};

// Different checkpoints are a report with equal = false, not a problem; a problem means one
// of them could not be read.
MOEREG_API result<verify_report> verify(const verify_request& request) noexcept;

}  // namespace moereg::app
