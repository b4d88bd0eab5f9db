// SPDX-License-Identifier: Apache-2.0
// moereg plugins show NAME: one plugin's record, layouts, and which library serves each hook.
#include <iomanip>
#include <iostream>

#include "api_result.h"
#include "moereg/base/printable.h"
#include "plugins_commands.h"

namespace moereg::cli {

namespace {

void print_line(const char* label, const std::string& value) {
  std::cout << "  " << std::left << std::setw(14) << label << (value.empty() ? "-" : printable_message(value)) << "\n";
}

void print_list(const char* label, const std::vector<std::string>& items) {
  std::cout << "  " << std::left << std::setw(14) << label;
  if (items.empty()) std::cout << "-";
  for (std::size_t i = 0; i < items.size(); ++i) std::cout << (i ? ", " : "") << printable(items[i]);
  std::cout << "\n";
}

void print_entry(const app::plugin_entry& p) {
  std::cout << printable(p.name) << " (" << p.kind << ")\n";
  print_line("state", p.state);
  if (!p.reason.empty()) print_line("reason", p.reason);
  print_line("version", p.version);
  print_line("api version", p.api_version ? std::to_string(p.api_version) : "");
  print_line("source", p.source);
  print_line("directory", p.directory);
  if (p.kind == "family") print_line("manifest", p.manifest);
  print_line("library", p.library);
  if (p.kind == "backend") {
    print_line("probe score", p.probe_score < 0 ? "" : std::to_string(p.probe_score));
    return;
  }
  if (!p.description.empty()) print_line("description", p.description);
  if (!p.extends.empty()) print_line("extends", p.extends);
  if (!p.library_sha256.empty()) print_line("sha256", p.library_sha256);
  print_list("model types", p.model_types);
  print_list("hooks", p.hooks);
  if (p.layout_details.empty()) print_list("layouts", p.layouts);
  // One line a layout: what convert --to takes, and what the plugin says it is.
  for (std::size_t i = 0; i < p.layout_details.size(); ++i) {
    const app::plugin_layout& l = p.layout_details[i];
    std::string line = l.name;
    if (!l.aliases.empty()) {
      line += " (also";
      for (std::size_t k = 0; k < l.aliases.size(); ++k) line += (k ? ", " : " ") + l.aliases[k];
      line += ")";
    }
    if (l.container != "safetensors") line += " [" + l.container + "]";
    if (!l.description.empty()) line += ": " + l.description;
    print_line(i ? "" : "layouts", line);
  }
  std::vector<std::string> served;
  for (const auto& [hook, plugin] : p.hook_plugins) served.push_back(hook + " (" + plugin + ")");
  if (!served.empty()) print_list("hooks served", served);
}

}  // namespace

int plugins_show(const app::plugins_request& request, const std::string& name, bool as_json) {
  const app::plugin_details found = take(app::show_plugin(request, name));
  if (as_json) std::cout << found.json << "\n";
  else
    for (const auto& p : found.entries) print_entry(p);
  return 0;
}

}  // namespace moereg::cli
