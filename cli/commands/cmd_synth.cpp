// SPDX-License-Identifier: Apache-2.0
// moereg synth: a synthetic checkpoint of real MoE shapes, for benchmarks and demos.
#include <iostream>

#include "api_result.h"
#include "command.h"
#include "moereg/app/synth.h"
#include "moereg/base/cancel.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/summary.h"
#include "option_values.h"

namespace moereg::cli {

int run_synth(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("synth OUT [--preset NAME] [--layers N] [--shard-size SIZE] [--seed S] [--lora R [--lora-out DIR]]",
                   "Write a synthetic qwen3_moe-layout checkpoint (hf layout: one tensor per expert and\n"
                   "projection) with random bf16 weights. Presets: tiny (E=8 H=64 I=32),\n"
                   "qwen3_30b_a3b (E=128 H=2048 I=768, about 1.2 GB of experts per layer).");
  p.options().add_options()("out", po::value<std::string>()->required(), "output directory (must not exist or be empty)")(
      "preset", po::value<std::string>()->default_value("tiny"), "tiny or qwen3_30b_a3b")(
      "layers", po::value<std::string>()->default_value("2"), "decoder layers, 1 to 65536")(
      "shard-size", po::value<std::string>()->default_value("0"), "cut shards at this size (5GB, 500MB, 2GiB, bytes); 0 = one file")(
      "seed", po::value<std::string>()->default_value("1"), "random seed")(
      "threads", po::value<std::string>()->default_value("0"), "threads, 0 to 4096 (0 = all cores)")(
      "lora", po::value<std::string>(), "also write a random rank-R LoRA adapter on every expert (PEFT ParamWrapper form), R 1 to 65536")(
      "lora-out", po::value<std::string>(), "the adapter's directory (default: OUT-lora)");
  p.positional("out", 1);
  auto vm = p.parse(args, globals);
  app::synth_request r;
  r.out = vm["out"].as<std::string>();
  r.preset = vm["preset"].as<std::string>();
  r.layers = static_cast<int>(integer_value(cli_value(vm, "layers"), 1, 65536, "decoder layers"));
  r.shard_size = size_value(cli_value(vm, "shard-size"));
  r.seed = uint64_value(cli_value(vm, "seed"));
  r.threads = threads_value(cli_value(vm, "threads"));
  if (vm.count("lora")) r.lora_rank = static_cast<int>(integer_value(cli_value(vm, "lora"), 1, 65536, "LoRA rank"));
  if (vm.count("lora-out")) r.lora_out = vm["lora-out"].as<std::string>();
  app::synth_report rep;
  {
    cancel_on_signals on_signals;  // a signal stops the writer, which then removes what it wrote
    rep = take(app::synthesize(r));
  }
  const std::uint64_t bytes = rep.bytes;
  if (!rep.lora_dir.empty() && !globals.json)
    std::cout << "wrote " << rep.lora_dir << ": rank-" << r.lora_rank << " adapter, " << human_bytes(rep.lora_bytes) << "\n";
  if (globals.json)
    std::cout << json::dump(json::value(json::object{{"out", json::value(vm["out"].as<std::string>())},
                                                      {"total_bytes", json::value(bytes)}}),
                            2)
              << "\n";
  else
    std::cout << "wrote " << vm["out"].as<std::string>() << ": " << human_bytes(bytes) << " of tensors\n";
  return 0;
}

}  // namespace moereg::cli
