// SPDX-License-Identifier: Apache-2.0
// moereg synth: a synthetic checkpoint of real MoE shapes, for benchmarks and demos.
#include <iostream>

#include "command.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/synth/synthetic_checkpoint.h"

namespace moereg::cli {

int run_synth(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("synth OUT [--preset NAME] [--layers N] [--shard-size BYTES] [--seed S]",
                   "Write a synthetic qwen3_moe-layout checkpoint (hf layout: one tensor per expert and\n"
                   "projection) with random bf16 weights. Presets: tiny (E=8 H=64 I=32),\n"
                   "qwen3_30b_a3b (E=128 H=2048 I=768, about 1.2 GB of experts per layer).");
  p.options().add_options()("out", po::value<std::string>()->required(), "output directory (must not exist or be empty)")(
      "preset", po::value<std::string>()->default_value("tiny"), "tiny or qwen3_30b_a3b")(
      "layers", po::value<int>()->default_value(2), "decoder layers")(
      "shard-size", po::value<std::uint64_t>()->default_value(0), "bytes per shard; 0 = one file")(
      "seed", po::value<std::uint64_t>()->default_value(1), "random seed")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores)");
  p.positional("out", 1);
  auto vm = p.parse(args, globals);
  synthetic_dims d = synthetic_preset(vm["preset"].as<std::string>(), vm["layers"].as<int>());
  synthetic_options o;
  o.shard_size = vm["shard-size"].as<std::uint64_t>();
  o.seed = vm["seed"].as<std::uint64_t>();
  o.threads = vm["threads"].as<int>();
  std::uint64_t bytes = write_synthetic_qwen3_moe(vm["out"].as<std::string>(), d, o);
  if (globals.json)
    std::cout << "{\"out\": \"" << vm["out"].as<std::string>() << "\", \"total_bytes\": " << bytes << "}\n";
  else
    std::cout << "wrote " << vm["out"].as<std::string>() << ": " << human_bytes(bytes) << " of tensors\n";
  return 0;
}

}  // namespace moereg::cli
