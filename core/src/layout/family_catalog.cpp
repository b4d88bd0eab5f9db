// SPDX-License-Identifier: Apache-2.0
#include "moereg/layout/family_catalog.h"

#include <algorithm>
#include <set>

#include "moereg/base/error.h"

namespace moereg {

namespace {

const std::set<std::string> identity_keys = {"name",  "version", "api_version", "description", "model_types",
                                             "library", "library_sha256", "hooks", "native_config", "variants", "extends"};

// Layouts merge by name; everything else in `over` replaces `base`.
YAML::Node overlay(const YAML::Node& base, const YAML::Node& over, bool inherit_identity) {
  YAML::Node out = YAML::Clone(base);
  if (!inherit_identity)
    for (const auto& k : identity_keys)
      if (out[k]) out.remove(k);
  for (const auto& kv : over) {
    std::string k = kv.first.as<std::string>();
    if (k == "layouts" && out["layouts"] && kv.second.IsMap()) {
      for (const auto& l : kv.second) out["layouts"][l.first.as<std::string>()] = YAML::Clone(l.second);
    } else {
      out[k] = YAML::Clone(kv.second);
    }
  }
  return out;
}

}  // namespace

family_catalog::family_catalog(std::vector<plugin_manifest> manifests) : manifests_(std::move(manifests)) {}

const plugin_manifest* family_catalog::find(const std::string& plugin) const {
  for (const auto& m : manifests_)
    if (m.name == plugin) return &m;
  return nullptr;
}

std::vector<std::string> family_catalog::plugins_for(const std::string& model_type) const {
  std::vector<std::string> primary, secondary;
  for (const auto& m : manifests_) {
    bool claims = false;
    if (m.root["model_types"] && m.root["model_types"].IsSequence())
      for (const auto& t : m.root["model_types"]) claims |= t.as<std::string>() == model_type;
    if (claims) primary.push_back(m.name);
    else if (m.root["variants"] && m.root["variants"][model_type]) secondary.push_back(m.name);
  }
  primary.insert(primary.end(), secondary.begin(), secondary.end());
  return primary;
}

std::vector<std::string> family_catalog::known_model_types() const {
  std::set<std::string> out;
  for (const auto& m : manifests_)
    if (m.root["model_types"] && m.root["model_types"].IsSequence())
      for (const auto& t : m.root["model_types"]) out.insert(t.as<std::string>());
  return {out.begin(), out.end()};
}

YAML::Node family_catalog::merged(const std::string& plugin, const std::string& model_type, int depth) const {
  if (depth > 8) throw error("plugin '" + plugin + "': 'extends' chain deeper than 8 (a cycle?)");
  const plugin_manifest* m = find(plugin);
  if (!m) throw error("no family plugin named '" + plugin + "'");
  YAML::Node node = YAML::Clone(m->root);
  if (node["variants"]) {
    if (!model_type.empty() && node["variants"][model_type]) node = overlay(node, node["variants"][model_type], true);
    node.remove("variants");
  }
  if (node["extends"]) {
    std::string parent = node["extends"].as<std::string>();
    if (!find(parent))
      throw error(m->path + ":" + std::to_string(m->root["extends"] ? m->root["extends"].Mark().line + 1 : 1) +
                  ": extends '" + parent + "', but no family plugin of that name was found");
    YAML::Node base = merged(parent, model_type, depth + 1);
    YAML::Node own = node;
    own.remove("extends");
    node = overlay(base, own, false);
  }
  return node;
}

family_spec family_catalog::resolve(const std::string& plugin, const std::string& model_type) const {
  const plugin_manifest* m = find(plugin);
  if (!m) throw error("no family plugin named '" + plugin + "'");
  return parse_family_spec(merged(plugin, model_type), m->path, model_type);
}

std::vector<std::string> family_catalog::check(const plugin_manifest& m) const {
  std::vector<std::string> errors;
  if (!m.root.IsMap()) return {m.path + ":1: plugin.yaml must be a map of keys"};
  std::vector<std::string> types;
  if (m.root["variants"] && m.root["variants"].IsMap())
    for (const auto& kv : m.root["variants"]) types.push_back(kv.first.as<std::string>());
  if (types.empty()) types.push_back("");
  for (const auto& t : types) {
    YAML::Node node;
    try {
      family_catalog with_self = *this;
      if (!with_self.find(m.name)) with_self.manifests_.push_back(m);
      else
        for (auto& x : with_self.manifests_)
          if (x.name == m.name) x = m;
      node = with_self.merged(m.name, t);
    } catch (const error& e) {
      errors.push_back(e.what());
      continue;
    }
    // Identity keys come from the manifest itself, not its parent.
    for (const auto& k : {"name", "version", "api_version", "model_types", "library", "hooks", "native_config"})
      if (m.root[k]) node[k] = m.root[k];
    for (auto& e : check_family_manifest(node, m.path)) errors.push_back(std::move(e));
  }
  std::sort(errors.begin(), errors.end());
  errors.erase(std::unique(errors.begin(), errors.end()), errors.end());
  return errors;
}

}  // namespace moereg
