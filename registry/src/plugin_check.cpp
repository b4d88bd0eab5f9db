// SPDX-License-Identifier: Apache-2.0
#include "moereg/registry/plugin_check.h"

#include <filesystem>

#include "moereg/registry/plugin_identity.h"
#include "moereg/registry/plugin_trust.h"
#include "moereg/registry/sha256.h"
#include "plugin_library.h"

namespace moereg {

namespace fs = std::filesystem;

plugin_check_result check_plugin_dir(const std::string& dir) {
  plugin_check_result out;
  std::string yaml = (fs::path(dir) / "plugin.yaml").string();
  std::error_code ec;
  if (!fs::is_regular_file(yaml, ec)) {
    out.problems.push_back(dir + ": no plugin.yaml, expected a plugin directory holding plugin.yaml");
    return out;
  }
  // The rules loading applies (the directory checked is the search root here).
  if (std::string why = manifest_trust_problem(yaml, dir); !why.empty()) out.problems.push_back(why);
  plugin_identity m = read_plugin_identity(yaml);
  out.name = m.name;
  out.version = m.version;
  out.api_version = m.api_version;
  out.problems.insert(out.problems.end(), m.errors.begin(), m.errors.end());
  out.unknown_keys = m.warnings;
  if (m.library.empty() || !out.problems.empty()) return out;
  out.library = (fs::path(dir) / m.library).string();
  if (std::string why = library_trust_problem(out.library); !why.empty()) {
    out.problems.push_back(why);
    return out;
  }
  if (!m.library_sha256.empty()) {
    std::string found = sha256_file_hex(out.library);
    if (found != m.library_sha256) {
      out.problems.push_back(m.where("library_sha256") + ": library_sha256 mismatch for " + out.library + ", expected " +
                             m.library_sha256 + ", found " + found);
      return out;
    }
  }
  detail::hook_library lib;
  std::string why = detail::open_hook_library(out.library, m.name, m.where("name"), m.hooks, m.where("hooks"), lib);
  if (!why.empty()) {
    out.problems.push_back(why);
    return out;
  }
  out.library_loaded = true;
  return out;
}

}  // namespace moereg
