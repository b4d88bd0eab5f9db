// SPDX-License-Identifier: Apache-2.0
// moereg - the command-line entry point: dispatches to a subcommand and maps failures
// to exit statuses (0 ok, 1 bad input or failed check, 2 usage).
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <iostream>

#include "api_result.h"
#include "command.h"
#include "doc_location.h"
#include "error_line.h"
#include "launch_check.h"
#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/abi/moereg_abi.h"
#include "moereg/base/log.h"
#include "moereg/base/printable.h"

using namespace moereg;

namespace {

void print_help() {
  std::cout << "usage: moereg [--log-level LEVEL] [--json] COMMAND [ARGS...]\n"
               "       moereg help [COMMAND]\n"
               "       moereg --version\n\n"
               "moereg reads, converts and runs Mixture-of-Experts checkpoints.\n\nCommands:\n";
  for (const auto& c : cli::commands()) std::cout << "  " << std::left << std::setw(10) << c.name << c.summary << "\n";
  std::cout << "\nOptions:\n"
               "  -h, --help         show this help and exit\n"
               "  --version          print the version and plugin API version, and exit\n"
               "  --log-level LEVEL  trace, debug, info (default), warn, error or off\n"
               "  --json             print a machine-readable JSON summary on stdout\n"
               "\nRun `moereg help COMMAND` (or `moereg COMMAND --help`) for a command's options.\n"
               "Documentation: "
            << app::doc_ref("") << " (gguf.md, yaml-reference.md, plugin-authoring.md, ...).\n"
            << "Exit status: 0 success, 1 bad input or failed check, 2 usage error.\n";
}

const cli::command* find_command(const std::string& name) {
  for (const auto& c : cli::commands())
    if (name == c.name) return &c;
  return nullptr;
}

// What a command printed on stdout reached it, or the run fails: a summary or --json lost to a
// full disk or a closed pipe must not look like success.
int checked_stdout(int rc) {
  errno = 0;
  std::cout.flush();
  if (std::fflush(stdout) == 0 && std::cout.good() && !std::ferror(stdout)) return rc;
  const int e = errno;
  cli::print_error_line(std::string("moereg: error: cannot write to standard output") + (e ? std::string(": ") + std::strerror(e) : "") +
                        (rc == 0 ? " (the job itself completed)" : ""));
  return rc == 0 ? 1 : rc;
}

}  // namespace

int main(int argc, char** argv) {
  // A closed pipe (`moereg ... | head`) is a failed write like any other, reported once the job
  // is done, not a signal that kills it mid-write and leaves unfinished files behind.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  cli::global_options globals;
  bool level_given = false;
  try {
    set_log_level("info");
    // Global options may precede the command.
    while (!args.empty() && args[0].size() > 1 && args[0][0] == '-') {
      std::string opt = args[0], value;
      bool has_value = false;
      if (auto eq = opt.find('='); opt.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = opt.substr(eq + 1);
        opt = opt.substr(0, eq);
        has_value = true;
      }
      if ((opt == "--help" || opt == "-h") && !has_value) {
        print_help();
        return 0;
      }
      if (opt == "--version" && !has_value) {
        std::cout << "moereg " << MOEREG_VERSION_STRING << " (plugin API " << MOEREG_PLUGIN_API_VERSION << ")\n";
        return 0;
      }
      if (opt == "--json" && !has_value) {
        globals.json = true;
        args.erase(args.begin());
      } else if (opt == "--log-level") {
        if (!has_value) {
          if (args.size() < 2) throw usage_error("--log-level needs a value: trace, debug, info, warn, error or off");
          value = args[1];
          args.erase(args.begin());
        }
        args.erase(args.begin());
        globals.log_level = value;
        set_log_level(globals.log_level);
        level_given = true;
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
    // `moereg help CMD [SUB]` is `moereg CMD [SUB] --help`.
    if (name == "help") {
      if (args.empty()) {
        print_help();
        return 0;
      }
      name = args[0];
      args.erase(args.begin());
      args.push_back("--help");
    }
    if (const cli::command* c = find_command(name)) {
      cli::check_launch(name == "lora" && !args.empty() ? "lora " + args[0] : name);
      // After the subcommand word, if any (`moe run`, `lora merge`), where its parser reads options.
      if (level_given) args.insert(args.begin() + (!args.empty() && !args[0].empty() && args[0][0] != '-' ? 1 : 0),
                                   {"--log-level", globals.log_level});
      return checked_stdout(c->run(args, globals));
    }
    throw usage_error("unknown command '" + name + "' (see moereg --help)");
  } catch (const cli::help_requested&) {
    return 0;
  } catch (const usage_error& e) {
    cli::print_error_line("moereg: " + printable_message(e.what()));
    return 2;
  } catch (const cli::stopped& e) {
    cli::print_error_line("moereg: " + e.message);
    return e.signal > 0 ? 128 + e.signal : 1;  // as a shell reports a process killed by the signal
  } catch (const cancelled& e) {
    cli::print_error_line(std::string("moereg: ") + e.what());
    return 128 + e.signal_number();  // as a shell reports a process killed by the signal
  } catch (const error& e) {
    cli::print_error_line("moereg: error: " + printable_message(e.what()));
    return 1;
  } catch (const std::exception& e) {
    cli::print_error_line("moereg: internal error: " + printable_message(e.what()));
    return 1;
  }
}
