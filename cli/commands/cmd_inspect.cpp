// SPDX-License-Identifier: Apache-2.0
// moereg inspect CKPT: tensor count, bytes, dtypes and the tensors folded by layer/expert.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "api_result.h"
#include "command.h"
#include "moereg/app/inspect.h"
#include "moereg/base/printable.h"
#include "moereg/base/units.h"
#include "moereg/safetensors/tensor_info.h"
#include "plugin_options.h"

namespace moereg::cli {

namespace {

void print_text(const app::checkpoint_report& r) {
  std::cout << "checkpoint  " << printable(r.path) << "\n";
  std::cout << "files       " << r.files << (r.has_index ? " (with model.safetensors.index.json)" : "") << "\n";
  std::cout << "config      " << (r.config_path.empty() ? "(none)" : printable(r.config_path)) << "\n";
  if (!r.family.empty())
    std::cout << "family      " << printable(r.family) << " (model_type " << printable(r.model_type) << "), layout "
              << printable(r.layout) << "; " << r.dims << "\n";
  else std::cout << "family      unknown: " << printable_message(r.family_error) << "\n";
  if (!r.layout_error.empty()) std::cout << "problems    " << printable_message(r.layout_error) << "\n";
  std::cout << "tensors     " << r.tensor_count << "\n";
  std::cout << "bytes       " << r.total_bytes << " (" << format_bytes(r.total_bytes) << ")\n";
  std::cout << "dtypes     ";
  for (const auto& d : r.dtypes) std::cout << " " << printable(d.dtype) << " x" << d.tensors << " (" << format_bytes(d.bytes) << ")";
  std::cout << "\n";
  if (!r.gguf_metadata.empty()) {
    std::cout << "metadata    " << r.gguf_metadata.size() << " GGUF keys\n";
    for (const auto& m : r.gguf_metadata) std::cout << "  " << printable(m.key) << " = " << m.text << "\n";
  }
  std::cout << "\n";
  std::size_t width = 0;
  std::vector<std::string> patterns;
  for (const auto& g : r.groups) {
    patterns.push_back(printable(g.pattern));
    width = std::max(width, patterns.back().size());
  }
  width = std::min<std::size_t>(width, 90);
  for (std::size_t i = 0; i < r.groups.size(); ++i) {
    const auto& g = r.groups[i];
    std::printf("  %-*s  %-7s %-16s x%llu\n", static_cast<int>(width), patterns[i].c_str(), printable(g.dtype).c_str(),
                shape_string(g.shape).c_str(), static_cast<unsigned long long>(g.count));
  }
}

}  // namespace

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

  app::checkpoint_report r = take(app::inspect({vm["checkpoint"].as<std::string>(), plugin_paths(vm)}));
  if (globals.json) std::cout << r.json << "\n";
  else print_text(r);
  return 0;
}

}  // namespace moereg::cli
