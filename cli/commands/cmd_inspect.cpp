// SPDX-License-Identifier: Apache-2.0
// moereg inspect CKPT: tensor count, bytes, dtypes and the tensors folded by layer/expert.
#include <cstdio>
#include <iostream>

#include "command.h"
#include "model_session.h"
#include "moereg/base/error.h"
#include "plugin_options.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/summary.h"

namespace moereg::cli {

int run_inspect(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("inspect CKPT [--json]",
                   "Summarise a checkpoint without reading tensor data: CKPT is a directory (config.json plus\n"
                   "model.safetensors, or model.safetensors.index.json plus shards), one .safetensors file, or a\n"
                   "GGUF model (a .gguf file, or a directory holding one; block-quantized types shown by name).\n"
                   "Tensors whose names differ only in layer/expert numbers are folded into one row.");
  p.options().add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint directory, .safetensors or .gguf file");
  add_plugin_options(p.options());
  p.positional("checkpoint", 1);
  auto vm = p.parse(args, globals);

  checkpoint_options opts;
  opts.require_config = false;  // inspect is for looking; a missing config is reported, not fatal
  checkpoint ckpt = checkpoint::open(vm["checkpoint"].as<std::string>(), opts);
  checkpoint_summary s = summarize(ckpt);

  // Family and layout, when a plugin recognises the checkpoint (headers only, still).
  std::string family, model_type, layout, why_unknown, dims, config_path = ckpt.config_path();
  try {
    session_request req;
    req.checkpoint = vm["checkpoint"].as<std::string>();
    model_session m = open_model(req, vm);
    family = m.spec.name;
    config_path = m.ckpt->config_path();  // a GGUF model's config is made from its metadata
    model_type = m.model_type;
    layout = m.layout->name;
    dims = m.dims.describe() + " K=" + std::to_string(m.dims.K) + ", " + std::to_string(m.dims.moe_layers.size()) + " MoE layers";
  } catch (const error& e) {
    why_unknown = e.what();
  }

  if (globals.json) {
    json::value v = summary_to_json(s);
    v.set("config", json::value(config_path));
    v.set("family", family.empty() ? json::value(nullptr) : json::value(family));
    v.set("model_type", model_type.empty() ? json::value(nullptr) : json::value(model_type));
    v.set("layout", layout.empty() ? json::value(nullptr) : json::value(layout));
    if (!why_unknown.empty()) v.set("family_error", json::value(why_unknown));
    std::cout << json::dump(v, 2) << "\n";
    return 0;
  }
  std::cout << "checkpoint  " << s.path << "\n";
  std::cout << "files       " << s.files << (s.has_index ? " (with model.safetensors.index.json)" : "") << "\n";
  std::cout << "config      " << (config_path.empty() ? "(none)" : config_path) << "\n";
  if (!family.empty()) std::cout << "family      " << family << " (model_type " << model_type << "), layout " << layout << "; " << dims << "\n";
  else std::cout << "family      unknown: " << why_unknown << "\n";
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
    std::printf("  %-*s  %-7s %-16s x%llu\n", static_cast<int>(width), g.pattern.c_str(), g.type_name.c_str(),
                shape.c_str(), static_cast<unsigned long long>(g.count));
  }
  return 0;
}

}  // namespace moereg::cli
