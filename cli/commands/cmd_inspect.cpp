// moereg inspect CKPT: tensor count, bytes, dtypes and the tensors folded by layer/expert.
#include <cstdio>
#include <iostream>

#include "command.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/summary.h"

namespace moereg::cli {

int run_inspect(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("inspect CKPT [--json]",
                   "Summarise a checkpoint without reading tensor data: CKPT is a directory (config.json plus\n"
                   "model.safetensors, or model.safetensors.index.json plus shards) or one .safetensors file.\n"
                   "Tensors whose names differ only in layer/expert numbers are folded into one row.");
  p.options().add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint directory or .safetensors file");
  p.positional("checkpoint", 1);
  auto vm = p.parse(args, globals);

  checkpoint_options opts;
  opts.require_config = false;  // inspect is for looking; a missing config is reported, not fatal
  checkpoint ckpt = checkpoint::open(vm["checkpoint"].as<std::string>(), opts);
  checkpoint_summary s = summarize(ckpt);

  if (globals.json) {
    json::value v = summary_to_json(s);
    v.set("config", json::value(ckpt.config_path()));
    std::cout << json::dump(v, 2) << "\n";
    return 0;
  }
  std::cout << "checkpoint  " << s.path << "\n";
  std::cout << "files       " << s.files << (s.has_index ? " (with model.safetensors.index.json)" : "") << "\n";
  std::cout << "config      " << (ckpt.config_path().empty() ? "(none)" : ckpt.config_path()) << "\n";
  std::cout << "tensors     " << s.tensor_count << "\n";
  std::cout << "bytes       " << s.total_bytes << " (" << human_bytes(s.total_bytes) << ")\n";
  std::cout << "dtypes     ";
  for (const auto& [name, cb] : s.dtypes) std::cout << " " << name << " x" << cb.first << " (" << human_bytes(cb.second) << ")";
  std::cout << "\n\n";
  std::size_t width = 0;
  for (const auto& g : s.groups) width = std::max(width, g.pattern.size());
  width = std::min<std::size_t>(width, 90);
  for (const auto& g : s.groups) {
    std::string shape = shape_string(g.shape);
    std::printf("  %-*s  %-7s %-16s x%llu\n", static_cast<int>(width), g.pattern.c_str(), std::string(dtype_name(g.type)).c_str(),
                shape.c_str(), static_cast<unsigned long long>(g.count));
  }
  return 0;
}

}  // namespace moereg::cli
