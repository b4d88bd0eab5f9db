// SPDX-License-Identifier: Apache-2.0
// moereg plugins list: every plugin the registry saw, in search order, refused ones with why.
#include <iomanip>
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "moereg/registry/plugin_registry.h"
#include "plugins_commands.h"

namespace moereg::cli {

int plugins_list(plugin_registry& reg, bool as_json) {
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

}  // namespace moereg::cli
