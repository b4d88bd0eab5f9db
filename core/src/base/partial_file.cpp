// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/partial_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/base/mapping_fault.h"

namespace moereg {

std::string partial_path_of(const std::string& final_path) {
  const std::filesystem::path p(final_path);
  const std::string name = p.filename().string();
  return (p.parent_path() / ((name.rfind('.', 0) == 0 ? "" : ".") + name + ".partial")).string();
}

std::string io_error_text(int e) {
  std::string s = std::strerror(e);
  if (e == ENOSPC) s += " (out of free blocks or of inodes: see df -h and df -i)";
  return s;
}

namespace {
[[noreturn]] void io_fail(const std::string& path, const char* what) {
  throw error(path + ": " + what + ": " + io_error_text(errno));
}
}  // namespace

partial_file::partial_file(std::string final_path, std::uint64_t size) : final_path_(std::move(final_path)) {
  temp_path_ = partial_path_of(final_path_);
  // O_EXCL: never truncate a file this object did not create (the destructor unlinks it).
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0 && errno == EEXIST)
    throw error(temp_path_ + ": exists: another process is writing " + final_path_ +
                " now (or one was killed while writing it: remove the file if no other process runs)");
  if (fd_ < 0) io_fail(temp_path_, "cannot create");
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    int e = errno;
    ::close(fd_);
    ::unlink(temp_path_.c_str());
    errno = e;
    io_fail(temp_path_, "cannot size");
  }
}

partial_file::~partial_file() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void partial_file::write_at(std::uint64_t offset, const void* data, std::uint64_t size) const {
  throw_if_cancelled();
  auto p = static_cast<const char*>(data);
  while (size) {
    ssize_t w = ::pwrite(fd_, p, std::min<std::uint64_t>(size, 1u << 30), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EFAULT) throw_if_shrunk(p);  // the bytes came from a mapped input that shrank
      io_fail(temp_path_, "cannot write");
    }
    p += w;
    offset += static_cast<std::uint64_t>(w);
    size -= static_cast<std::uint64_t>(w);
  }
  // The bytes may have been staged from a mapped input whose pages faulted (zeros).
  throw_if_mapping_fault();
}

std::uint64_t partial_file::copy_from(int src_fd, std::uint64_t src_offset, std::uint64_t offset, std::uint64_t size) const {
  loff_t in = static_cast<loff_t>(src_offset);
  loff_t out = static_cast<loff_t>(offset);
  std::uint64_t left = size;
  while (left && src_fd >= 0) {
    throw_if_cancelled();
    ssize_t n = ::copy_file_range(src_fd, &in, fd_, &out, std::min<std::uint64_t>(left, 1u << 30), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) break;  // caller writes the rest
      io_fail(temp_path_, "cannot copy");
    }
    if (n == 0) break;
    left -= static_cast<std::uint64_t>(n);
  }
  return size - left;
}

void partial_file::close() {
  if (fd_ < 0) return;
  // Past the last page of a truncated input, reads fault; inside it they return zeros.
  throw_if_any_mapping_shrunk();
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) io_fail(temp_path_, "cannot close");
}

void partial_file::commit() {
  close();
  throw_if_cancelled();
  throw_if_any_mapping_shrunk();
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) io_fail(final_path_, "cannot rename into place");
  committed_ = true;
}

}  // namespace moereg
