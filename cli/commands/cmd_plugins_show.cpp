// SPDX-License-Identifier: Apache-2.0
// moereg plugins show NAME: one plugin's record, layouts, and which library serves each hook.
#include <iomanip>
#include <iostream>
#include <map>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "moereg/registry/plugin_registry.h"
#include "plugins_commands.h"
#include "moereg/layout/family_catalog.h"
#include "session.h"

namespace moereg::cli {

namespace {

// The catalog's view of a usable record (refused and shadowed ones are not in the catalog).
const family_manifest* usable_manifest(const family_catalog& cat, const plugin_record& r) {
  const family_manifest* m = cat.find(r.name);
  return m && m->path == r.manifest_path ? m : nullptr;
}

void print_list(const char* label, const std::vector<std::string>& items) {
  std::cout << "  " << std::left << std::setw(14) << label;
  if (items.empty()) std::cout << "-";
  for (std::size_t i = 0; i < items.size(); ++i) std::cout << (i ? ", " : "") << printable(items[i]);
  std::cout << "\n";
}

// Which plugin's library serves each hook of the family, by the catalog's one rule (the
// rule conversions use), for every model_type the plugin resolves for.
std::map<std::string, std::string> hook_plugins(const family_catalog& cat, const family_manifest& m) {
  std::map<std::string, std::string> out;
  std::vector<std::string> types = m.model_types;
  types.insert(types.end(), m.variant_types.begin(), m.variant_types.end());
  if (types.empty()) types.push_back("");
  for (const auto& t : types) {
    try {
      for (const auto& [hook, plugin] : cat.resolve(m.name, t).hook_plugins) out.emplace(hook, plugin);
    } catch (const error&) {
      // `plugins check` reports why; show says what it can.
    }
  }
  return out;
}

}  // namespace

int plugins_show(plugin_registry& reg, const std::string& name, bool as_json) {
  reg.load_all();
  family_catalog cat = app::make_catalog(reg);
  std::vector<const plugin_record*> found;
  for (const auto& r : reg.records())
    if (r.name == name) found.push_back(&r);
  if (found.empty()) {
    std::string where;
    for (const auto& d : reg.search_dirs()) where += (where.empty() ? "" : ", ") + d.path;
    throw error("no plugin named '" + name + "' found, searched: " + where + " (see: moereg plugins list)");
  }
  if (as_json) {
    json::array arr;
    for (const auto* r : found) {
      json::value v = record_json(*r);
      json::array layouts;
      json::value hooks = json::object{};
      const family_manifest* m = usable_manifest(cat, *r);
      if (m) {
        for (const auto& l : m->layout_names) layouts.emplace_back(l);
        for (const auto& [hook, plugin] : hook_plugins(cat, *m)) hooks.set(hook, plugin);
      }
      v.set("layouts", std::move(layouts));
      v.set("hook_plugins", std::move(hooks));
      arr.push_back(std::move(v));
    }
    std::cout << json::dump(json::value(std::move(arr)), 2) << "\n";
    return 0;
  }
  for (const auto* r : found) {
    std::cout << printable(r->name) << " (" << to_string(r->kind) << ")\n";
    auto line = [](const char* label, const std::string& value) {
      std::cout << "  " << std::left << std::setw(14) << label << (value.empty() ? "-" : printable_message(value)) << "\n";
    };
    line("state", to_string(r->state));
    if (!r->reason.empty()) line("reason", r->reason);
    line("version", r->version);
    line("api version", r->api_version ? std::to_string(r->api_version) : "");
    line("source", r->source);
    line("directory", r->directory);
    if (r->kind == plugin_kind::family) line("manifest", r->manifest_path);
    line("library", r->library_path);
    if (r->kind == plugin_kind::backend) {
      line("probe score", r->probe_score < 0 ? "" : std::to_string(r->probe_score));
      continue;
    }
    const family_manifest* m = usable_manifest(cat, *r);
    if (m) {
      if (!m->description.empty()) line("description", m->description);
      if (!m->extends.empty()) line("extends", m->extends);
      if (!m->library_sha256.empty()) line("sha256", m->library_sha256);
    }
    print_list("model types", r->model_types);
    print_list("hooks", r->hooks);
    print_list("layouts", m ? m->layout_names : std::vector<std::string>{});
    if (m) {
      std::vector<std::string> served;
      for (const auto& [hook, plugin] : hook_plugins(cat, *m)) served.push_back(hook + " (" + plugin + ")");
      if (!served.empty()) print_list("hooks served", served);
    }
  }
  return 0;
}

}  // namespace moereg::cli
