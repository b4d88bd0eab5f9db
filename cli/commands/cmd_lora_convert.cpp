// SPDX-License-Identifier: Apache-2.0
// moereg lora convert ADAPTER OUT --to FORM: the adapter rewritten in another form, exactly.
#include <iostream>

#include "api_result.h"
#include "lora_commands.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "option_values.h"
#include "plugin_options.h"

namespace moereg::cli {

int run_lora_convert(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("lora convert ADAPTER OUT --to FORM [--base CKPT] [--peft-version V] [--experts A:B]",
                   "Rewrite an adapter in another form, exactly (factors copied, re-indexed, concatenated, never\n"
                   "recomputed): peft_param_wrapper (PEFT >= 0.18 target_parameters, written in the >= 0.19.1\n"
                   "orientation), peft_per_expert (one pair per expert module), nemo_grouped (NeMo Automodel).\n"
                   "adapter_config.json is rewritten to match. docs/lora.md says what is exact and what is refused.");
  p.options().add_options()("adapter", po::value<std::string>()->required(), "adapter directory")(
      "out", po::value<std::string>()->required(), "output directory (must not exist or be empty)")(
      "to", po::value<std::string>()->required(), "peft_param_wrapper, peft_per_expert or nemo_grouped")(
      "base", po::value<std::string>(), "base model (directory holding config.json)")(
      "peft-version", po::value<std::string>(), "PEFT version that saved the adapter, when adapter_config.json has none")(
      "experts", po::value<std::string>(), "A:B - keep only experts A..B-1 of every layer");
  add_plugin_options(p.options());
  p.positional("adapter", 1).positional("out", 1);
  auto vm = p.parse(args, globals);
  app::lora_convert_request req;
  req.source = lora_open_request_of(vm);
  req.output = vm["out"].as<std::string>();
  req.to = vm["to"].as<std::string>();
  if (vm.count("experts")) req.experts = experts_value(cli_value(vm, "experts"));
  const app::lora_convert_report r = take(app::convert_lora(req));
  if (globals.json) {
    std::cout << json::dump(json::value(json::object{{"adapter", json::value(r.adapter)}, {"from", json::value(r.from)},
                                                      {"to", json::value(r.to)}, {"output", json::value(r.output)},
                                                      {"tensors", json::value(r.tensors)}, {"bytes", json::value(r.bytes)},
                                                      {"notes", json::value(r.notes)}}),
                            2)
              << "\n";
  } else {
    std::cout << "converted " << printable(r.adapter) << " (" << r.from << ") -> " << printable(r.output) << " (" << r.to
              << "): " << r.tensors << " tensors, " << r.bytes << " bytes\n";
    if (!r.notes.empty()) std::cout << "  " << r.notes << "\n";
  }
  return 0;
}

}  // namespace moereg::cli
