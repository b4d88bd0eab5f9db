// SPDX-License-Identifier: Apache-2.0
#include "plugin_options.h"

namespace moereg::cli {

void add_plugin_options(po::options_description& options) {
  options.add_options()("plugin-path", po::value<std::vector<std::string>>()->composing(),
                        "search DIR for plugins before MOEREG_PLUGIN_PATH and the installed ones (repeatable)");
}

std::vector<std::string> plugin_paths(const po::variables_map& vm) {
  return vm.count("plugin-path") ? vm["plugin-path"].as<std::vector<std::string>>() : std::vector<std::string>{};
}

}  // namespace moereg::cli
