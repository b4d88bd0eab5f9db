// SPDX-License-Identifier: Apache-2.0
// moereg moe: the MoE-layer commands, `moe run` (cmd_moe_run.cpp) and `moe bench`
// (cmd_moe_bench.cpp).
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"

namespace moereg::cli {

int run_moe_run(const std::vector<std::string>& args, global_options& globals);
int run_bench(const std::vector<std::string>& args, global_options& globals);

int run_moe(const std::vector<std::string>& args, global_options& globals) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: moereg moe run CKPT --layer L --input IN --output OUT [options]   (moereg moe run --help)\n"
                 "       moereg moe bench [options]                                       (moereg moe bench --help)\n";
    if (args.empty()) throw usage_error("moe: expected a subcommand: run or bench");
    return 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "bench") return run_bench(rest, globals);
  if (args[0] == "run") return run_moe_run(rest, globals);
  throw usage_error("moe: unknown subcommand '" + args[0] + "', expected run or bench");
}

}  // namespace moereg::cli
