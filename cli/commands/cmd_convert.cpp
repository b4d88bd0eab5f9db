// SPDX-License-Identifier: Apache-2.0
// moereg convert CKPT OUT --to LAYOUT: any layout of a family to any other, streaming.
#include <filesystem>
#include <map>
#include <set>

#include "command.h"
#include "doc_location.h"
#include "convert_output.h"
#include "convert_recipe.h"
#include "launch_check.h"
#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "option_values.h"
#include "plugin_options.h"
#ifdef MOEREG_HAVE_MPI
#include "mpi/mpi_convert.h"
#endif

namespace fs = std::filesystem;

namespace moereg::cli {

int run_convert(const std::vector<std::string>& args, global_options& globals) {
  command_parser p(
      "convert CKPT OUT --to LAYOUT [options]",
      "Convert a checkpoint from one layout of its family to another, both directions, bit-exact.\n"
      "The family comes from config.json (model_type) and the source layout from the tensor names and\n"
      "shapes; where two layouts cannot be told apart from the files, moereg asks for --from.\n"
      "Tensors stream from the mapped source files to OUT (created; must not exist or be empty; locked\n"
      "against other moereg processes while written) in bounded memory. ^C, SIGTERM or SIGHUP stop it\n"
      "cleanly, keeping what --resume needs. Layouts: hf, hf_split, transformers_v5, transformers_v4,\n"
      "grouped, gguf (a real GGUF file, OUT/model.gguf, llama.cpp names and metadata), mistral - those\n"
      "the family declares (moereg plugins show FAMILY). CKPT may also be a .gguf file (see " + app::doc_ref("gguf.md") + ").");
  const std::string ep_help =
      "N - expert parallelism: write N checkpoints OUT/ep-{r}-of-{N}/ in one run, slice r holding experts r*E/N..(r+1)*E/N-1 "
      "of every layer numbered from 0, every non-expert tensor, and a config.json with the local expert count and a `moereg` "
      "section naming the global ids; E must divide by N. Under mpirun rank r writes slice r (" + app::doc_ref("mpi.md") + ")";
  p.options().add_options()("checkpoint", po::value<std::string>(), "source checkpoint: directory, .safetensors or .gguf file")(
      "out", po::value<std::string>(), "output directory")(
      "to", po::value<std::string>(), "target layout")(
      "from", po::value<std::string>(), "source layout (default: detected from the tensors)")(
      "family", po::value<std::string>(), "family plugin or model_type (default: config.json model_type)")(
      "dry-run", po::bool_switch(), "print the plan (each output tensor and where its bytes come from) and check everything; write nothing")(
      "threads", po::value<std::string>(), "threads, 0 to 4096 (default 0: all cores)")(
      "shard-size", po::value<std::string>(), "cut output shards at this size (5GB, 500MB, 2GiB; 0 = one file); default 5GB, as transformers saves")(
      "experts", po::value<std::string>(), "A:B - write only experts A..B-1 of every layer: a checkpoint of B-A experts by itself (per-expert keys numbered from 0; config.json gives the local count and, in a `moereg.expert_slice` section, the global ids)")(
      "ep", po::value<std::string>(), ep_help.c_str())(
      "resume", po::bool_switch(), "continue an interrupted (stopped, killed) conversion into OUT: shards completed earlier (checked by size and checksum) are kept, the rest redone; refused if a source file changed since")(
      "dtype", po::value<std::string>(), "bf16: dequantize quantized weights (FP8, MXFP4, GPTQ/compressed int4, a .gguf's ggml blocks) to bf16, rounding once to nearest even; scales and quantization_config are dropped. f32: a .gguf's ggml blocks to f32")(
      "no-copy-file-range", po::bool_switch(), "write every byte through write() from the mapped source instead of letting the kernel copy contiguous ranges (copy_file_range): for filesystems where that misbehaves, and to measure it")(
      "config", po::value<std::string>(), "a recipe (YAML: source, output, to, from, family, shard_size, threads, experts, dry_run, dtype): fills the options not given on the command line (a value given in both is taken from the command line, with a warning); a bad value is reported at its file:line:column");
  add_plugin_options(p.options());
  p.positional("checkpoint", 1).positional("out", 1);
  auto vm = p.parse(args, globals);

  std::map<std::string, std::string> o;
  auto take = [&](const char* opt, const char* key) {
    if (vm.count(opt)) o[key] = vm[opt].as<std::string>();
  };
  take("checkpoint", "source");
  take("out", "output");
  take("to", "to");
  take("from", "from");
  take("family", "family");
  take("shard-size", "shard_size");
  take("experts", "experts");
  take("ep", "ep");
  take("dtype", "dtype");
  take("threads", "threads");
  if (vm["dry-run"].as<bool>()) o["dry_run"] = "true";
  // A recipe fills what the command line left unset; where both give a key, the command line
  // wins, with a warning naming both values when they differ.
  std::map<std::string, recipe_value> from_recipe;
  if (vm.count("config")) {
    const std::string recipe = vm["config"].as<std::string>();
    std::error_code ec;
    if (fs::is_directory(recipe, ec)) throw error(recipe + ": is a directory, expected a recipe file (YAML)");
    static const std::map<std::string, std::string> option_names = {
        {"source", "CKPT"},         {"output", "OUT"},          {"to", "--to"},
        {"from", "--from"},         {"family", "--family"},     {"shard_size", "--shard-size"},
        {"threads", "--threads"},   {"experts", "--experts"},   {"dry_run", "--dry-run"},
        {"dtype", "--dtype"}};
    from_recipe = merge_recipe(read_recipe(recipe), o, option_names);
  }
  for (const char* need : {"source", "to"})
    if (!o.count(need)) throw usage_error(std::string("convert needs ") + (std::string(need) == "to" ? "--to LAYOUT" : "CKPT") + " (see moereg convert --help)");
  app::convert_request job;
  job.dry_run = o.count("dry_run") && (o["dry_run"] == "true" || o["dry_run"] == "1");
  if (!job.dry_run && !o.count("output")) throw usage_error("convert needs OUT, the output directory (see moereg convert --help)");
  job.source = o["source"];
  job.output = o["output"];
  job.to = o["to"];
  job.from = o["from"];
  job.family = o["family"];
  job.plugin_paths = plugin_paths(vm);
  job.resume = vm["resume"].as<bool>();
  job.kernel_copy = !vm["no-copy-file-range"].as<bool>();
  // Numeric values are checked before any work, wherever they came from.
  // A recipe's value is reported at its file:line:column, and is bad input (exit 1), not a usage error.
  auto value_of = [&](const char* key, const char* option) {
    auto r = from_recipe.find(key);
    return r == from_recipe.end() ? option_value{o[key], option, true}
                                  : option_value{o[key], r->second.where + ": " + key, false};
  };
  if (o.count("threads")) job.threads = threads_value(value_of("threads", "--threads"));
  if (o.count("shard_size")) job.shard_size = size_value(value_of("shard_size", "--shard-size"));
  if (o.count("experts")) job.experts = experts_value(value_of("experts", "--experts"));
  if (o.count("ep")) {
    job.expert_parallel = static_cast<int>(integer_value(value_of("ep", "--ep"), 1, 65536, "the number of expert-parallel slices"));
    if (job.experts) {
      if (from_recipe.count("experts"))
        bad_value(value_of("experts", "--experts"), "no expert range with --ep N (--ep writes the expert ranges of its slices)");
      throw usage_error("--ep N and --experts A:B: choose one (--ep writes the expert ranges of its slices)");
    }
  }
  if (o.count("dtype")) {
    if (o["dtype"] != "bf16" && o["dtype"] != "f32")
      bad_value(value_of("dtype", "--dtype"), "bf16 (dequantize quantized weights) or f32 (decode a .gguf's ggml blocks)");
    job.to_bf16 = o["dtype"] == "bf16";
    job.to_f32 = o["dtype"] == "f32";
  }
  // Values the checkpoint or the output refuses are reported at their recipe line too.
  return run_with_recipe(job, from_recipe, [&] {
#ifdef MOEREG_HAVE_MPI
    if (detect_parallel_launch()) return run_mpi_convert(job, globals);
#endif
    return run_and_print(job, globals);
  });
}

}  // namespace moereg::cli
