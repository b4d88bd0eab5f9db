// SPDX-License-Identifier: Apache-2.0
#include "free_space.h"

#include <sys/vfs.h>

#include <filesystem>

namespace moereg::app {

std::optional<std::uint64_t> free_bytes(const std::string& dir) {
  std::error_code ec;
  const std::filesystem::space_info s = std::filesystem::space(dir, ec);
  if (ec || s.available == static_cast<std::uintmax_t>(-1)) return std::nullopt;
  return static_cast<std::uint64_t>(s.available);
}

bool on_tmpfs(const std::string& dir) {
  constexpr long tmpfs_magic = 0x01021994;
  struct statfs f {};
  return ::statfs(dir.c_str(), &f) == 0 && f.f_type == tmpfs_magic;
}

}  // namespace moereg::app
