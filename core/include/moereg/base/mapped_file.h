// SPDX-License-Identifier: Apache-2.0
// mapped_file.h - a read-only memory map of a whole file.
//
// Checkpoint files are mapped, never read into buffers: opening one costs a page-table
// entry per touched page, and tensor views point straight into the map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moereg {

class mapped_file {
 public:
  mapped_file() = default;
  // Maps `path` read-only. Throws moereg::error naming the file on failure.
  explicit mapped_file(std::string path);
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  ~mapped_file();

  const std::byte* data() const { return data_; }
  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // The open file descriptor (kept for copy_file_range), -1 for an empty file.
  int fd() const { return fd_; }

  // Advice to the kernel for a byte range: about to be read sequentially / done with it.
  void will_need(std::uint64_t offset, std::uint64_t length) const;
  void dont_need(std::uint64_t offset, std::uint64_t length) const;

 private:
  void release() noexcept;
  std::string path_;
  const std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
  int fd_ = -1;
};

// The same advice for any address range inside some mapping (page-aligned internally).
void prefetch_range(const void* p, std::uint64_t length);
void release_range(const void* p, std::uint64_t length);

}  // namespace moereg
