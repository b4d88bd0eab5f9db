// SPDX-License-Identifier: Apache-2.0
// moereg lora: expert LoRA adapters - inspect, convert between forms, merge into a checkpoint
// (docs/lora.md). One file per subcommand (cmd_lora_*.cpp); the work is app::inspect_lora,
// convert_lora and merge_lora.
#include <iostream>

#include "lora_commands.h"
#include "moereg/base/error.h"
#include "plugin_options.h"

namespace moereg::cli {

app::lora_open_request lora_open_request_of(const po::variables_map& vm) {
  app::lora_open_request r;
  r.adapter = vm["adapter"].as<std::string>();
  if (vm.count("base")) r.base = vm["base"].as<std::string>();
  if (vm.count("peft-version")) r.peft_version = vm["peft-version"].as<std::string>();
  r.plugin_paths = plugin_paths(vm);
  return r;
}

int run_lora(const std::vector<std::string>& args, global_options& globals) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: moereg lora inspect ADAPTER [--base CKPT]                          (moereg lora inspect --help)\n"
                 "       moereg lora convert ADAPTER OUT --to FORM [--base CKPT]           (moereg lora convert --help)\n"
                 "       moereg lora merge BASE ADAPTER OUT [--to LAYOUT] [--rounding R]  (moereg lora merge --help)\n";
    if (args.empty()) throw usage_error("lora: expected a subcommand: inspect, convert or merge");
    return 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "inspect") return run_lora_inspect(rest, globals);
  if (args[0] == "convert") return run_lora_convert(rest, globals);
  if (args[0] == "merge") return run_lora_merge(rest, globals);
  throw usage_error("lora: unknown subcommand '" + args[0] + "', expected inspect, convert or merge");
}

}  // namespace moereg::cli
