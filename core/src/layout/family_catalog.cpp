// SPDX-License-Identifier: Apache-2.0
#include "moereg/layout/family_catalog.h"

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include "family_parts.h"
#include "moereg/base/error.h"
#include "moereg/base/strict_yaml.h"

namespace moereg {

namespace {

family_manifest describe(detail::manifest_parts parts, const std::string& name_hint) {
  family_manifest m;
  m.name = parts.name.empty() ? name_hint : parts.name;
  parts.name = m.name;
  m.path = parts.path;
  m.version = parts.version;
  m.description = parts.description;
  m.library_sha256 = parts.library_sha256;
  m.extends = parts.base.extends.value;
  m.model_types = parts.model_types;
  for (const auto& [type, p] : parts.variants) m.variant_types.push_back(type);
  m.hooks = parts.hooks;
  m.native_config_file = parts.native_config_file;
  m.native_config_hook = parts.native_config_hook;
  auto add_layouts = [&](const detail::family_part& p) {
    for (const auto& l : p.layouts.value)
      if (std::find(m.layout_names.begin(), m.layout_names.end(), l.name) == m.layout_names.end()) m.layout_names.push_back(l.name);
  };
  add_layouts(parts.base);
  for (const auto& [type, p] : parts.variants) add_layouts(p);
  m.errors = parts.errors;
  m.parts = std::make_shared<const detail::manifest_parts>(std::move(parts));
  return m;
}

family_manifest load(const plugin_manifest& pm) {
  YAML::Node root = pm.root;
  if (!root.IsDefined() || (root.IsNull() && !pm.path.empty())) {
    try {
      root = load_strict_yaml_file(pm.path);
    } catch (const error& e) {
      detail::manifest_parts parts;
      parts.path = pm.path;
      parts.name = pm.name;
      parts.errors.push_back(e.what());
      family_manifest m = describe(std::move(parts), pm.name);
      m.readable = false;
      return m;
    }
  }
  return describe(detail::parse_manifest(root, pm.path), pm.name);
}

// Problems in reading order: by file, then line and column as numbers ("x:9:1" before
// "x:10:1"), duplicates dropped.
void sort_problems(std::vector<std::string>& v) {
  static const std::regex place("^(.*?):([0-9]+):([0-9]+): ");
  auto key = [](const std::string& s) {
    std::smatch m;
    if (std::regex_search(s, m, place)) return std::make_tuple(m[1].str(), std::stol(m[2].str()), std::stol(m[3].str()), s);
    return std::make_tuple(s, 0L, 0L, s);
  };
  std::sort(v.begin(), v.end(), [&](const std::string& a, const std::string& b) { return key(a) < key(b); });
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

family_catalog::family_catalog(const std::vector<plugin_manifest>& manifests, std::vector<refused_plugin> refused)
    : refused_(std::move(refused)) {
  for (const auto& pm : manifests) manifests_.push_back(load(pm));
}

const family_manifest* family_catalog::find(const std::string& plugin) const {
  for (const auto& m : manifests_)
    if (m.name == plugin) return &m;
  return nullptr;
}

std::vector<std::string> family_catalog::plugins_for(const std::string& model_type) const {
  // A refused plugin the user asked for comes first: resolving it names the refusal.
  std::vector<std::string> primary, secondary;
  for (const auto& r : refused_)
    if (r.name == model_type || contains(r.model_types, model_type)) primary.push_back(r.name);
  for (const auto& m : manifests_) {
    if (contains(m.model_types, model_type)) primary.push_back(m.name);
    else if (contains(m.variant_types, model_type)) secondary.push_back(m.name);
  }
  primary.insert(primary.end(), secondary.begin(), secondary.end());
  return primary;
}

std::vector<std::string> family_catalog::known_model_types() const {
  std::set<std::string> out;
  for (const auto& m : manifests_) out.insert(m.model_types.begin(), m.model_types.end());
  return {out.begin(), out.end()};
}

family_spec family_catalog::resolve_into(const std::string& plugin, const std::string& model_type,
                                         std::vector<std::string>& problems) const {
  const family_manifest* self = find(plugin);
  if (!self) throw error("no family plugin named '" + plugin + "'");
  std::map<std::string, const detail::manifest_parts*> owners;
  for (const auto& m : manifests_) owners.emplace(m.name, m.parts.get());

  // The chain: this plugin's base and variant, then its parent's, and so on; each step's
  // keys replace the parent's. Walked from the child, applied from the root.
  std::vector<detail::family_part> chain;
  std::set<std::string> seen;
  const family_manifest* m = self;
  while (m) {
    for (const auto& e : m->errors) problems.push_back(e);
    if (!seen.insert(m->name).second) {
      problems.push_back(chain.back().extends.at.str() + ": 'extends' leads back to '" + m->name + "' (a cycle)");
      break;
    }
    detail::family_part own = m->parts->base;
    if (const detail::family_part* v = m->parts->variant(model_type)) {
      detail::part_field<std::string> ext = v->extends.set ? v->extends : own.extends;
      detail::overlay(own, *v);
      own.extends = ext;
    }
    chain.push_back(own);
    if (!own.extends.set) break;
    m = find(own.extends.value);
    if (!m) problems.push_back(own.extends.at.str() + ": extends '" + own.extends.value + "', but no family plugin of that name was found");
  }
  detail::family_part merged;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) detail::overlay(merged, *it);
  merged.at = chain.front().at;
  return detail::finish_spec(merged, *self->parts, model_type, owners, problems);
}

family_spec family_catalog::resolve(const std::string& plugin, const std::string& model_type) const {
  for (const auto& r : refused_)
    if (r.name == plugin || (!model_type.empty() && (r.name == model_type || contains(r.model_types, model_type))))
      throw error("plugin '" + r.name + "' was asked for but refused: " + r.reason + "; no other plugin stands in for it (" +
                  (r.name == plugin ? "plugin " + plugin : "model_type " + model_type) + ")");
  std::vector<std::string> problems;
  family_spec f = resolve_into(plugin, model_type, problems);
  if (!problems.empty()) {
    sort_problems(problems);
    std::string msg = "invalid plugin manifest:";
    for (const auto& e : problems) msg += "\n  " + e;
    throw error(msg);
  }
  return f;
}

catalog_check family_catalog::check(const plugin_manifest& pm) const {
  catalog_check out;
  family_catalog with_self = *this;
  family_manifest self = load(pm);
  // Checked against an empty manifest, an unreadable file would also be "missing" every key.
  if (!self.readable) {
    out.problems = self.errors;
    return out;
  }
  std::string name = self.name;
  bool replaced = false;
  for (auto& x : with_self.manifests_)
    if (x.name == name) {
      x = self;
      replaced = true;
    }
  if (!replaced) with_self.manifests_.push_back(self);
  std::vector<std::string> types = self.variant_types;
  if (types.empty()) types.push_back("");
  for (const auto& t : types) {
    std::vector<std::string> problems;
    try {
      family_spec f = with_self.resolve_into(name, t, problems);
      // Without it every tensor outside the experts is "not claimed" at convert time, far from the cause.
      if (!f.passthrough_declared)
        out.notes.push_back(pm.path + ": family '" + name + "'" + (t.empty() ? "" : " (" + t + ")") +
                            " declares no 'passthrough' (canonical names of every tensor outside the experts, e.g. "
                            "\"model.layers.{layer}.self_attn.q_proj.weight\"), so only checkpoints of experts alone convert");
      if (!f.routing.declared)
        out.notes.push_back(pm.path + ": family '" + name + "'" + (t.empty() ? "" : " (" + t + ")") +
                            " declares no 'routing', so moe run refuses it (convert, inspect and verify do not need it)");
      else if (f.moe_block.router.empty())
        out.notes.push_back(pm.path + ": family '" + name + "'" + (t.empty() ? "" : " (" + t + ")") +
                            " declares no moe_block.router, so moe run refuses it (convert, inspect and verify do not need it)");
      else if (!f.dims.count("K"))
        out.notes.push_back(pm.path + ": family '" + name + "'" + (t.empty() ? "" : " (" + t + ")") +
                            " has no dims.K (experts per token), so moe run refuses it");
    } catch (const error& e) {
      problems.push_back(e.what());
    }
    out.problems.insert(out.problems.end(), problems.begin(), problems.end());
  }
  sort_problems(out.problems);
  sort_problems(out.notes);
  return out;
}

family_spec parse_family_spec(const YAML::Node& root, const std::string& manifest_path, const std::string& model_type) {
  family_catalog c({{"", manifest_path, root}});
  return c.resolve(c.manifests().front().name, model_type);
}

}  // namespace moereg
