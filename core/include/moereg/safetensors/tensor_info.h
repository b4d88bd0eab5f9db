// SPDX-License-Identifier: Apache-2.0
// tensor_info.h - what a file header says about one tensor (safetensors, or GGUF seen the
// same way: dimensions in PyTorch order, byte range within the data section).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moereg/tensor/dtype.h"

namespace moereg {

struct tensor_info {
  std::string name;
  dtype type = dtype::U8;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets within the data section (after the header)
  std::uint64_t end = 0;
  // Set for a GGUF block-quantized tensor (Q4_K, IQ2_XS, ...; the ggml type id): its bytes are
  // opaque blocks, `type` is U8 and `shape` the byte shape, whose innermost dimension counts
  // bytes (ne0 / block size * block bytes). element_shape() in gguf/ggml_type.h undoes that.
  std::optional<std::uint32_t> ggml_blocks;

  std::uint64_t nbytes() const { return end - begin; }
  std::uint64_t numel() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }
};

// "[768, 2048]"
std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace moereg
