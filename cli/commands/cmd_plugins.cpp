// SPDX-License-Identifier: Apache-2.0
// moereg plugins list|show NAME|check DIR: what the registry found, from where, and what it
// refused and why; and a plugin author's checker that reports every problem at once.
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/registry/plugin_check.h"
#include "plugin_options.h"

// The layout engine's half of the check (dims, layouts, routing... and unknown keys),
// resolved against the other plugins found so that `extends` works.
#if __has_include("moereg/layout/family_catalog.h")
#include "moereg/layout/family_catalog.h"
#define MOEREG_HAVE_FAMILY_CHECK 1
#endif

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
    std::cout << "  " << std::left << std::setw(20) << d.source << d.path << (d.exists ? "" : "  (absent)") << "\n";
  if (reg.records().empty()) {
    std::cout << "no plugins found\n";
    return 0;
  }
  std::cout << "\n" << std::left << std::setw(16) << "NAME" << std::setw(9) << "KIND" << std::setw(10) << "VERSION"
            << std::setw(5) << "API" << std::setw(10) << "STATE" << std::setw(20) << "SOURCE"
            << "PATH\n";
  for (const auto& r : reg.records()) {
    std::cout << std::left << std::setw(16) << r.name << std::setw(9) << to_string(r.kind) << std::setw(10)
              << (r.version.empty() ? "-" : r.version) << std::setw(5)
              << (r.api_version ? std::to_string(r.api_version) : "-") << std::setw(10) << to_string(r.state)
              << std::setw(20) << r.source << shown_path(r) << "\n";
    if (!r.reason.empty()) std::cout << "    " << to_string(r.state) << ": " << r.reason << "\n";
  }
  return 0;
}

void print_list(const char* label, const std::vector<std::string>& items) {
  std::cout << "  " << std::left << std::setw(14) << label;
  if (items.empty()) std::cout << "-";
  for (std::size_t i = 0; i < items.size(); ++i) std::cout << (i ? ", " : "") << items[i];
  std::cout << "\n";
}

int show(plugin_registry& reg, const std::string& name, bool as_json) {
  reg.load_all();
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
      if (r->manifest && r->manifest["layouts"] && r->manifest["layouts"].IsMap())
        for (const auto& kv : r->manifest["layouts"]) layouts.emplace_back(kv.first.Scalar());
      v.set("layouts", std::move(layouts));
      arr.push_back(std::move(v));
    }
    std::cout << json::dump(json::value(std::move(arr)), 2) << "\n";
    return 0;
  }
  for (const auto* r : found) {
    std::cout << r->name << " (" << to_string(r->kind) << ")\n";
    auto line = [](const char* label, const std::string& value) {
      std::cout << "  " << std::left << std::setw(14) << label << (value.empty() ? "-" : value) << "\n";
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
    const YAML::Node& m = r->manifest;
    if (m && m.IsMap()) {
      if (m["description"] && m["description"].IsScalar()) line("description", m["description"].Scalar());
      if (m["extends"] && m["extends"].IsScalar()) line("extends", m["extends"].Scalar());
      if (m["library_sha256"] && m["library_sha256"].IsScalar()) line("sha256", m["library_sha256"].Scalar());
    }
    print_list("model types", r->model_types);
    print_list("hooks", r->hooks);
    std::vector<std::string> layouts;
    if (m && m.IsMap() && m["layouts"] && m["layouts"].IsMap())
      for (const auto& kv : m["layouts"]) layouts.push_back(kv.first.Scalar());
    print_list("layouts", layouts);
  }
  return 0;
}

void engine_check(const plugin_registry& reg, const std::string& dir, plugin_check_result& c) {
#ifdef MOEREG_HAVE_FAMILY_CHECK
  namespace fs = std::filesystem;
  std::string yaml = (fs::path(dir) / "plugin.yaml").string();
  std::error_code ec;
  if (!fs::is_regular_file(yaml, ec)) return;
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml);
  } catch (const YAML::Exception&) {
    return;  // the registry's check already reported the syntax error with its line
  }
  std::vector<plugin_manifest> others;
  fs::path self = fs::weakly_canonical(dir, ec);
  for (const auto* f : reg.families())
    if (fs::weakly_canonical(f->directory, ec) != self) others.push_back({f->name, f->manifest_path, f->manifest});
  try {
    family_catalog catalog(std::move(others));
    for (auto& p : catalog.check({c.name, yaml, root})) c.problems.push_back(std::move(p));
  } catch (const std::exception& e) {
    c.problems.push_back(yaml + ": " + e.what());
  }
#else
  (void)reg;
  (void)dir;
  c.problems.insert(c.problems.end(), c.unknown_keys.begin(), c.unknown_keys.end());
#endif
}

int check(const plugin_registry& reg, const std::string& dir, bool as_json) {
  plugin_check_result c = check_plugin_dir(dir);
  engine_check(reg, dir, c);
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
    std::cout << json::dump(out, 2) << "\n";
  } else if (c.problems.empty()) {
    std::cout << dir << ": ok: plugin '" << c.name << "' version " << c.version << ", plugin API " << c.api_version
              << (c.library.empty() ? ", YAML only" : ", library " + c.library + " loaded and agrees with plugin.yaml")
              << "\n";
  } else {
    for (const auto& p : c.problems) std::cout << p << "\n";
    std::cout << dir << ": " << c.problems.size() << " problem(s)\n";
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
