// SPDX-License-Identifier: Apache-2.0
// abi_plugins.h - plugin directories made from the tiny ABI test libraries (tests/abi), for the
// registry's tests. MOEREG_ABI_LIB_DIR is where the build put those libraries.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "test_support.h"

namespace moereg::test {

inline std::string abi_lib(const std::string& file) { return std::string(MOEREG_ABI_LIB_DIR) + "/" + file; }

// <dir>/plugin.yaml with the given text and, if lib is given, a copy of that test library.
// The directory is 0755: the registry refuses plugins that others can write.
inline void make_plugin(const std::string& dir, const std::string& yaml, const std::string& lib = "") {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  write_bytes(dir + "/plugin.yaml", yaml);
  if (!lib.empty()) fs::copy_file(abi_lib(lib), dir + "/" + lib, fs::copy_options::overwrite_existing);
}

}  // namespace moereg::test
