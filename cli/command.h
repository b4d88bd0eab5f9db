// SPDX-License-Identifier: Apache-2.0
// command.h - how a `moereg` subcommand plugs into the CLI.
//
// Each command lives in commands/cmd_<name>.cpp, declares its options with
// Boost.Program_options through command_parser, and returns an exit status:
// 0 success, 1 bad input or failed check (throw moereg::error), 2 usage error
// (throw moereg::usage_error). --help, --log-level and --json exist on every command.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace moereg::cli {

namespace po = boost::program_options;

struct global_options {
  bool json = false;
  std::string log_level = "info";
};

struct command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args, global_options& globals);
};

// Every command, in the order `moereg --help` lists them.
const std::vector<command>& commands();

// Parses a command's arguments. Adds --help/--log-level/--json, handles --help by printing
// usage and throwing help_requested, maps parse errors to usage_error.
class command_parser {
 public:
  command_parser(std::string command_line, std::string description);
  po::options_description& options() { return options_; }
  // Positional arguments: name and max count (-1 = unbounded).
  command_parser& positional(const char* name, int max_count);
  po::variables_map parse(const std::vector<std::string>& args, global_options& globals);
  std::string usage() const;

 private:
  std::string command_line_;
  std::string description_;
  po::options_description options_;
  po::positional_options_description positional_;
};

// Thrown after --help was printed; main exits 0.
struct help_requested {};

// Whether stderr is a terminal (for progress lines).
bool stderr_is_tty();

}  // namespace moereg::cli
