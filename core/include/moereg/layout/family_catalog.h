// SPDX-License-Identifier: Apache-2.0
// family_catalog.h - the family plugins' manifests, resolved into family_specs.
//
// A manifest may `extends: <plugin>` to reuse another's layouts and declarations (identity
// keys - name, version, model_types, library, hooks - are never inherited), and may hold
// `variants: {<model_type>: {...}}` whose keys override the base for that model_type (one
// plugin serving deepseek_v2 and deepseek_v3). A plugin that offers a variant for a
// model_type it does not claim (mistral's native layout for mixtral) extends that family.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "moereg/layout/family_spec.h"

namespace moereg {

struct plugin_manifest {
  std::string name;
  std::string path;  // plugin.yaml
  YAML::Node root;
};

class family_catalog {
 public:
  family_catalog() = default;
  explicit family_catalog(std::vector<plugin_manifest> manifests);

  const std::vector<plugin_manifest>& manifests() const { return manifests_; }
  const plugin_manifest* find(const std::string& plugin) const;

  // Plugins claiming model_type (model_types) first, then those with a variant for it.
  std::vector<std::string> plugins_for(const std::string& model_type) const;
  std::vector<std::string> known_model_types() const;

  // The merged, parsed spec of plugin for model_type. Throws moereg::error with file:line.
  family_spec resolve(const std::string& plugin, const std::string& model_type) const;

  // The merged YAML (extends and variant applied), for checks.
  YAML::Node merged(const std::string& plugin, const std::string& model_type, int depth = 0) const;

  // Every problem of one manifest, resolved against this catalog (parents found by name).
  std::vector<std::string> check(const plugin_manifest& m) const;

 private:
  std::vector<plugin_manifest> manifests_;
};

}  // namespace moereg
