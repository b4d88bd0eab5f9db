// SPDX-License-Identifier: Apache-2.0
// family_catalog.h - the family plugins' manifests, parsed once and resolved into family_specs.
//
// A manifest may `extends: <plugin>` to reuse another's layouts and declarations (identity
// keys - name, version, model_types, library, hooks - are never inherited), and may hold
// `variants: {<model_type>: {...}}` whose keys override the base for that model_type (one
// plugin serving deepseek_v2 and deepseek_v3). A plugin that offers a variant for a
// model_type it does not claim (mistral's native layout for mixtral) extends that family.
//
// The merge works on parsed parts that remember where each was written (file, line, column,
// plugin), so a problem in an inherited layout is reported in the parent's file at its line.
// This is the only code that reads plugin YAML beyond the registry's identity keys; the CLI
// asks it (and the family_spec it resolves) everything else.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "moereg/layout/family_spec.h"

namespace moereg {

namespace detail {
struct manifest_parts;
}

// A manifest to add: its plugin name and plugin.yaml. `root` may hold the YAML already
// loaded (tests make manifests in memory); when undefined, the catalog reads `path` with
// the strict loader (duplicate keys refused).
struct plugin_manifest {
  std::string name;
  std::string path;
  YAML::Node root;
};

// A plugin the user asked for (by --plugin-path or MOEREG_PLUGIN_PATH) that the registry
// refused: no other plugin may stand in for it, so every resolution it could serve fails.
struct refused_plugin {
  std::string name;
  std::vector<std::string> model_types;  // as far as its manifest could be read
  std::string reason;                    // the registry's refusal
};

// What the catalog knows of one plugin without resolving it.
struct family_manifest {
  std::string name, path, version, description, extends, library_sha256;
  std::vector<std::string> model_types;   // claimed
  std::vector<std::string> variant_types; // model_types with a variant
  std::vector<std::string> hooks;
  std::string native_config_file, native_config_hook;
  std::vector<std::string> layout_names;  // declared in this file (base and variants)
  std::vector<std::string> errors;        // parse problems, "file:line:column: ..."
  // false: the file does not load as YAML (a syntax error, a duplicate key); errors says why
  // and nothing else in it was read, so nothing else about it is worth reporting.
  bool readable = true;
  std::shared_ptr<const detail::manifest_parts> parts;
};

struct catalog_check {
  std::vector<std::string> problems;  // "file:line:column: ..."; the manifest is unusable
  std::vector<std::string> notes;     // worth saying, not wrong (a family without routing)
};

class family_catalog {
 public:
  family_catalog() = default;
  explicit family_catalog(const std::vector<plugin_manifest>& manifests, std::vector<refused_plugin> refused = {});

  const std::vector<family_manifest>& manifests() const { return manifests_; }
  const family_manifest* find(const std::string& plugin) const;
  const std::vector<refused_plugin>& refused() const { return refused_; }

  // Plugins claiming model_type (model_types) first, then those with a variant for it.
  std::vector<std::string> plugins_for(const std::string& model_type) const;
  std::vector<std::string> known_model_types() const;

  // The merged, parsed spec of plugin for model_type. Throws moereg::error listing every
  // problem with its file:line:column, or naming the refused plugin that would have served
  // this plugin or model_type.
  family_spec resolve(const std::string& plugin, const std::string& model_type) const;

  // Every problem of one manifest (which replaces the catalog's plugin of that name),
  // resolved for each of its variants, plus notes.
  catalog_check check(const plugin_manifest& m) const;

 private:
  family_spec resolve_into(const std::string& plugin, const std::string& model_type, std::vector<std::string>& problems) const;
  std::vector<family_manifest> manifests_;
  std::vector<refused_plugin> refused_;
};

}  // namespace moereg
