// SPDX-License-Identifier: Apache-2.0
// safetensors_writer.h - writes one safetensors file whose tensor list is known up front.
//
// The header is computed from the specs and written first, byte-compatible with the
// Python safetensors library (compact JSON, __metadata__ first, padded with spaces to a
// multiple of 8); tensor bytes are then written with pwrite at their offsets, in any order
// and from any thread, so data goes from a mapped source to the file with one copy.
// The file is written under a hidden temporary name beside the target and renamed only
// by commit(); destroying an uncommitted writer deletes the temporary file.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moereg/base/partial_file.h"
#include "moereg/safetensors/tensor_info.h"
#include "moereg/tensor/tensor_sink.h"

namespace moereg {

struct tensor_spec {
  std::string name;
  dtype type = dtype::U8;
  std::vector<std::int64_t> shape;
  // GGUF block-quantized bytes (tensor_info::ggml_blocks): type U8, shape in bytes.
  std::optional<std::uint32_t> ggml_blocks{};
  std::uint64_t nbytes() const;
};

// Order tensors the way the Python safetensors library does: by dtype, widest alignment
// first (its enum order, descending), then by name. Data follows header order.
void sort_like_safetensors(std::vector<tensor_spec>& specs);

// Header bytes (8-byte length + padded JSON) and the resulting tensor offsets.
struct safetensors_layout {
  std::string header;  // includes the 8-byte length prefix
  std::vector<tensor_info> tensors;
  std::uint64_t file_size = 0;
};
safetensors_layout layout_safetensors(const std::vector<tensor_spec>& specs,
                                      const std::map<std::string, std::string>& metadata);

class safetensors_writer : public tensor_sink {
 public:
  safetensors_writer(std::string final_path, const std::vector<tensor_spec>& specs,
                     const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  safetensors_writer(const safetensors_writer&) = delete;
  safetensors_writer& operator=(const safetensors_writer&) = delete;
  ~safetensors_writer();

  const std::vector<tensor_info>& tensors() const { return layout_.tensors; }
  std::uint64_t file_size() const { return layout_.file_size; }
  const std::string& final_path() const override { return file_.final_path(); }
  const std::string& temp_path() const { return file_.temp_path(); }

  // Write `size` bytes of tensor `index` starting `offset` bytes into that tensor.
  // Thread-safe for disjoint ranges.
  void write(std::size_t index, std::uint64_t offset, const void* data, std::uint64_t size) override;

  // The same, but the bytes come from another file (src_fd at src_offset) and are copied by
  // the kernel (copy_file_range): no page of the source is mapped into this process.
  // Falls back to write(fallback) where the filesystem cannot do that.
  void copy_from_file(std::size_t index, std::uint64_t offset, int src_fd, std::uint64_t src_offset, std::uint64_t size,
                      const void* fallback) override;

  // Checks every tensor byte was written, flushes, renames to the final name.
  void seal() override;
  void commit() override;

 private:
  safetensors_layout layout_;
  partial_file file_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> written_;
};

}  // namespace moereg
