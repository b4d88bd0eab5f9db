// SPDX-License-Identifier: Apache-2.0
// mapping_fault.h - a mapped input file that shrinks under a job becomes an error naming
// the file, not a SIGBUS that kills the process and leaves its partial output behind.
//
// Every mapped_file registers its mapping here. While a mapping_fault_guard lives (every
// checkpoint_writer holds one), a SIGBUS on a page of a registered mapping - what touching
// a page past the end of a truncated file raises - is absorbed: a page of zeros is mapped
// in its place and the fault is recorded. Those zeros never reach a complete output:
// every partial_file write and commit calls throw_if_mapping_fault(), which throws an
// error naming the file and its new size, and commit also checks that no registered file
// shrank (bytes past the new end inside the last page read as zeros without any fault).
// pwrite and copy_file_range from a truncated mapping fail with EFAULT instead of
// faulting; partial_file turns that into the same error via throw_if_shrunk(). A SIGBUS
// elsewhere, or with no guard alive, kills the process as before.
#pragma once

#include <cstdint>

namespace moereg {

class mapping_fault_guard {
 public:
  mapping_fault_guard();  // installs the SIGBUS handler the first time
  ~mapping_fault_guard();
  mapping_fault_guard(const mapping_fault_guard&) = delete;
  mapping_fault_guard& operator=(const mapping_fault_guard&) = delete;
};

// Called by mapped_file: [begin, begin + size) maps the file open as fd.
void register_mapping(const void* begin, std::uint64_t size, int fd) noexcept;
void unregister_mapping(const void* begin) noexcept;

// Throws moereg::error naming the file if a guarded read of a mapping faulted.
void throw_if_mapping_fault();
// Throws moereg::error naming the first registered file now smaller than its mapping.
void throw_if_any_mapping_shrunk();
// After a system call reading from `p` failed with EFAULT: throws naming the mapped file
// holding p if that file shrank; does nothing otherwise.
void throw_if_shrunk(const void* p);

}  // namespace moereg
