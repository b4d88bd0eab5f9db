// SPDX-License-Identifier: Apache-2.0
// moereg plugins list|show NAME|check DIR: what the registry found, from where, and what it
// refused and why; and a plugin author's checker that reports every problem at once.
#include <algorithm>
#include <filesystem>
#include <map>
#include <iomanip>
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/base/json.h"
#include "moereg/registry/plugin_check.h"
#include "moereg/layout/family_catalog.h"
#include "session.h"
#include "plugin_options.h"

namespace moereg::cli {

namespace {

std::string shown_path(const plugin_record& r) {
  if (r.kind == plugin_kind::family) return r.directory;
  return r.library_path.empty() ? r.directory : r.library_path;
}

json::value record_json(const plugin_record& r) {
  json::value v = json::object{};
  v.set("name", r.name);
  v.set("kind", to_string(r.kind));
  v.set("version", r.version);
  v.set("api_version", r.api_version);
  v.set("state", to_string(r.state));
  v.set("source", r.source);
  v.set("path", shown_path(r));
  v.set("manifest", r.manifest_path);
  v.set("library", r.library_path);
  v.set("reason", r.reason);
  if (r.kind == plugin_kind::backend) v.set("probe_score", r.probe_score);
  json::array types, hooks;
  for (const auto& t : r.model_types) types.emplace_back(t);
  for (const auto& h : r.hooks) hooks.emplace_back(h);
  v.set("model_types", std::move(types));
  v.set("hooks", std::move(hooks));
  return v;
}

json::value search_dirs_json(const plugin_registry& reg) {
  json::array dirs;
  for (const auto& d : reg.search_dirs()) {
    json::value v = json::object{};
    v.set("path", d.path);
    v.set("source", d.source);
    v.set("exists", d.exists);
    dirs.push_back(std::move(v));
  }
  return dirs;
}

int list(plugin_registry& reg, bool as_json) {
  reg.load_all();
  if (as_json) {
    json::value out = json::object{};
    out.set("search_dirs", search_dirs_json(reg));
    json::array plugins;
    for (const auto& r : reg.records()) plugins.push_back(record_json(r));
    out.set("plugins", std::move(plugins));
    std::cout << json::dump(out, 2) << "\n";
    return 0;
  }
  std::cout << "searched, in order:\n";
  for (const auto& d : reg.search_dirs())
    std::cout << "  " << std::left << std::setw(20) << d.source << printable(d.path) << (d.exists ? "" : "  (absent)") << "\n";
  if (reg.records().empty()) {
    std::cout << "no plugins found\n";
    return 0;
  }
  std::cout << "\n" << std::left << std::setw(16) << "NAME" << std::setw(9) << "KIND" << std::setw(10) << "VERSION"
            << std::setw(5) << "API" << std::setw(10) << "STATE" << std::setw(20) << "SOURCE"
            << "PATH\n";
  for (const auto& r : reg.records()) {
    std::cout << std::left << std::setw(16) << printable(r.name) << std::setw(9) << to_string(r.kind) << std::setw(10)
              << (r.version.empty() ? "-" : printable(r.version)) << std::setw(5)
              << (r.api_version ? std::to_string(r.api_version) : "-") << std::setw(10) << to_string(r.state)
              << std::setw(20) << r.source << printable(shown_path(r)) << "\n";
    if (!r.reason.empty()) std::cout << "    " << to_string(r.state) << ": " << printable_message(r.reason) << "\n";
  }
  return 0;
}

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

int show(plugin_registry& reg, const std::string& name, bool as_json) {
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

// The layout engine's half of the check (dims, layouts, routing... and unknown keys),
// resolved against the other plugins found so that `extends` works.
void engine_check(const plugin_registry& reg, const std::string& dir, plugin_check_result& c, std::vector<std::string>& notes) {
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

int check(const plugin_registry& reg, const std::string& dir, bool as_json) {
  plugin_check_result c = check_plugin_dir(dir);
  std::vector<std::string> notes;
  engine_check(reg, dir, c, notes);
  if (as_json) {
    json::value out = json::object{};
    out.set("directory", dir);
    out.set("ok", c.problems.empty());
    out.set("name", c.name);
    out.set("version", c.version);
    out.set("api_version", c.api_version);
    out.set("library", c.library);
    out.set("library_loaded", c.library_loaded);
    json::array problems;
    for (const auto& p : c.problems) problems.emplace_back(p);
    out.set("problems", std::move(problems));
    json::array note_list;
    for (const auto& n : notes) note_list.emplace_back(n);
    out.set("notes", std::move(note_list));
    std::cout << json::dump(out, 2) << "\n";
  } else if (c.problems.empty()) {
    for (const auto& n : notes) std::cout << "note: " << printable_message(n) << "\n";
    std::cout << printable(dir) << ": ok: plugin '" << printable(c.name) << "' version " << printable(c.version) << ", plugin API "
              << c.api_version
              << (c.library.empty() ? ", YAML only" : ", library " + printable(c.library) + " loaded and agrees with plugin.yaml")
              << "\n";
  } else {
    for (const auto& p : c.problems) std::cout << printable_message(p) << "\n";
    for (const auto& n : notes) std::cout << "note: " << printable_message(n) << "\n";
    std::cout << printable(dir) << ": " << c.problems.size() << " problem(s)\n";
  }
  return c.problems.empty() ? 0 : 1;
}

}  // namespace

int run_plugins(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("plugins [list | show NAME | check DIR] [--plugin-path DIR]... [--json]",
                   "list: every plugin and backend found, in search order (--plugin-path DIRs, then\n"
                   "MOEREG_PLUGIN_PATH, then those installed beside the binary), with its version, plugin API,\n"
                   "state (loaded, available, refused, shadowed), where it came from, and why it was refused.\n"
                   "show NAME: one plugin's record and manifest summary.\n"
                   "check DIR: every problem with the plugin in DIR, each as file:line: what was expected;\n"
                   "exit status 1 if there is any.");
  p.options().add_options()("action", po::value<std::string>()->default_value("list"), "list, show or check")(
      "operand", po::value<std::vector<std::string>>(), "NAME for show, DIR for check");
  add_plugin_options(p.options());
  p.positional("action", 1).positional("operand", -1);
  auto vm = p.parse(args, globals);
  std::string action = vm["action"].as<std::string>();
  std::vector<std::string> operands;
  if (vm.count("operand")) operands = vm["operand"].as<std::vector<std::string>>();
  auto want = [&](std::size_t n, const char* what) {
    if (operands.size() != n)
      throw usage_error("plugins " + action + " takes " + what + ", found " + std::to_string(operands.size()) +
                        " argument(s)\n(see: moereg plugins --help)");
  };
  if (action == "list") {
    want(0, "no argument");
    return list(*make_registry(vm), globals.json);
  }
  if (action == "show") {
    want(1, "one NAME");
    return show(*make_registry(vm), operands[0], globals.json);
  }
  if (action == "check") {
    want(1, "one DIR");
    return check(*make_registry(vm), operands[0], globals.json);
  }
  throw usage_error("unknown plugins action '" + action + "', expected list, show or check\n(see: moereg plugins --help)");
}

}  // namespace moereg::cli
