// SPDX-License-Identifier: Apache-2.0
// moereg plugins check DIR: a plugin author's checker - every problem of a plugin at once.
#include <iostream>

#include "api_result.h"
#include "moereg/base/printable.h"
#include "plugins_commands.h"

namespace moereg::cli {

int plugins_check(const app::plugins_request& request, const std::string& dir, bool as_json) {
  const app::plugin_check_report c = take(app::check_plugin(request, dir));
  if (as_json) {
    std::cout << c.json << "\n";
  } else if (c.problems.empty()) {
    for (const auto& n : c.notes) std::cout << "note: " << printable_message(n) << "\n";
    std::cout << printable(dir) << ": ok: plugin '" << printable(c.name) << "' version " << printable(c.version)
              << ", plugin API " << c.api_version
              << (c.library.empty() ? ", YAML only" : ", library " + printable(c.library) + " loaded and agrees with plugin.yaml")
              << "\n";
  } else {
    for (const auto& p : c.problems) std::cout << printable_message(p) << "\n";
    for (const auto& n : c.notes) std::cout << "note: " << printable_message(n) << "\n";
    std::cout << printable(dir) << ": " << c.problems.size() << " problem(s)\n";
  }
  return c.problems.empty() ? 0 : 1;
}

}  // namespace moereg::cli
