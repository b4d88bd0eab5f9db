// SPDX-License-Identifier: Apache-2.0
// moereg inspect CKPT: tensor count, bytes, dtypes and the tensors folded by layer/expert.
#include <cstdio>
#include <iostream>

#include "command.h"
#include "gguf_values.h"
#include "session.h"
#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/gguf/gguf_file.h"
#include "plugin_options.h"

namespace moereg::cli {

int run_inspect(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("inspect CKPT [--json]",
                   "Summarise a checkpoint without reading tensor data: CKPT is a directory (config.json plus\n"
                   "model.safetensors, or model.safetensors.index.json plus shards), one .safetensors file, or a\n"
                   "GGUF model (a .gguf file, or a directory holding one; block-quantized types shown by name).\n"
                   "Tensors whose names differ only in layer/expert numbers are folded into one row. For a GGUF\n"
                   "model, its metadata too (long arrays summarised). Names and strings from the files are shown\n"
                   "with control characters escaped (\\x1b, \\n, ...).");
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
  json::value dims_json = nullptr;
  try {
    app::session_request req;
    req.checkpoint = vm["checkpoint"].as<std::string>();
    req.plugin_paths = plugin_paths(vm);
    app::model_session m = app::open_session(req);
    family = m.spec.name;
    config_path = m.ckpt->config_path();  // a GGUF model's config is made from its metadata
    model_type = m.model_type;
    layout = m.layout->name;
    dims = m.dims.describe() + " K=" + std::to_string(m.dims.K) + ", " + std::to_string(m.dims.moe_layers.size()) + " MoE layers";
    json::array layers;
    for (int l : m.dims.moe_layers) layers.emplace_back(l);
    dims_json = json::value(json::object{{"E", json::value(m.dims.E)},
                                         {"H", json::value(m.dims.H)},
                                         {"I", json::value(m.dims.I)},
                                         {"K", json::value(m.dims.K)},
                                         {"moe_layers", json::value(std::move(layers))}});
  } catch (const error& e) {
    why_unknown = e.what();
  }

  if (globals.json) {
    json::value v = summary_to_json(s);
    v.set("config", json::value(config_path));
    v.set("family", family.empty() ? json::value(nullptr) : json::value(family));
    v.set("model_type", model_type.empty() ? json::value(nullptr) : json::value(model_type));
    v.set("layout", layout.empty() ? json::value(nullptr) : json::value(layout));
    v.set("dims", dims_json);
    if (!why_unknown.empty()) v.set("family_error", json::value(why_unknown));
    if (const gguf_file* g = ckpt.gguf()) {
      json::object md;
      for (const auto& [k, val] : g->metadata()) md.emplace_back(k, gguf_json(val));
      v.set("gguf_metadata", json::value(std::move(md)));
    }
    std::cout << json::dump(v, 2) << "\n";
    return 0;
  }
  std::cout << "checkpoint  " << printable(s.path) << "\n";
  std::cout << "files       " << s.files << (s.has_index ? " (with model.safetensors.index.json)" : "") << "\n";
  std::cout << "config      " << (config_path.empty() ? "(none)" : printable(config_path)) << "\n";
  if (!family.empty())
    std::cout << "family      " << printable(family) << " (model_type " << printable(model_type) << "), layout "
              << printable(layout) << "; " << dims << "\n";
  else std::cout << "family      unknown: " << printable_message(why_unknown) << "\n";
  std::cout << "tensors     " << s.tensor_count << "\n";
  std::cout << "bytes       " << s.total_bytes << " (" << human_bytes(s.total_bytes) << ")\n";
  std::cout << "dtypes     ";
  for (const auto& [name, cb] : s.dtypes) std::cout << " " << printable(name) << " x" << cb.first << " (" << human_bytes(cb.second) << ")";
  std::cout << "\n";
  if (const gguf_file* g = ckpt.gguf()) {
    std::cout << "metadata    " << g->metadata().size() << " GGUF keys\n";
    for (const auto& [k, val] : g->metadata()) std::cout << "  " << printable(k) << " = " << gguf_text(val) << "\n";
  }
  std::cout << "\n";
  std::size_t width = 0;
  std::vector<std::string> patterns;
  for (const auto& g : s.groups) {
    patterns.push_back(printable(g.pattern));
    width = std::max(width, patterns.back().size());
  }
  width = std::min<std::size_t>(width, 90);
  for (std::size_t i = 0; i < s.groups.size(); ++i) {
    const auto& g = s.groups[i];
    std::string shape = shape_string(g.shape);
    std::printf("  %-*s  %-7s %-16s x%llu\n", static_cast<int>(width), patterns[i].c_str(), printable(g.type_name).c_str(),
                shape.c_str(), static_cast<unsigned long long>(g.count));
  }
  return 0;
}

}  // namespace moereg::cli
