// SPDX-License-Identifier: Apache-2.0
// moereg plugins check DIR: a plugin author's checker - every problem of a plugin at once.
#include <filesystem>
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "moereg/registry/plugin_registry.h"
#include "plugins_commands.h"
#include "moereg/layout/family_catalog.h"
#include "moereg/registry/plugin_check.h"
#include "session.h"

namespace moereg::cli {

namespace {

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

}  // namespace

int plugins_check(const plugin_registry& reg, const std::string& dir, bool as_json) {
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


}  // namespace moereg::cli
