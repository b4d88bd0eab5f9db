// SPDX-License-Identifier: Apache-2.0
// plugin_options.h - the --plugin-path option (repeatable), for every command that needs
// plugins (plugins, convert, inspect...).
#pragma once

#include <string>
#include <vector>

#include "command.h"

namespace moereg::cli {

// Adds `--plugin-path DIR` (repeatable; searched before MOEREG_PLUGIN_PATH and the
// installed plugins) to a command's options.
void add_plugin_options(po::options_description& options);

// The --plugin-path values, in order.
std::vector<std::string> plugin_paths(const po::variables_map& vm);

}  // namespace moereg::cli
