// SPDX-License-Identifier: Apache-2.0
#include "plugin_options.h"

namespace moereg::cli {

void add_plugin_options(po::options_description& options) {
  options.add_options()("plugin-path", po::value<std::vector<std::string>>()->composing(),
                        "search DIR for plugins before MOEREG_PLUGIN_PATH and the installed ones (repeatable)");
}

std::unique_ptr<plugin_registry> make_registry(const po::variables_map& vm, const std::vector<std::string>& forbidden_dirs) {
  registry_options opts;
  if (vm.count("plugin-path")) opts.plugin_paths = vm["plugin-path"].as<std::vector<std::string>>();
  opts.forbidden_dirs = forbidden_dirs;
  return std::make_unique<plugin_registry>(opts);
}

}  // namespace moereg::cli
