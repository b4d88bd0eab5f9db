// SPDX-License-Identifier: Apache-2.0
// gguf_tensor_file.h - a GGUF file seen as a tensor_file, so a checkpoint can hold it like a
// safetensors file: dimensions in PyTorch order (ne reversed), F32/F16/BF16/F64/I8..I64 as
// their dtype, block-quantized types (Q4_K, ...) as opaque U8 bytes with their ggml type in
// tensor_info::ggml_blocks and the innermost dimension counted in bytes.
#pragma once

#include <string>
#include <vector>

#include "moereg/gguf/gguf_file.h"
#include "moereg/tensor/tensor_file.h"

namespace moereg {

class gguf_tensor_file : public tensor_file {
 public:
  // Maps and validates the whole header (gguf_file). Throws moereg::error naming the file.
  explicit gguf_tensor_file(const std::string& path);

  const std::string& path() const override { return gguf_.path(); }
  std::string_view container() const override { return "gguf"; }
  const std::vector<tensor_info>& tensors() const override { return tensors_; }
  std::uint64_t data_offset() const override { return gguf_.data_offset(); }
  const mapped_file& file() const override { return gguf_.file(); }

  const gguf_file& gguf() const { return gguf_; }

 private:
  gguf_file gguf_;
  std::vector<tensor_info> tensors_;
};

// The files of a split GGUF model ("name-00001-of-00003.gguf"): every part, in order, when
// `path` names part 1 of such a set; just `path` otherwise. Throws when a part is missing.
std::vector<std::string> gguf_split_parts(const std::string& path);

}  // namespace moereg
