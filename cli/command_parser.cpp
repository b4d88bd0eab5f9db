// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <iostream>
#include <sstream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"

namespace moereg::cli {

command_parser::command_parser(std::string command_line, std::string description)
    : command_line_(std::move(command_line)), description_(std::move(description)), options_("Options") {
  options_.add_options()("help,h", "show this help and exit")(
      "log-level", po::value<std::string>()->default_value("info"),
      "trace, debug, info, warn, error or off")("json", po::bool_switch(), "print a machine-readable JSON summary on stdout");
}

command_parser& command_parser::positional(const char* name, int max_count) {
  positional_.add(name, max_count);
  return *this;
}

std::string command_parser::usage() const {
  std::ostringstream ss;
  ss << "usage: moereg " << command_line_ << "\n\n" << description_ << "\n\n" << options_;
  return ss.str();
}

po::variables_map command_parser::parse(const std::vector<std::string>& args, global_options& globals) {
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options_).positional(positional_).run(), vm);
    if (vm.count("help")) {
      std::cout << usage();
      throw help_requested{};
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw usage_error(std::string(e.what()) + "\n(see: moereg " + command_line_.substr(0, command_line_.find(' ')) + " --help)");
  }
  globals.json = globals.json || vm["json"].as<bool>();
  globals.log_level = vm["log-level"].as<std::string>();
  set_log_level(globals.log_level);
  return vm;
}

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

}  // namespace moereg::cli
