// tensor_info.h - what a safetensors header says about one tensor.
#pragma once

#include <cstdint>
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
