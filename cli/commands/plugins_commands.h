// SPDX-License-Identifier: Apache-2.0
// plugins_commands.h - the subcommands of `moereg plugins` (one file each) and what they share.
#pragma once

#include <string>

#include "moereg/base/json.h"
#include "moereg/registry/plugin_registry.h"

namespace moereg::cli {

int plugins_list(plugin_registry& reg, bool as_json);
int plugins_show(plugin_registry& reg, const std::string& name, bool as_json);
int plugins_check(const plugin_registry& reg, const std::string& dir, bool as_json);

// A family plugin's directory, or a backend's library.
std::string shown_path(const plugin_record& r);
// A record as --json shows it.
json::value record_json(const plugin_record& r);
// The search directories as --json shows them.
json::value search_dirs_json(const plugin_registry& reg);

}  // namespace moereg::cli
