// SPDX-License-Identifier: Apache-2.0
// plugin_options.h - the --plugin-path option (repeatable) and the plugin registry built
// from it, for every command that needs plugins (plugins, convert, inspect...).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "moereg/registry/plugin_registry.h"

namespace moereg::cli {

// Adds `--plugin-path DIR` (repeatable; searched before MOEREG_PLUGIN_PATH and the
// installed plugins) to a command's options.
void add_plugin_options(po::options_description& options);

// The --plugin-path values, in order.
std::vector<std::string> plugin_paths(const po::variables_map& vm);

// The registry for this command. `forbidden_dirs` are directories no plugin code may be
// loaded from: pass the checkpoint directories the command reads.
std::unique_ptr<plugin_registry> make_registry(const po::variables_map& vm,
                                               const std::vector<std::string>& forbidden_dirs = {});

}  // namespace moereg::cli
