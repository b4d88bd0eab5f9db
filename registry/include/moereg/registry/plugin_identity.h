// SPDX-License-Identifier: Apache-2.0
// plugin_identity.h - the registry's half of plugin.yaml: the top-level keys that say what a
// plugin is (name, version, api_version, library, hooks...). Reading never throws for bad
// content: every problem is collected as "file:line: what, expected X, found Y".
// The layout engine validates the rest (detect, dims, layouts, renames, routing, native).
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

namespace moereg {

struct plugin_identity {
  std::string path;  // the plugin.yaml read
  YAML::Node root;   // null when the file could not be parsed
  std::string name, version, description, extends, library, library_sha256;
  int api_version = 0;
  std::vector<std::string> model_types;
  std::vector<std::string> hooks;
  std::map<std::string, int> key_lines;  // top-level key -> 1-based line

  // Problems that make the plugin unusable; the registry refuses it with the first few.
  std::vector<std::string> errors;
  // Problems loading tolerates (unknown top-level keys: the engine's check owns those).
  std::vector<std::string> warnings;

  // "path:line" for a top-level key (line 1 when the key is absent).
  std::string where(const std::string& key) const;
};

// Top-level keys the layout engine owns (core/src/layout/family_spec_parser.cpp); the
// registry accepts them without looking inside. Used only where the engine's own check
// (which also reports unknown keys) is not available.
const std::vector<std::string>& engine_manifest_keys();

// Reads and checks plugin.yaml. Also checks that `library` exists beside it.
plugin_identity read_plugin_identity(const std::string& yaml_path);

}  // namespace moereg
