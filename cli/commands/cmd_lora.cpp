// SPDX-License-Identifier: Apache-2.0
// moereg lora: expert LoRA adapters - inspect, convert between forms, merge into a checkpoint
// (docs/lora.md). The work is in core/lora; this file parses and prints.
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "command.h"
#include "convert_output.h"
#include "option_values.h"
#include "session.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/lora/lora_adapter.h"
#include "moereg/lora/lora_writer.h"
#include "plugin_options.h"

namespace fs = std::filesystem;

namespace moereg::cli {

namespace {

// The base an adapter is read against: only its config.json is needed (family and dims).
struct lora_base {
  std::unique_ptr<plugin_registry> registry;
  family_catalog catalog;
  family_spec spec;
  model_dims dims;
  std::string path, arch;
};

lora_base open_base(const std::string& adapter, const po::variables_map& vm) {
  lora_base b;
  b.path = vm.count("base") ? vm["base"].as<std::string>() : lora_local_base(adapter);
  if (b.path.empty())
    throw usage_error(adapter + "/adapter_config.json: base_model_name_or_path is not a local directory with config.json; give --base CKPT (the base model, or a directory holding its config.json)");
  fs::path cfg_path = fs::is_directory(b.path) ? fs::path(b.path) / "config.json" : fs::path(b.path).parent_path() / "config.json";
  if (!fs::exists(cfg_path)) throw error(cfg_path.string() + ": missing (the base's config.json gives the family and its dimensions)");
  json::value cfg = json::parse_file(cfg_path.string());
  std::error_code ec;
  b.registry = make_registry(vm, {fs::weakly_canonical(cfg_path.parent_path(), ec).string()});
  b.catalog = app::make_catalog(*b.registry);
  const json::value* mt = cfg.find("model_type");
  if (!mt || !mt->is_string()) throw error(cfg_path.string() + ": no \"model_type\" string, so the family is unknown");
  std::vector<std::string> plugins = b.catalog.plugins_for(mt->as_string());
  if (plugins.empty())
    throw error(cfg_path.string() + ": model_type '" + mt->as_string() + "' is not handled by any family plugin; " + app::known_families_hint(b.catalog));
  b.spec = b.catalog.resolve(plugins.front(), mt->as_string());
  b.dims = read_dims(b.spec, cfg, cfg_path.string());
  if (const json::value* a = cfg.find("architectures"); a && a->is_array() && !a->as_array().empty() && a->as_array()[0].is_string())
    b.arch = a->as_array()[0].as_string();
  return b;
}

lora_read_options read_options(const po::variables_map& vm, const lora_base& b) {
  lora_read_options o;
  if (vm.count("peft-version")) o.peft_version = vm["peft-version"].as<std::string>();
  o.base_architecture = b.arch;
  return o;
}

json::value pair_json(const lora_pair& p) {
  return json::value(json::object{{"rank", json::value(static_cast<std::int64_t>(p.rank))},
                                  {"alpha", json::value(p.alpha)},
                                  {"scale", json::value(p.scale())},
                                  {"dtype", json::value(std::string(dtype_name(p.A.type)))}});
}

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
  std::string dir = vm["adapter"].as<std::string>();
  lora_base b = open_base(dir, vm);
  lora_adapter a = read_lora_adapter(dir, b.spec, b.dims, read_options(vm, b));

