// SPDX-License-Identifier: Apache-2.0
// tensor_file.h - one mapped, validated file of tensors, whatever its container: a
// safetensors file or a GGUF file. A checkpoint is a set of these; the executor copies
// tensor bytes out of them by file offset (data_offset() + tensor_info::begin).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "moereg/base/mapped_file.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg {

class tensor_file {
 public:
  virtual ~tensor_file() = default;

  virtual const std::string& path() const = 0;
  // "safetensors" or "gguf".
  virtual std::string_view container() const = 0;
  // Every tensor, in header order; offsets are relative to data_offset().
  virtual const std::vector<tensor_info>& tensors() const = 0;
  // Absolute file offset of the data section (everything before it is header).
  virtual std::uint64_t data_offset() const = 0;
  virtual const mapped_file& file() const = 0;

  // A tensor's first byte inside the map. Touching it reads from disk.
  const std::byte* data(const tensor_info& t) const { return file().data() + data_offset() + t.begin; }
};

}  // namespace moereg
