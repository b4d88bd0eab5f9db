// SPDX-License-Identifier: Apache-2.0
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "guard.h"
#include "moereg/app/lora.h"
#include "moereg/lora/lora_adapter.h"
#include "moereg/lora/lora_writer.h"
#include "session.h"

namespace fs = std::filesystem;

namespace moereg::app {

namespace {

// The base an adapter is read against: only its config.json is needed (family and dims).
struct lora_base {
  std::unique_ptr<plugin_registry> registry;
  family_catalog catalog;
  family_spec spec;
  model_dims dims;
  std::string path, arch;
};

lora_base open_base(const lora_open_request& r) {
  if (r.adapter.empty()) throw usage_error("lora: no adapter directory given");
  check_lora_adapter_dir(r.adapter);  // before its config is read for the base
  lora_base b;
  b.path = !r.base.empty() ? r.base : lora_local_base(r.adapter);
  if (b.path.empty())
    throw usage_error(r.adapter + "/adapter_config.json: base_model_name_or_path is not a local directory with config.json; give --base CKPT (the base model, or a directory holding its config.json)");
  std::error_code exists_ec;
  if (!fs::exists(b.path, exists_ec))
    throw error(b.path + ": no such file or directory (the base checkpoint, or a directory holding its config.json)");
  const fs::path cfg_path = fs::is_directory(b.path) ? fs::path(b.path) / "config.json" : fs::path(b.path).parent_path() / "config.json";
  if (!fs::exists(cfg_path)) throw error(cfg_path.string() + ": missing (the base's config.json gives the family and its dimensions)");
  const json::value cfg = json::parse_file(cfg_path.string());
  std::error_code ec;
  b.registry = make_registry(r.plugin_paths, {fs::weakly_canonical(cfg_path.parent_path(), ec).string()});
  b.catalog = make_catalog(*b.registry);
  const json::value* mt = cfg.find("model_type");
  if (!mt || !mt->is_string()) throw error(cfg_path.string() + ": no \"model_type\" string, so the family is unknown");
  const std::vector<std::string> plugins = b.catalog.plugins_for(mt->as_string());
  if (plugins.empty())
    throw error(cfg_path.string() + ": model_type '" + mt->as_string() + "' is not handled by any family plugin; " +
                known_families_hint(b.catalog));
  b.spec = b.catalog.resolve(plugins.front(), mt->as_string());
  b.dims = read_dims(b.spec, cfg, cfg_path.string());
  if (const json::value* a = cfg.find("architectures"); a && a->is_array() && !a->as_array().empty() && a->as_array()[0].is_string())
    b.arch = a->as_array()[0].as_string();
  return b;
}

// keep_untargeted: pairs PEFT would not apply are listed (inspect) instead of refused (convert).
lora_adapter read_adapter(const lora_open_request& r, const lora_base& b, bool keep_untargeted = false) {
  lora_read_options o;
  o.peft_version = r.peft_version;
  o.base_architecture = b.arch;
  o.keep_untargeted = keep_untargeted;
  return read_lora_adapter(r.adapter, b.spec, b.dims, o);
}

// One target per (piece, rank, alpha) over the routed experts.
std::vector<lora_expert_target> expert_targets(const lora_adapter& a) {
  std::map<std::string, lora_expert_target> by_key;
  for (const auto& [layer, ex] : a.experts)
    for (const auto& e : ex)
      for (int pc = 0; pc < 3; ++pc)
        if (const auto& pr = e[static_cast<std::size_t>(pc)]) {
          std::ostringstream alpha;
          alpha << pr->alpha;
          const std::string piece_text = piece_name(static_cast<moereg::piece>(pc));
          lora_expert_target& t = by_key[piece_text + " r=" + std::to_string(pr->rank) + " alpha=" + alpha.str()];
          t.piece = piece_text;
          t.rank = pr->rank;
          t.alpha = pr->alpha;
          t.scale = pr->scale();
          t.dtype = dtype_name(pr->A.type);
          if (t.layers.empty() || t.layers.back() != layer) t.layers.push_back(layer);
          ++t.pairs;
        }
  std::vector<lora_expert_target> out;
  for (auto& [_, t] : by_key) out.push_back(std::move(t));
  return out;
}

}  // namespace

result<lora_info> inspect_lora(const lora_open_request& r) noexcept {
  return guarded([&] {
    const lora_base b = open_base(r);
    const lora_adapter a = read_adapter(r, b, true);
    lora_info info;
    info.adapter = r.adapter;
    info.base = b.path;
    info.family = b.spec.name;
    info.dims = b.dims.describe();
    info.form = lora_form_name(a.form);
    info.orientation = a.orientation == lora_orientation::none ? "" : lora_orientation_name(a.orientation);
    info.orientation_reason = a.orientation_reason;
    info.rank = a.rank;
    info.alpha = a.alpha;
    info.rslora = a.rslora;
    info.gate_up_share_A = a.gate_up_share_A();
    for (const auto& [l, _] : a.experts) info.expert_layers.push_back(l);
    info.expert_pairs = a.expert_pair_count();
    info.experts = expert_targets(a);
    for (const auto& o : a.others)
      info.others.push_back({o.stored, o.canonical, o.pair.rank, o.pair.alpha, o.pair.scale(), std::string(dtype_name(o.pair.A.type))});
    info.untargeted = a.untargeted;
    return info;
  });
}

result<lora_convert_report> convert_lora(const lora_convert_request& r) noexcept {
  return guarded([&] {
    const auto form = parse_lora_form(r.to);
    if (!form) throw usage_error("--to '" + r.to + "': expected peft_param_wrapper, peft_per_expert or nemo_grouped");
    if (r.output.empty()) throw usage_error("lora convert: no output directory given");
    const lora_base b = open_base(r.source);
    const lora_adapter a = read_adapter(r.source, b);
    lora_write_options wo;
    wo.to = *form;
    wo.experts = r.experts;
    const lora_output o = plan_lora_output(a, wo);
    write_lora_output(o, r.output);
    lora_convert_report rep;
    rep.adapter = r.source.adapter;
    rep.from = lora_form_name(a.form);
    rep.to = lora_form_name(*form);
    rep.output = r.output;
    rep.tensors = o.tensors.size();
    for (const auto& t : o.tensors) rep.bytes += t.spec.nbytes();
    rep.notes = o.summary;
    return rep;
  });
}

}  // namespace moereg::app
