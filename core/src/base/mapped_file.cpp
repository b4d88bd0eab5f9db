// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "moereg/base/error.h"
#include "moereg/base/mapping_fault.h"
#include "moereg/base/regular_file.h"

namespace moereg {

mapped_file::mapped_file(std::string path) : path_(std::move(path)) {
  struct stat st {};
  int fd = open_regular_file(path_, &st);  // a FIFO would block open() past ^C
  size_ = static_cast<std::uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw error(path_ + ": cannot map: " + std::strerror(e));
    }
    data_ = static_cast<const std::byte*>(p);
    // Opening a checkpoint reads headers only: without this the kernel reads ahead megabytes
    // of tensor data around each header. Readers of tensor data ask for sequential access.
    ::madvise(p, size_, MADV_RANDOM);
    register_mapping(p, size_, fd);
  }
  fd_ = fd;  // kept: contiguous copies go file to file with copy_file_range
}

mapped_file::mapped_file(mapped_file&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      fd_(std::exchange(other.fd_, -1)) {}

mapped_file& mapped_file::operator=(mapped_file&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

mapped_file::~mapped_file() { release(); }

void mapped_file::release() noexcept {
  if (data_) {
    unregister_mapping(data_);
    ::munmap(const_cast<std::byte*>(data_), size_);
  }
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

namespace {
void advise(const std::byte* base, std::uint64_t size, std::uint64_t offset, std::uint64_t length, int advice) {
  if (!base || offset >= size) return;
  static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  std::uint64_t begin = offset / page * page;
  std::uint64_t end = std::min(size, offset + std::min(length, size - offset));
  ::madvise(const_cast<std::byte*>(base) + begin, end - begin, advice);
}
}  // namespace

void prefetch_range(const void* p, std::uint64_t length) {
  static const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t begin = a / page * page;
  ::madvise(reinterpret_cast<void*>(begin), a + length - begin, MADV_SEQUENTIAL);
  ::madvise(reinterpret_cast<void*>(begin), a + length - begin, MADV_WILLNEED);
}

void release_range(const void* p, std::uint64_t length) {
  static const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t begin = a / page * page;
  ::madvise(reinterpret_cast<void*>(begin), a + length - begin, MADV_DONTNEED);
}

void mapped_file::will_need(std::uint64_t offset, std::uint64_t length) const {
  advise(data_, size_, offset, length, MADV_SEQUENTIAL);
  advise(data_, size_, offset, length, MADV_WILLNEED);
}

void mapped_file::dont_need(std::uint64_t offset, std::uint64_t length) const {
  advise(data_, size_, offset, length, MADV_DONTNEED);
}

}  // namespace moereg
