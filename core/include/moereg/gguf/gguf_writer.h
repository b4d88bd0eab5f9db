// SPDX-License-Identifier: Apache-2.0
// gguf_writer.h - writes one GGUF v3 file whose metadata and tensor list are known up front.
//
// The header (metadata in the given order, then tensor infos) is laid out first; tensor
// bytes then go in with pwrite at their aligned offsets, in any order and from any thread.
// Element types are written as given; block-quantized types (Q4_K, MXFP4, ...) take the
// caller's blocks untouched. The file is written as ".<name>.partial" beside the target
// and renamed by commit(); an uncommitted writer deletes it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moereg/base/partial_file.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/tensor/tensor_sink.h"

namespace moereg {

struct gguf_tensor_spec {
  std::string name;
  ggml_type type = ggml_type::F32;
  std::vector<std::int64_t> shape;  // PyTorch order (outermost first); written reversed as ne
};

struct gguf_layout {
  std::string header;                 // everything before the data section, padding included
  std::vector<gguf_tensor> tensors;   // offsets from the data section
  std::uint32_t alignment = gguf_default_alignment;
  std::uint64_t file_size = 0;
};

// Validates the specs (names, ranks 1..4, dims > 0, ne0 a multiple of the block, no
// duplicates; general.alignment, if given, a UINT32 power of two) and lays the file out.
// Throws moereg::error naming the tensor or key.
gguf_layout layout_gguf(const gguf_metadata& metadata, const std::vector<gguf_tensor_spec>& specs);

class gguf_writer : public tensor_sink {
 public:
  gguf_writer(std::string final_path, const gguf_metadata& metadata, const std::vector<gguf_tensor_spec>& specs);
  gguf_writer(const gguf_writer&) = delete;
  gguf_writer& operator=(const gguf_writer&) = delete;
  ~gguf_writer();

  const std::vector<gguf_tensor>& tensors() const { return layout_.tensors; }
  std::uint64_t file_size() const { return layout_.file_size; }
  const std::string& temp_path() const { return file_.temp_path(); }
  const std::string& final_path() const override { return final_path_; }

  // Write `size` bytes of tensor `index`, starting `offset` bytes into it. Thread-safe for
  // disjoint ranges.
  void write(std::size_t index, std::uint64_t offset, const void* data, std::uint64_t size) override;
  // The same, copied from another file by the kernel where it can (copy_file_range).
  void copy_from_file(std::size_t index, std::uint64_t offset, int src_fd, std::uint64_t src_offset, std::uint64_t size,
                      const void* fallback) override;

  // Checks every tensor byte was written, closes, renames into place.
  void seal() override;
  void commit() override;

 private:
  std::string final_path_;
  gguf_layout layout_;
  partial_file file_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> written_;
};

}  // namespace moereg
