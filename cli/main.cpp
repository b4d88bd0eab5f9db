// SPDX-License-Identifier: Apache-2.0
// moereg - the command-line entry point: dispatches to a subcommand and maps failures
// to exit statuses (0 ok, 1 bad input or failed check, 2 usage).
#include <iomanip>
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/abi/moereg_abi.h"
#include "moereg/base/log.h"

using namespace moereg;

namespace {

void print_help() {
  std::cout << "usage: moereg [--log-level LEVEL] [--json] COMMAND [ARGS...]\n\n"
               "moereg reads, converts and runs Mixture-of-Experts checkpoints.\n\nCommands:\n";
  for (const auto& c : cli::commands()) std::cout << "  " << std::left << std::setw(10) << c.name << c.summary << "\n";
  std::cout << "\nRun `moereg COMMAND --help` for a command's options.\n"
               "Exit status: 0 success, 1 bad input or failed check, 2 usage error.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  cli::global_options globals;
  bool level_given = false;
  try {
    set_log_level("info");
    // Global options may precede the command.
    while (!args.empty() && args[0].rfind("--", 0) == 0) {
      if (args[0] == "--help" || args[0] == "-h") {
        print_help();
        return 0;
      }
      if (args[0] == "--version") {
        std::cout << "moereg 0.1.0 (plugin API " << MOEREG_PLUGIN_API_VERSION << ")\n";
        return 0;
      }
      if (args[0] == "--json") {
        globals.json = true;
        args.erase(args.begin());
      } else if (args[0] == "--log-level" && args.size() > 1) {
        globals.log_level = args[1];
        set_log_level(globals.log_level);
        level_given = true;
        args.erase(args.begin(), args.begin() + 2);
      } else {
        throw usage_error("unknown option '" + args[0] + "' before the command (see moereg --help)");
      }
    }
    if (args.empty()) {
      print_help();
      return 2;
    }
    std::string name = args[0];
    args.erase(args.begin());
    for (const auto& c : cli::commands())
      if (name == c.name) {
        if (level_given) args.insert(args.begin(), {"--log-level", globals.log_level});
        return c.run(args, globals);
      }
    throw usage_error("unknown command '" + name + "' (see moereg --help)");
  } catch (const cli::help_requested&) {
    return 0;
  } catch (const usage_error& e) {
    std::cerr << "moereg: " << e.what() << "\n";
    return 2;
  } catch (const error& e) {
    std::cerr << "moereg: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "moereg: internal error: " << e.what() << "\n";
    return 1;
  }
}
