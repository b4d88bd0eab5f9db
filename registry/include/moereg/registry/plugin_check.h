// SPDX-License-Identifier: Apache-2.0
// plugin_check.h - everything the registry can say is wrong with one family plugin
// directory, all at once, for `moereg plugins check DIR`: manifest keys, trust, sha256, and
// (when all of those pass) loading the hook library and comparing its table with the manifest.
#pragma once

#include <string>
#include <vector>

namespace moereg {

struct plugin_check_result {
  std::vector<std::string> problems;  // "file:line: what, expected X, found Y"
  std::vector<std::string> unknown_keys;  // unknown top-level keys; the engine's check reports these too
  std::string name, version;          // from the manifest, when readable
  int api_version = 0;
  std::string library;                // the library path, empty for YAML alone
  bool library_loaded = false;        // the library was opened and its table agreed
};

// `dir` is a plugin directory (holding plugin.yaml). Loading runs the library's entry
// point, so it is attempted only after the trust checks pass.
plugin_check_result check_plugin_dir(const std::string& dir);

}  // namespace moereg
