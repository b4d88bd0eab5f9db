// SPDX-License-Identifier: Apache-2.0
// moereg moe bench: times a fused-MoE backend on real model shapes (synthetic bf16 weights)
// against the eager PyTorch loop of transformers, on the same weights, in the same run. The
// work is app::bench_moe (moereg/app/bench.h); this file parses and prints.
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "api_result.h"
#include "command.h"
#include "moe_bench_output.h"
#include "moe_presets.h"
#include "moereg/app/bench.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/units.h"
#include "option_values.h"
#include "plugin_options.h"

namespace fs = std::filesystem;

namespace moereg::cli {
int run_bench(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("moe bench [--preset NAME] [--tokens 1,16,128,1024] [--backend cpu] [--weights bf16] [--threads N] [--json]",
                   "Time one MoE layer on real model shapes with synthetic random bf16 (or FP8) weights, and in the\n"
                   "same run the eager per-expert loop of transformers in PyTorch (--python) on the same\n"
                   "weights and routing, one dense bf16 matmul of the same FLOPs, and the memory bandwidth.\n"
                   "A backend with device memory (cuda) is timed on device-resident inputs and outputs, and\n"
                   "then PyTorch runs on the GPU too and the bandwidth is the device's copy bandwidth.\n"
                   "The host's read bandwidth is the best of five read patterns, each the median of five\n"
                   "reads of a buffer eight times the last-level cache; when it cannot be a memory rate (more\n"
                   "than 150 GB/s a thread, or reads spread more than 2-fold) the table says why and gives\n"
                   "no \"of bw\". \"of bw\" is marked * where a cycle of the row's experts fits twice in\n"
                   "the last-level cache, ~ where the cache holds 5 % of it or more (a cache that keeps part of\n"
                   "a repeated stream serves that part: \"of bw\" can then exceed 100 %).\n"
                   "Presets: qwen3_30b_a3b, mixtral_8x7b, deepseek_v3 (256 experts, 22.5 GB bf16), deepseek_v3_e64\n"
                   "(the same layer with 64 experts, to fit smaller machines), tiny.\n"
                   "(Benchmarking a checkpoint's own layer, CKPT --layer L, is not available yet.)");
  p.options().add_options()("preset", po::value<std::string>()->default_value("qwen3_30b_a3b"), "shape preset")(
      "tokens", po::value<std::string>()->default_value("1,16,128,1024"), "token counts T")(
      "weights", po::value<std::string>()->default_value("bf16"),
      "how the experts are stored: bf16, or f8_e4m3 (E4M3 with one F32 scale per 128x128 block, as "
      "DeepSeek-V3 ships; PyTorch's reference runs them dequantized to bf16)")(
      "backend", po::value<std::string>()->default_value("auto"), "cpu, cuda, another installed backend, or auto (best probe score)")(
      "threads", po::value<std::string>()->default_value("0"), "threads for the backend and for PyTorch, 0 to 4096 (0 = all cores)")(
      "backend-option", po::value<std::vector<std::string>>()->composing(),
      "key=value, repeatable: a tuning option of the backend (docs/backends.md lists the cpu backend's, docs/cuda.md the cuda backend's: tiles, cublas, graphs, f8_activations)")(
      "min-seconds", po::value<std::string>()->default_value("1"), "time each measurement for at least this long (0 to 3600)")(
      "work-dir", po::value<std::string>()->default_value(fs::temp_directory_path().string()), "where the weight file goes (moereg-bench-HOST-PID, removed at the end; one that a killed bench left is removed by the next; a preset whose file would not fit there, or on a tmpfs would not leave 2 GB of memory beside it, is refused before writing)")(
      "python", po::value<std::string>()->default_value(""), "python with torch, for the reference (default: the first of python3 on PATH and /usr/bin/python3 that imports torch)")(
      "reference-script", po::value<std::string>()->default_value(""), "torch_reference.py (found beside the binary)")(
      "no-reference", po::bool_switch(), "skip the PyTorch reference")(
      "reference-max-seconds", po::value<std::string>()->default_value("120"),
      "skip reference rows estimated to take longer than this per run, and time one warm run where three "
      "would not fit (0 = no limit). Debian's PyTorch runs bf16 matmuls at ~1 GFLOP/s on CPUs without "
      "AVX-512, where a mixtral_8x7b T=1024 layer takes a quarter of an hour per run")(
      "seed", po::value<std::string>()->default_value("1"), "random seed");
  add_plugin_options(p.options());
  auto vm = p.parse(args, globals);
  const moe_preset& pr = find_preset(vm["preset"].as<std::string>());
  app::moe_bench_request req;
  req.shape = pr.name;
  req.experts = pr.E;
  req.hidden = pr.H;
  req.intermediate = pr.I;
  req.top_k = pr.K;
  req.shared_intermediate = pr.Is;
  req.routing = pr.routing;
  req.tokens = tokens_value(cli_value(vm, "tokens"));
  req.weights = vm["weights"].as<std::string>();
  req.threads = threads_value(cli_value(vm, "threads"));
  req.min_seconds = number_value(cli_value(vm, "min-seconds"), 0, 3600, "seconds");
  req.reference_max_seconds = number_value(cli_value(vm, "reference-max-seconds"), 0, 1e6, "seconds per reference run, 0 = no limit");
  req.reference = !vm["no-reference"].as<bool>();
  req.reference_script = vm["reference-script"].as<std::string>();
  req.python = vm["python"].as<std::string>();
  req.seed = uint64_value(cli_value(vm, "seed"));
  req.work_dir = vm["work-dir"].as<std::string>();
  req.backend = vm["backend"].as<std::string>();
  req.backend_options = backend_option_values(vm);
  req.plugin_paths = plugin_paths(vm);
  const app::moe_bench_report rep = take(app::bench_moe(req));
  if (globals.json)
    print_json(rep, pr);
  else
    print_table(rep, pr, req.reference);
  return 0;
}


}  // namespace moereg::cli
