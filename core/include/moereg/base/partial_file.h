// SPDX-License-Identifier: Apache-2.0
// partial_file.h - an output file written under a hidden temporary name beside its target
// (".NAME.partial") and renamed into place only by commit(); destroyed uncommitted, it is
// deleted. Shared by every writer so "no half-written output looks complete" holds everywhere.
// Every write and the commit also stop the job when it was cancelled (base/cancel.h) or
// one of its mapped inputs shrank under it (base/mapping_fault.h), by throwing.
// The temporary name is fixed: only the holder of the output's lock
// (checkpoint/output_lock.h) may create files in it.
#pragma once

#include <cstdint>
#include <string>

namespace moereg {

// The hidden temporary of `final_path`: DIR/.NAME.partial (one dot for a hidden NAME).
std::string partial_path_of(const std::string& final_path);

// strerror(e), with what to look at for a full filesystem (out of blocks or of inodes: both
// are "No space left on device").
std::string io_error_text(int e);

class partial_file {
 public:
  // Creates the temporary file, sized to `size` bytes (holes read as zeros).
  partial_file(std::string final_path, std::uint64_t size);
  partial_file(const partial_file&) = delete;
  partial_file& operator=(const partial_file&) = delete;
  ~partial_file();

  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }
  int fd() const { return fd_; }

  // pwrite all of it at `offset`, retrying short writes. Thread-safe for disjoint ranges.
  void write_at(std::uint64_t offset, const void* data, std::uint64_t size) const;

  // Copy `size` bytes from src_fd at src_offset to `offset` with copy_file_range (the kernel
  // copies; nothing is mapped here). Returns how many bytes it copied: fewer when the
  // filesystems cannot do that (the caller writes the rest itself).
  std::uint64_t copy_from(int src_fd, std::uint64_t src_offset, std::uint64_t offset, std::uint64_t size) const;

  // Close the file, keeping its temporary name (idempotent).
  void close();
  // Close (if still open) and rename to the final name.
  void commit();

 private:
  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace moereg
