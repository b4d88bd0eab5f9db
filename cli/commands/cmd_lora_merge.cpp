// SPDX-License-Identifier: Apache-2.0
// moereg lora merge BASE ADAPTER OUT: the base with the adapter merged, in any layout.
#include "convert_output.h"
#include "launch_check.h"
#include "lora_commands.h"
#include "option_values.h"
#include "plugin_options.h"
#ifdef MOEREG_HAVE_MPI
#include "mpi/mpi_convert.h"
#endif

namespace moereg::cli {

int run_lora_merge(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("lora merge BASE ADAPTER OUT [--to LAYOUT] [--from L] [--rounding peft|single] [--experts A:B]",
                   "Write BASE with the adapter merged (W + scale * B @ A on every adapted matrix), in any layout of\n"
                   "its family (default: BASE's own), streaming in bounded memory through the same writer as\n"
                   "convert (sharded safetensors, --resume, atomic finish). --rounding peft (default) reproduces\n"
                   "PEFT's merge_and_unload bit for bit: experts round the delta and then the sum, other layers\n"
                   "round once; single rounds once everywhere (more accurate, differs from PEFT in the last bit).");
  p.options().add_options()("base", po::value<std::string>()->required(), "base checkpoint (the first operand, BASE)")(
      "adapter", po::value<std::string>()->required(), "adapter directory")(
      "out", po::value<std::string>()->required(), "output directory")(
      "to", po::value<std::string>(), "output layout (default: the base's)")(
      "from", po::value<std::string>(), "the base's layout (default: detected)")(
      "rounding", po::value<std::string>()->default_value("peft"), "peft or single")(
      "experts", po::value<std::string>(), "A:B - write only experts A..B-1 of every layer")(
      "peft-version", po::value<std::string>(), "PEFT version that saved the adapter, when adapter_config.json has none")(
      "threads", po::value<std::string>(), "threads, 0 to 4096 (default 0: all cores)")(
      "shard-size", po::value<std::string>(), "cut output shards at this size (as convert; default 5GB)")(
      "resume", po::bool_switch(), "continue an interrupted merge into OUT (as convert --resume)");
  add_plugin_options(p.options());
  p.positional("base", 1).positional("adapter", 1).positional("out", 1);
  auto vm = p.parse(args, globals);
  app::convert_request job;
  job.source = vm["base"].as<std::string>();
  job.output = vm["out"].as<std::string>();
  if (vm.count("to")) job.to = vm["to"].as<std::string>();  // empty: the base's own layout
  if (vm.count("from")) job.from = vm["from"].as<std::string>();
  if (vm.count("experts")) job.experts = experts_value(cli_value(vm, "experts"));
  if (vm.count("shard-size")) job.shard_size = size_value(cli_value(vm, "shard-size"));
  if (vm.count("threads")) job.threads = threads_value(cli_value(vm, "threads"));
  job.resume = vm["resume"].as<bool>();
  job.plugin_paths = plugin_paths(vm);
  lora_merge_options lora{vm["adapter"].as<std::string>(), vm["rounding"].as<std::string>(),
                          vm.count("peft-version") ? vm["peft-version"].as<std::string>() : ""};
#ifdef MOEREG_HAVE_MPI
  if (detect_parallel_launch()) return run_mpi_convert(job, globals, &lora);
#endif
  return run_and_print(job, globals, &lora);
}

}  // namespace moereg::cli