  // Targets: one line per (piece, rank, alpha) over the experts, one per other module.
  std::map<std::string, std::pair<std::set<int>, std::size_t>> expert_targets;
  std::map<std::string, const lora_pair*> expert_example;
  for (const auto& [layer, ex] : a.experts)
    for (const auto& e : ex)
      for (int pc = 0; pc < 3; ++pc)
        if (const auto& pr = e[static_cast<std::size_t>(pc)]) {
          std::ostringstream alpha;
          alpha << pr->alpha;
          std::string k = std::string(piece_name(static_cast<piece>(pc))) + " r=" + std::to_string(pr->rank) + " alpha=" + alpha.str();
          expert_targets[k].first.insert(layer);
          expert_targets[k].second++;
          expert_example[k] = &*pr;
        }
  if (globals.json) {
    json::array experts, others, layers;
    for (const auto& [k, v] : expert_targets) {
      json::array ls;
      for (int l : v.first) ls.emplace_back(json::value(static_cast<std::int64_t>(l)));
      json::value j = pair_json(*expert_example[k]);
      j.set("piece", json::value(k.substr(0, k.find(' '))));
      j.set("layers", json::value(std::move(ls)));
      j.set("pairs", json::value(static_cast<std::uint64_t>(v.second)));
      experts.emplace_back(std::move(j));
    }
    for (const auto& o : a.others) {
      json::value j = pair_json(o.pair);
      j.set("module", json::value(o.stored));
      j.set("canonical", json::value(o.canonical));
      others.emplace_back(std::move(j));
    }
    for (const auto& [l, _] : a.experts) layers.emplace_back(json::value(static_cast<std::int64_t>(l)));
    std::cout << json::dump(json::value(json::object{{"adapter", json::value(dir)},
                                                      {"base", json::value(b.path)},
                                                      {"family", json::value(b.spec.name)},
                                                      {"dims", json::value(b.dims.describe())},
                                                      {"form", json::value(lora_form_name(a.form))},
                                                      {"orientation", json::value(lora_orientation_name(a.orientation))},
                                                      {"orientation_reason", json::value(a.orientation_reason)},
                                                      {"r", json::value(static_cast<std::int64_t>(a.rank))},
                                                      {"lora_alpha", json::value(a.alpha)},
                                                      {"gate_up_share_A", json::value(a.gate_up_share_A())},
                                                      {"expert_layers", json::value(std::move(layers))},
                                                      {"expert_pairs", json::value(static_cast<std::uint64_t>(a.expert_pair_count()))},
                                                      {"experts", json::value(std::move(experts))},
                                                      {"others", json::value(std::move(others))}}),
                            2)
              << "\n";
    return 0;
  }
  std::cout << dir << ": LoRA adapter, form " << lora_form_name(a.form) << "\n"
            << "  base: " << b.path << " (family " << b.spec.name << ", " << b.dims.describe() << ")\n";
  if (a.orientation != lora_orientation::none)
    std::cout << "  orientation: " << lora_orientation_name(a.orientation) << " (" << a.orientation_reason << ")\n";
  std::cout << "  r=" << a.rank << " lora_alpha=" << a.alpha << (a.rslora ? " (rslora)" : "") << "\n";
  std::cout << "  routed experts: " << a.expert_pair_count() << " pairs in " << a.experts.size() << " layers"
            << (a.experts.empty() ? "" : a.gate_up_share_A() ? "; gate and up share A" : "; gate and up carry different A") << "\n";
  for (const auto& [k, v] : expert_targets) {
    std::string ls;
    for (int l : v.first) ls += (ls.empty() ? "" : ",") + std::to_string(l);
    std::cout << "    " << k << ": " << v.second << " experts, layers " << ls << "\n";
  }
  std::cout << "  other modules: " << a.others.size() << "\n";
  for (const auto& o : a.others)
    std::cout << "    " << o.stored << " r=" << o.pair.rank << " alpha=" << o.pair.alpha
              << (o.canonical != o.stored + ".weight" ? " (canonical " + o.canonical + ")" : "") << "\n";
  return 0;
}

int run_lora_convert(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("lora convert ADAPTER OUT --to FORM [--base CKPT] [--peft-version V] [--experts A:B]",
                   "Rewrite an adapter in another form, exactly (factors copied, re-indexed, concatenated, never\n"
                   "recomputed): peft_param_wrapper (PEFT >= 0.18 target_parameters, written in the >= 0.19.1\n"
                   "orientation), peft_per_expert (one pair per expert module), nemo_grouped (NeMo Automodel).\n"
                   "adapter_config.json is rewritten to match. docs/lora.md says what is exact and what is refused.");
  p.options().add_options()("adapter", po::value<std::string>()->required(), "adapter directory")(
      "out", po::value<std::string>()->required(), "output directory (must not exist or be empty)")(
      "to", po::value<std::string>()->required(), "peft_param_wrapper, peft_per_expert or nemo_grouped")(
      "base", po::value<std::string>(), "base model (directory holding config.json)")(
      "peft-version", po::value<std::string>(), "PEFT version that saved the adapter, when adapter_config.json has none")(
      "experts", po::value<std::string>(), "A:B - keep only experts A..B-1 of every layer");
  add_plugin_options(p.options());
  p.positional("adapter", 1).positional("out", 1);
  auto vm = p.parse(args, globals);
  auto form = parse_lora_form(vm["to"].as<std::string>());
  if (!form) throw usage_error("--to '" + vm["to"].as<std::string>() + "': expected peft_param_wrapper, peft_per_expert or nemo_grouped");
  std::string dir = vm["adapter"].as<std::string>(), out = vm["out"].as<std::string>();
  lora_base b = open_base(dir, vm);
  lora_adapter a = read_lora_adapter(dir, b.spec, b.dims, read_options(vm, b));
  lora_write_options wo;
  wo.to = *form;
  if (vm.count("experts")) wo.experts = experts_value(cli_value(vm, "experts"));
  lora_output o = plan_lora_output(a, wo);
  write_lora_output(o, out);
  std::uint64_t bytes = 0;
  for (const auto& t : o.tensors) bytes += t.spec.nbytes();
  if (globals.json) {
    std::cout << json::dump(json::value(json::object{{"adapter", json::value(dir)},
                                                      {"from", json::value(lora_form_name(a.form))},
                                                      {"to", json::value(lora_form_name(*form))},
                                                      {"output", json::value(out)},
                                                      {"tensors", json::value(static_cast<std::uint64_t>(o.tensors.size()))},
                                                      {"bytes", json::value(bytes)},
                                                      {"notes", json::value(o.summary)}}),
                            2)
              << "\n";
  } else {
    std::cout << "converted " << dir << " (" << lora_form_name(a.form) << ") -> " << out << " (" << lora_form_name(*form) << "): "
              << o.tensors.size() << " tensors, " << bytes << " bytes\n";
    if (!o.summary.empty()) std::cout << "  " << o.summary << "\n";
  }
  return 0;
}

int run_lora_merge(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("lora merge BASE ADAPTER OUT [--to LAYOUT] [--rounding peft|single] [--experts A:B]",
                   "Write BASE with the adapter merged (W + scale * B @ A on every adapted matrix), in any layout of\n"
                   "its family (default: BASE's own), streaming in bounded memory through the same writer as\n"
                   "convert (sharded safetensors, --resume, atomic finish). --rounding peft (default) reproduces\n"
                   "PEFT's merge_and_unload bit for bit: experts round the delta and then the sum, other layers\n"
                   "round once; single rounds once everywhere (more accurate, differs from PEFT in the last bit).");
  p.options().add_options()("base_ckpt", po::value<std::string>()->required(), "base checkpoint")(
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
  p.positional("base_ckpt", 1).positional("adapter", 1).positional("out", 1);
  auto vm = p.parse(args, globals);
  app::convert_request job;
  job.source = vm["base_ckpt"].as<std::string>();
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
  return run_and_print(job, globals, &lora);
}

}  // namespace

int run_lora(const std::vector<std::string>& args, global_options& globals) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: moereg lora inspect ADAPTER [--base CKPT]                          (moereg lora inspect --help)\n"
                 "       moereg lora convert ADAPTER OUT --to FORM [--base CKPT]           (moereg lora convert --help)\n"
                 "       moereg lora merge BASE ADAPTER OUT [--to LAYOUT] [--rounding R]  (moereg lora merge --help)\n";
    if (args.empty()) throw usage_error("lora: expected a subcommand: inspect, convert or merge");
    return 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "inspect") return run_lora_inspect(rest, globals);
  if (args[0] == "convert") return run_lora_convert(rest, globals);
  if (args[0] == "merge") return run_lora_merge(rest, globals);
  throw usage_error("lora: unknown subcommand '" + args[0] + "', expected inspect, convert or merge");
}

}  // namespace moereg::cli
