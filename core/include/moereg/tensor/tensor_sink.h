// SPDX-License-Identifier: Apache-2.0
// tensor_sink.h - one output file whose tensor list is fixed up front, taking tensor bytes
// at offsets in any order and from any thread: what the executor writes through
// (safetensors_writer, gguf_writer). Files are written under a temporary name and appear
// under their own only on commit().
#pragma once

#include <cstdint>
#include <string>

namespace moereg {

class tensor_sink {
 public:
  virtual ~tensor_sink() = default;

  virtual const std::string& final_path() const = 0;

  // Write `size` bytes of tensor `index` starting `offset` bytes into that tensor.
  // Thread-safe for disjoint ranges.
  virtual void write(std::size_t index, std::uint64_t offset, const void* data, std::uint64_t size) = 0;

  // The same with the bytes taken from another file (src_fd at src_offset), copied by the
  // kernel where it can; `fallback` points at the same bytes in memory.
  virtual void copy_from_file(std::size_t index, std::uint64_t offset, int src_fd, std::uint64_t src_offset,
                              std::uint64_t size, const void* fallback) = 0;

  // Checks every tensor byte arrived and closes the file, still under its temporary name:
  // for the file whose appearance completes an output, which is renamed last (commit()).
  // The default leaves it all to commit().
  virtual void seal() {}

  // Checks every tensor byte arrived (unless sealed), then renames the file into place.
  virtual void commit() = 0;
};

}  // namespace moereg
