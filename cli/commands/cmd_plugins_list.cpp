// SPDX-License-Identifier: Apache-2.0
// moereg plugins list: every plugin the registry saw, in search order, refused ones with why.
#include <iomanip>
#include <iostream>

#include "api_result.h"
#include "moereg/base/printable.h"
#include "plugins_commands.h"

namespace moereg::cli {

int plugins_list(const app::plugins_request& request, bool as_json) {
  const app::plugin_listing found = take(app::list_plugins(request));
  if (as_json) {
    std::cout << found.json << "\n";
    return 0;
  }
  std::cout << "searched, in order:\n";
  for (const auto& d : found.search_dirs)
    std::cout << "  " << std::left << std::setw(20) << d.source << printable(d.path) << (d.exists ? "" : "  (absent)") << "\n";
  if (found.plugins.empty()) {
    std::cout << "no plugins found\n";
    return 0;
  }
  std::cout << "\n" << std::left << std::setw(16) << "NAME" << std::setw(9) << "KIND" << std::setw(10) << "VERSION"
            << std::setw(5) << "API" << std::setw(10) << "STATE" << std::setw(20) << "SOURCE"
            << "PATH\n";
  for (const auto& p : found.plugins) {
    std::cout << std::left << std::setw(16) << printable(p.name) << std::setw(9) << p.kind << std::setw(10)
              << (p.version.empty() ? "-" : printable(p.version)) << std::setw(5)
              << (p.api_version ? std::to_string(p.api_version) : "-") << std::setw(10) << p.state << std::setw(20)
              << p.source << printable(p.path) << "\n";
    if (!p.reason.empty()) std::cout << "    " << p.state << ": " << printable_message(p.reason) << "\n";
  }
  return 0;
}

}  // namespace moereg::cli
