// SPDX-License-Identifier: Apache-2.0
// safetensors_reader.h - a safetensors file, mapped and validated before any tensor is used.
//
// Validation follows the reference implementation (the Rust safetensors crate), in its
// order: at least 8 bytes; header length <= 100,000,000 and within the file; UTF-8 JSON
// object; for every tensor a known dtype, non-negative shape, element count x dtype size
// (overflow-checked) equal to its byte range; ranges sorted, neither reversed nor
// overlapping, covering the data section exactly; __metadata__ a string-to-string map.
// Every violation throws moereg::error "<file>: header: <what>, expected <what>".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "moereg/base/mapped_file.h"
#include "moereg/safetensors/tensor_info.h"
#include "moereg/tensor/tensor_file.h"

namespace moereg {

inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

// The parsed, validated header of a safetensors file.
struct safetensors_header {
  std::vector<tensor_info> tensors;  // in header (JSON) order
  std::map<std::string, std::string> metadata;
  std::uint64_t header_size = 0;     // the JSON length N; data starts at 8 + N
  std::uint64_t data_size = 0;       // bytes of tensor data
};

// Validate a whole file image (or just its first 8 + N bytes, with file_size the real
// size) and return its header. `where` names the file in messages.
safetensors_header parse_safetensors_header(const std::byte* bytes, std::uint64_t available,
                                            std::uint64_t file_size, std::string_view where);

class safetensors_file : public tensor_file {
 public:
  // Maps and validates. Throws moereg::error on any problem.
  explicit safetensors_file(const std::string& path);

  const std::string& path() const override { return file_.path(); }
  std::string_view container() const override { return "safetensors"; }
  const std::vector<tensor_info>& tensors() const override { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  std::uint64_t header_size() const { return header_.header_size; }
  std::uint64_t data_offset() const override { return 8 + header_.header_size; }
  std::uint64_t data_size() const { return header_.data_size; }
  std::uint64_t file_size() const { return file_.size(); }

  // nullptr if the file has no tensor of that name.
  const tensor_info* find(std::string_view name) const;

  const mapped_file& file() const override { return file_; }

 private:
  mapped_file file_;
  safetensors_header header_;
  std::unordered_map<std::string_view, std::size_t> index_;
};

}  // namespace moereg
