// SPDX-License-Identifier: Apache-2.0
// moereg lora inspect ADAPTER: the form, orientation, ranks and targets of an adapter.
#include <iostream>
#include <sstream>

#include "api_result.h"
#include "lora_commands.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "plugin_options.h"

namespace moereg::cli {

namespace {

json::value pair_json(int rank, double alpha, double scale, const std::string& dtype) {
  return json::value(json::object{{"rank", json::value(static_cast<std::int64_t>(rank))}, {"alpha", json::value(alpha)},
                                  {"scale", json::value(scale)}, {"dtype", json::value(dtype)}});
}

void print_info_json(const app::lora_info& a) {
  json::array experts, others, layers;
  for (const auto& t : a.experts) {
    json::array ls;
    for (int l : t.layers) ls.emplace_back(json::value(static_cast<std::int64_t>(l)));
    json::value j = pair_json(t.rank, t.alpha, t.scale, t.dtype);
    j.set("piece", json::value(t.piece));
    j.set("layers", json::value(std::move(ls)));
    j.set("pairs", json::value(t.pairs));
    experts.emplace_back(std::move(j));
  }
  for (const auto& o : a.others) {
    json::value j = pair_json(o.rank, o.alpha, o.scale, o.dtype);
    j.set("module", json::value(o.module));
    j.set("canonical", json::value(o.canonical));
    others.emplace_back(std::move(j));
  }
  for (int l : a.expert_layers) layers.emplace_back(json::value(static_cast<std::int64_t>(l)));
  json::array untargeted;
  for (const auto& u : a.untargeted) untargeted.emplace_back(json::value(u));
  std::cout << json::dump(json::value(json::object{{"adapter", json::value(a.adapter)}, {"base", json::value(a.base)},
                                                    {"family", json::value(a.family)}, {"dims", json::value(a.dims)},
                                                    {"form", json::value(a.form)},
                                                    {"orientation", json::value(a.orientation.empty() ? "none" : a.orientation)},
                                                    {"orientation_reason", json::value(a.orientation_reason)},
                                                    {"r", json::value(static_cast<std::int64_t>(a.rank))},
                                                    {"lora_alpha", json::value(a.alpha)},
                                                    {"gate_up_share_A", json::value(a.gate_up_share_A)},
                                                    {"expert_layers", json::value(std::move(layers))},
                                                    {"expert_pairs", json::value(a.expert_pairs)},
                                                    {"experts", json::value(std::move(experts))},
                                                    {"others", json::value(std::move(others))},
                                                    {"untargeted", json::value(std::move(untargeted))}}),
                          2)
            << "\n";
}

void print_info(const app::lora_info& a) {
  std::cout << printable(a.adapter) << ": LoRA adapter, form " << a.form << "\n"
            << "  base: " << printable(a.base) << " (family " << a.family << ", " << a.dims << ")\n";
  if (!a.orientation.empty()) std::cout << "  orientation: " << a.orientation << " (" << a.orientation_reason << ")\n";
  std::cout << "  r=" << a.rank << " lora_alpha=" << a.alpha << (a.rslora ? " (rslora)" : "") << "\n";
  std::cout << "  routed experts: " << a.expert_pairs << " pairs in " << a.expert_layers.size() << " layers"
            << (a.expert_layers.empty() ? "" : a.gate_up_share_A ? "; gate and up share A" : "; gate and up carry different A") << "\n";
  for (const auto& t : a.experts) {
    std::string ls;
    for (int l : t.layers) ls += (ls.empty() ? "" : ",") + std::to_string(l);
    std::ostringstream alpha;
    alpha << t.alpha;
    std::cout << "    " << t.piece << " r=" << t.rank << " alpha=" << alpha.str() << ": " << t.pairs << " experts, layers " << ls << "\n";
  }
  std::cout << "  other modules: " << a.others.size() << "\n";
  for (const auto& o : a.others)
    std::cout << "    " << printable(o.module) << " r=" << o.rank << " alpha=" << o.alpha
              << (o.canonical != o.module + ".weight" ? " (canonical " + printable(o.canonical) + ")" : "") << "\n";
  if (!a.untargeted.empty()) {
    std::cout << "  not targeted by adapter_config.json, so not applied by PEFT (convert and merge refuse the adapter): "
              << a.untargeted.size() << " pairs\n";
    for (const auto& u : a.untargeted) std::cout << "    " << printable(u) << "\n";
  }
}

}  // namespace

int run_lora_inspect(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("lora inspect ADAPTER [--base CKPT] [--peft-version V]",
                   "Describe an adapter: its form, the ParamWrapper orientation and why, rank and alpha per target, the\n"
                   "family and layers it adapts. The base (--base, or base_model_name_or_path when it is a local\n"
                   "directory) gives the family and dimensions; only its config.json is read.");
  p.options().add_options()("adapter", po::value<std::string>()->required(), "adapter directory")(
      "base", po::value<std::string>(), "base model (directory holding config.json)")(
      "peft-version", po::value<std::string>(), "PEFT version that saved the adapter, when adapter_config.json has none");
  add_plugin_options(p.options());
  p.positional("adapter", 1);
  auto vm = p.parse(args, globals);
  const app::lora_info info = take(app::inspect_lora(lora_open_request_of(vm)));
  if (globals.json)
    print_info_json(info);
  else
    print_info(info);
  return 0;
}

}  // namespace moereg::cli
