// SPDX-License-Identifier: Apache-2.0
// plugins.cpp - list, show and check plugins: the registry's records and the catalog's
// reading of each family, as values and as the JSON the command line prints.
#include "moereg/app/plugins.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "guard.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/layout/family_catalog.h"
#include "moereg/registry/plugin_check.h"
#include "moereg/registry/plugin_registry.h"
#include "session.h"

namespace moereg::app {

namespace {

plugin_entry entry_of(const plugin_record& r) {
  plugin_entry e;
  e.name = r.name;
  e.kind = to_string(r.kind);
  e.version = r.version;
  e.api_version = r.api_version;
  e.state = to_string(r.state);
  e.reason = r.reason;
  e.source = r.source;
  // A family is its directory; a backend is its library.
  e.path = r.kind == plugin_kind::family || r.library_path.empty() ? r.directory : r.library_path;
  e.directory = r.directory;
  e.manifest = r.manifest_path;
  e.library = r.library_path;
  e.model_types = r.model_types;
  e.hooks = r.hooks;
  e.probe_score = r.probe_score;
  return e;
}

json::array string_array(const std::vector<std::string>& items) {
  json::array a;
  for (const auto& s : items) a.emplace_back(s);
  return a;
}

json::value entry_json(const plugin_entry& e) {
  json::value v = json::object{};
  v.set("name", e.name);
  v.set("kind", e.kind);
  v.set("version", e.version);
  v.set("api_version", e.api_version);
  v.set("state", e.state);
  v.set("source", e.source);
  v.set("path", e.path);
  v.set("manifest", e.manifest);
  v.set("library", e.library);
  v.set("reason", e.reason);
  if (e.kind == "backend") v.set("probe_score", e.probe_score);
  v.set("model_types", string_array(e.model_types));
  v.set("hooks", string_array(e.hooks));
  return v;
}

// The catalog's view of a usable record (refused and shadowed ones are not in the catalog).
const family_manifest* usable_manifest(const family_catalog& cat, const plugin_record& r) {
  const family_manifest* m = cat.find(r.name);
  return m && m->path == r.manifest_path ? m : nullptr;
}

// Which plugin's library serves each hook of the family, for every model_type it resolves for.
std::vector<std::pair<std::string, std::string>> hook_plugins(const family_catalog& cat, const family_manifest& m) {
  std::map<std::string, std::string> out;
  std::vector<std::string> types = m.model_types;
  types.insert(types.end(), m.variant_types.begin(), m.variant_types.end());
  if (types.empty()) types.push_back("");
  for (const auto& t : types) {
    try {
      for (const auto& [hook, plugin] : cat.resolve(m.name, t).hook_plugins) out.emplace(hook, plugin);
    } catch (const error&) {
      // check_plugin reports why; show says what it can.
    }
  }
  return {out.begin(), out.end()};
}

// Every layout of the family as its first model_type resolves it (extends applied); none
// when it does not resolve (check_plugin says why).
std::vector<plugin_layout> layout_details(const family_catalog& cat, const family_manifest& m) {
  std::vector<plugin_layout> out;
  try {
    const family_spec f = cat.resolve(m.name, m.model_types.empty() ? "" : m.model_types.front());
    for (const auto& l : f.layouts) out.push_back({l.name, l.aliases, l.description, l.container});
  } catch (const error&) {
  }
  return out;
}

// The layout engine's half of the check (dims, layouts, routing, unknown keys), resolved
// against the other plugins found so that `extends` works.
void engine_check(const plugin_registry& reg, const std::string& dir, plugin_check_result& c,
                  std::vector<std::string>& notes) {
  namespace fs = std::filesystem;
  std::string yaml = (fs::path(dir) / "plugin.yaml").string();
  std::error_code ec;
  if (!fs::is_regular_file(yaml, ec)) return;
  std::vector<plugin_manifest> others;
  fs::path self = fs::weakly_canonical(dir, ec);
  for (const auto* f : reg.families())
    if (fs::weakly_canonical(f->directory, ec) != self) others.push_back({f->name, f->manifest_path, {}});
  family_catalog catalog(others);
  catalog_check found = catalog.check({c.name, yaml, {}});
  // A syntax error or a duplicate key is already reported by the registry's half.
  for (auto& p : found.problems)
    if (std::find(c.problems.begin(), c.problems.end(), p) == c.problems.end()) c.problems.push_back(std::move(p));
  notes = std::move(found.notes);
}

}  // namespace

result<plugin_listing> list_plugins(const plugins_request& request) noexcept {
  return guarded([&] {
    auto reg = make_registry(request.plugin_paths);
    reg->load_all();
    plugin_listing out;
    json::array dirs, plugins;
    for (const auto& d : reg->search_dirs()) {
      out.search_dirs.push_back({d.path, d.source, d.exists});
      json::value v = json::object{};
      v.set("path", d.path);
      v.set("source", d.source);
      v.set("exists", d.exists);
      dirs.push_back(std::move(v));
    }
    for (const auto& r : reg->records()) {
      out.plugins.push_back(entry_of(r));
      plugins.push_back(entry_json(out.plugins.back()));
    }
    json::value j = json::object{};
    j.set("search_dirs", std::move(dirs));
    j.set("plugins", std::move(plugins));
    out.json = json::dump(j, 2);
    return out;
  });
}

result<plugin_details> show_plugin(const plugins_request& request, const std::string& name) noexcept {
  return guarded([&] {
    auto reg = make_registry(request.plugin_paths);
    reg->load_all();
    family_catalog cat = make_catalog(*reg);
    plugin_details out;
    json::array arr;
    for (const auto& r : reg->records()) {
      if (r.name != name) continue;
      plugin_entry e = entry_of(r);
      if (const family_manifest* m = r.kind == plugin_kind::family ? usable_manifest(cat, r) : nullptr) {
        e.description = m->description;
        e.extends = m->extends;
        e.library_sha256 = m->library_sha256;
        e.layouts = m->layout_names;
        e.layout_details = layout_details(cat, *m);
        e.hook_plugins = hook_plugins(cat, *m);
      }
      json::value v = entry_json(e);
      v.set("layouts", string_array(e.layouts));
      json::array details;
      for (const auto& l : e.layout_details) {
        json::value d = json::object{};
        d.set("name", l.name);
        d.set("aliases", string_array(l.aliases));
        d.set("description", l.description);
        d.set("container", l.container);
        details.push_back(std::move(d));
      }
      v.set("layout_details", std::move(details));
      json::value hooks = json::object{};
      for (const auto& [hook, plugin] : e.hook_plugins) hooks.set(hook, plugin);
      v.set("hook_plugins", std::move(hooks));
      arr.push_back(std::move(v));
      out.entries.push_back(std::move(e));
    }
    if (out.entries.empty()) {
      std::string where;
      for (const auto& d : reg->search_dirs()) where += (where.empty() ? "" : ", ") + d.path;
      throw error("no plugin named '" + name + "' found, searched: " + where + " (see: moereg plugins list)");
    }
    out.json = json::dump(json::value(std::move(arr)), 2);
    return out;
  });
}

result<plugin_check_report> check_plugin(const plugins_request& request, const std::string& directory) noexcept {
  return guarded([&] {
    auto reg = make_registry(request.plugin_paths);
    plugin_check_result c = check_plugin_dir(directory);
    plugin_check_report out;
    engine_check(*reg, directory, c, out.notes);
    out.directory = directory;
    out.name = c.name;
    out.version = c.version;
    out.library = c.library;
    out.api_version = c.api_version;
    out.library_loaded = c.library_loaded;
    out.problems = c.problems;
    json::value j = json::object{};
    j.set("directory", directory);
    j.set("ok", out.problems.empty());
    j.set("name", out.name);
    j.set("version", out.version);
    j.set("api_version", out.api_version);
    j.set("library", out.library);
    j.set("library_loaded", out.library_loaded);
    j.set("problems", string_array(out.problems));
    j.set("notes", string_array(out.notes));
    out.json = json::dump(j, 2);
    return out;
  });
}

}  // namespace moereg::app
