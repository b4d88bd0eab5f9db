// SPDX-License-Identifier: Apache-2.0
// moereg plugins list|show NAME|check DIR: what the registry found, from where, and what it
// refused and why; and a plugin author's checker that reports every problem at once. One
// file per subcommand (cmd_plugins_*.cpp).
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "plugins_commands.h"
#include "plugin_options.h"

namespace moereg::cli {

int run_plugins(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("plugins [list | show NAME | check DIR] [--plugin-path DIR]... [--json]",
                   "list: every plugin and backend found, in search order (--plugin-path DIRs, then\n"
                   "MOEREG_PLUGIN_PATH, then those installed beside the binary), with its version, plugin API,\n"
                   "state (loaded, available, refused, shadowed), where it came from, and why it was refused.\n"
                   "show NAME: one plugin's record and manifest summary.\n"
                   "check DIR: every problem with the plugin in DIR, each as file:line:column: what was expected;\n"
                   "exit status 1 if there is any.");
  p.options().add_options()("action", po::value<std::string>()->default_value("list"), "list, show or check")(
      "operand", po::value<std::vector<std::string>>(), "NAME for show, DIR for check");
  add_plugin_options(p.options());
  p.positional("action", 1).positional("operand", -1);
  auto vm = p.parse(args, globals);
  std::string action = vm["action"].as<std::string>();
  std::vector<std::string> operands;
  if (vm.count("operand")) operands = vm["operand"].as<std::vector<std::string>>();
  auto want = [&](std::size_t n, const char* what) {
    if (operands.size() != n)
      throw usage_error("plugins " + action + " takes " + what + ", found " + std::to_string(operands.size()) +
                        " argument(s)\n(see: moereg plugins --help)");
  };
  if (action == "list") {
    want(0, "no argument");
    return plugins_list({plugin_paths(vm)}, globals.json);
  }
  if (action == "show") {
    want(1, "one NAME");
    return plugins_show({plugin_paths(vm)}, operands[0], globals.json);
  }
  if (action == "check") {
    want(1, "one DIR");
    return plugins_check({plugin_paths(vm)}, operands[0], globals.json);
  }
  throw usage_error("unknown plugins action '" + action + "', expected list, show or check\n(see: moereg plugins --help)");
}

}  // namespace moereg::cli
