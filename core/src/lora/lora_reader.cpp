// SPDX-License-Identifier: Apache-2.0
// Reading an adapter directory into canonical pairs (lora_adapter.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <regex>
#include <set>

#include "lora_reader_detail.h"
#include "moereg/base/error.h"
#include "moereg/tensor/finite.h"

namespace fs = std::filesystem;

namespace moereg {

using namespace lora_detail;

namespace lora_detail {

// PEFT's pattern lookup (rank_pattern, alpha_pattern): a key matches a module name that
// ends with it at a dot boundary, keys read as regular expressions.
const json::value* pattern_value(const json::value& config, const char* field, const std::vector<std::string>& names) {
  const json::value* pat = config.find(field);
  if (!pat || !pat->is_object()) return nullptr;
  for (const auto& name : names)
    for (const auto& [k, v] : pat->as_object()) {
      try {
        if (std::regex_match(name, std::regex("(.*\\.)?(" + k + ")"))) return &v;
      } catch (const std::regex_error&) {
        if (name == k || (name.size() > k.size() && name.compare(name.size() - k.size(), k.size(), k) == 0 &&
                          name[name.size() - k.size() - 1] == '.'))
          return &v;
      }
    }
  return nullptr;
}

void adapter_reader::read_config() {
  lora_adapter& a = a_;
  a.dir = dir_;
  a.config_path = (fs::path(dir_) / "adapter_config.json").string();
  a.weights_path = (fs::path(dir_) / "adapter_model.safetensors").string();
  a.spec = &spec_;
  a.dims = dims_;
  a.naming = derive_lora_naming(spec_);
  check_lora_adapter_dir(dir_);
  a.config = json::parse_file(a.config_path);
  const std::string& C = a.config_path;
  const json::value& cfg = a.config;
  if (!a.config.is_object()) throw error(C + ": expected a JSON object");

  // What the forms cannot carry, refused before any tensor is looked at.
  const json::value* pt = cfg.find("peft_type");
  if (!pt || !pt->is_string()) throw error(C + ": peft_type missing (expected \"LORA\")");
  if (pt->as_string() != "LORA") throw error(C + ": peft_type '" + pt->as_string() + "' is not supported (expected \"LORA\")");
  // PEFT reads these flags with Python's truth, so `1` or "true" would turn one on there; a
  // value that is not a JSON boolean is refused rather than read as false.
  auto truthy = [&](const char* k) {
    const json::value* v = cfg.find(k);
    if (!v || v->is_null()) return false;
    if (!v->is_bool()) throw error(C + ": " + k + " is " + json::dump(*v) + ": expected true or false");
    return v->as_bool();
  };
  if (truthy("use_dora")) throw error(C + ": use_dora is true: DoRA adapters (lora_magnitude_vector) are not supported by any expert form");
  if (truthy("fan_in_fan_out")) throw error(C + ": fan_in_fan_out is true: the expert forms store factors as [r, in] and [out, r]; an adapter of Conv1D-style weights is not supported");
  if (truthy("lora_bias")) throw error(C + ": lora_bias is true: the expert forms carry no bias of lora_B");
  if (truthy("use_qalora")) throw error(C + ": use_qalora is true: not supported");
  if (const json::value* b = cfg.find("bias"); b && b->is_string() && b->as_string() != "none")
    throw error(C + ": bias '" + b->as_string() + "': trained biases cannot be carried by the expert forms (expected \"none\")");
  if (const json::value* m = cfg.find("modules_to_save"); m && m->is_array() && !m->as_array().empty())
    throw error(C + ": modules_to_save is set: full copies of modules are not LoRA factors and are not supported");
  // A rank is an int from here on: one past it would be cut (2^32 + 4 read as 4).
  auto is_rank = [](const json::value& v) {
    return v.is_integer() && v.as_int() >= 1 && v.as_int() <= std::numeric_limits<int>::max();
  };
  const json::value* r = cfg.find("r");
  if (!r || !is_rank(*r))
    throw error(C + ": r " + (r ? json::dump(*r) : std::string("missing")) + ": expected a positive integer (at most " +
                std::to_string(std::numeric_limits<int>::max()) + ")");
  a.rank = static_cast<int>(r->as_int());
  const json::value* al = cfg.find("lora_alpha");
  if (!al || !al->is_number()) throw error(C + ": lora_alpha missing or not a number");
  a.alpha = al->as_double();
  // Every pattern value is checked here, whether or not a module uses it: one that is not a
  // rank (or a number) was taken as "no pattern" and the global r (or alpha) used instead.
  for (const char* field : {"rank_pattern", "alpha_pattern"}) {
    const json::value* pat = cfg.find(field);
    if (!pat || pat->is_null()) continue;
    if (!pat->is_object()) throw error(C + ": " + field + ": expected an object of module name pattern -> value");
    const bool ranks = std::string(field) == "rank_pattern";
    for (const auto& [k, v] : pat->as_object())
      if (ranks ? !is_rank(v) : !v.is_number())
        throw error(C + ": " + field + " \"" + k + "\": " + json::dump(v) + ": expected " +
                    (ranks ? "a positive integer (at most " + std::to_string(std::numeric_limits<int>::max()) + ")"
                           : std::string("a number")));
  }
  a.rslora = truthy("use_rslora");
  if (const json::value* cls = cfg.find_path("auto_mapping.base_model_class");
      cls && cls->is_string() && !options_.base_architecture.empty() && cls->as_string() != options_.base_architecture)
    throw error(C + ": auto_mapping.base_model_class is " + cls->as_string() + " but the base model is " + options_.base_architecture +
                ": an adapter for another model");
}

void adapter_reader::open_weights() {
  lora_adapter& a = a_;
  a.file = std::make_unique<safetensors_file>(a.weights_path);
}

void adapter_reader::group_tensors() {
  lora_adapter& a = a_;
  const std::string& W = a.weights_path;
  // Group the tensors: PEFT modules (by module name and base_layer depth) and NeMo tensors.
  for (const auto& t : a.file->tensors()) {
    std::string k = t.name;
    if (k.rfind(peft_prefix, 0) == 0) k = k.substr(std::strlen(peft_prefix));
    if (!float_type(t.type)) {
      problem(W + ": " + t.name + ": dtype " + std::string(dtype_name(t.type)) + ", expected F32, BF16 or F16 factors");
      continue;
    }
    // A merge would write a non-finite factor's products into the base weights: NaN, silently.
    if (const std::int64_t bad = first_non_finite(t.type, a.file->data(t), static_cast<std::int64_t>(t.numel())); bad >= 0) {
      problem(W + ": " + t.name + ": element " + std::to_string(bad) +
              " is NaN or infinite, expected finite factors (the adapter is damaged; merged, it would make the weights NaN)");
      continue;
    }
    auto ends = [&](const std::string& s) { return k.size() > s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0; };
    bool isA = ends(".lora_A.weight"), isB = ends(".lora_B.weight");
    if (isA || isB) {
      std::string m = k.substr(0, k.size() - 14);
      int depth = 0;
      while (m.size() > 11 && m.compare(m.size() - 11, 11, ".base_layer") == 0) {
        m.resize(m.size() - 11);
        ++depth;
      }
      (isA ? peft_[{m, depth}].A : peft_[{m, depth}].B) = &t;
      continue;
    }
    bool is_nemo = false;
    for (const auto& n : nemo_tensors)
      for (std::string suf : {std::string(".") + n.suffix, std::string(".") + n.suffix + ".weight"})
        if (!is_nemo && ends(suf)) {
          nemo_[k.substr(0, k.size() - suf.size())][n.suffix] = &t;
          is_nemo = true;
        }
    if (is_nemo) continue;
    if (k.find("lora_magnitude_vector") != std::string::npos)
      problem(W + ": " + t.name + ": a DoRA magnitude vector; DoRA adapters are not supported");
    else if (ends(".lora_B.bias") || ends(".lora_A.bias"))
      problem(W + ": " + t.name + ": a LoRA bias; the expert forms carry no biases");
    else if (k.find("lora_embedding") != std::string::npos)
      problem(W + ": " + t.name + ": LoRA on an embedding is not supported");
    else
      problem(W + ": " + t.name + ": not a LoRA factor (expected <module>.lora_A.weight / .lora_B.weight, or NeMo's lora_gate_and_up_A/B, lora_down_A/B)");
  }
}

void adapter_reader::find_targets() {
  lora_adapter& a = a_;
  const json::value& cfg = a.config;
  fused_ = fused_targets(a.naming.modules);
  split_ = per_expert_templates(a.naming);
  gmod_ = grouped_module(a.naming);
  if (const json::value* tp = cfg.find("target_parameters"); tp && tp->is_array())
    for (const auto& v : tp->as_array())
      if (v.is_string()) target_params_.push_back(v.as_string());
  // NeMo Automodel matches its own target_modules (not PEFT's rules): its adapters are not checked.
  if (nemo_.empty()) targets_.emplace(cfg);
}

bool adapter_reader::targeted(const factor_pair& f, const std::string& why) {
  if (why.empty()) return true;
  untargeted_.emplace_back(f.A->name, why);
  return false;
}

void adapter_reader::report_untargeted() {
  if (untargeted_.empty()) return;
  if (options_.keep_untargeted) {
    for (const auto& [k, why] : untargeted_) a_.untargeted.push_back(k + ": " + why);
    return;
  }
  const auto& [key, why] = untargeted_[0];
  std::string msg = a_.weights_path + ": " + key + " (and its lora_B): not applied by PEFT: " + a_.config_path + ": " + why +
                    ". PEFT builds no LoRA layer there and skips these factors as unexpected keys; they are refused rather than "
                    "merged or converted (remove them from the adapter, or make adapter_config.json target the module)";
  if (untargeted_.size() > 1) {
    msg += "\n    " + std::to_string(untargeted_.size() - 1) + " more pair(s) not applied by PEFT:";
    for (std::size_t i = 1; i < untargeted_.size() && i <= 8; ++i) msg += "\n      " + untargeted_[i].first + ": " + untargeted_[i].second;
    if (untargeted_.size() > 9) msg += "\n      ... and " + std::to_string(untargeted_.size() - 9) + " more";
  }
  problems_.insert(problems_.begin(), msg);
}

void adapter_reader::read_peft_pairs() {
  lora_adapter& a = a_;
  const std::string& W = a.weights_path;
  for (const auto& [mk, f] : peft_) {
    const auto& [m, depth] = mk;
    std::string what = std::string(peft_prefix) + m + (depth ? std::string(".base_layer") : "") + ".lora_{A,B}.weight";
    if (!f.A || !f.B) {
      problem(W + ": " + std::string(peft_prefix) + m + std::string(depth ? ".base_layer" : "") + (f.A ? ".lora_B.weight" : ".lora_A.weight") +
              " missing (its pair " + (f.A ? "lora_A" : "lora_B") + " is present)");
      continue;
    }
    // A fused expert module (ParamWrapper)?
    std::vector<const fused_target*> params;
    std::optional<captures> cap;
    for (const auto& ft : fused_)
      if (auto c = ft.module.match(m)) {
        cap = c;
        params.push_back(&ft);
      }
    if (!params.empty()) {
      read_wrapper_pair(m, depth, f, what, params, *cap);
      continue;
    }
    if (depth > 0) {
      problem(W + ": " + what + ": base_layer nesting on a module that is not the family's fused experts");
      continue;
    }
    if (read_per_expert_pair(m, f, what)) continue;
    read_other_pair(m, f, what);
  }
}

void adapter_reader::read_wrapper_pair(const std::string& m, int depth, const factor_pair& f, const std::string& what,
                                       const std::vector<const fused_target*>& params, const captures& c) {
  lora_adapter& a = a_;
  const model_dims& dims = dims_;
  const std::string& C = a.config_path;
  const std::string& W = a.weights_path;
  // Which parameter: PEFT nests one wrapper per target in target_parameters order, the
  // last outermost, so the i-th of n targets on this module sits under n-1-i base_layers.
  std::vector<std::pair<std::size_t, const fused_target*>> order;
  for (const auto* ft : params) {
    std::string full = m + "." + ft->param;
    for (std::size_t i = 0; i < target_params_.size(); ++i) {
      const std::string& p = target_params_[i];
      if (full == p || (full.size() > p.size() && full.compare(full.size() - p.size(), p.size(), p) == 0 && full[full.size() - p.size() - 1] == '.')) {
        order.emplace_back(i, ft);
        break;
      }
    }
  }
  std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  int n = static_cast<int>(order.size());
  if (n == 0) {
    problem(C + ": target_parameters names no parameter of " + m + " (" + what + " is a ParamWrapper pair on the fused experts; expected e.g. [\"" +
            leaf_of(module_of(params[0]->entry->key.text())) + "." + params[0]->param + "\"])");
    return;
  }
  if (depth >= n) {
    problem(W + ": " + what + ": nested " + std::to_string(depth) + " base_layer deep but target_parameters names only " + std::to_string(n) +
            " parameter(s) of this module");
    return;
  }
  const fused_target* ft = order[static_cast<std::size_t>(n - 1 - depth)].second;
  int layer = std::stoi(c.at("layer"));
  if (!layer_ok(layer, what)) return;
  std::int64_t out = 0, in = geom(ft->entry->pieces[0], dims).in;
  for (piece p : ft->entry->pieces) out += geom(p, dims).out;
  wrapper_pair w{ft, layer, f, m, 0, 0, false, false};
  expected({m + "." + ft->param, m}, &w.rank, &w.alpha);
  const auto &sA = f.A->shape, &sB = f.B->shape;
  std::int64_t rE = static_cast<std::int64_t>(w.rank) * dims.E;
  if (sA.size() != 2 || sB.size() != 2) {
    problem(W + ": " + what + ": factors must be 2-D");
    return;
  }
  w.fits_new = sA[0] == rE && sA[1] == in && sB[0] == out && sB[1] == rE;
  w.fits_old = sA[0] == rE && sA[1] == out && sB[0] == in && sB[1] == rE;
  if (!w.fits_new && !w.fits_old) {
    if (sA[0] % dims.E == 0 && sA[0] != rE && sB.size() == 2 && sB[1] == sA[0])
      problem(W + ": " + what + ": rank " + std::to_string(sA[0] / dims.E) + " (lora_A " + shape_string(sA) + " = E*r with E=" +
              std::to_string(dims.E) + ") disagrees with " + C + " (r or rank_pattern: " + std::to_string(w.rank) + ")");
    else
      problem(W + ": " + what + ": lora_A " + shape_string(sA) + ", lora_B " + shape_string(sB) + " do not fit the base's " +
              ft->param + " (" + dims.describe() + ", r=" + std::to_string(w.rank) + "): expected lora_A [" + std::to_string(rE) + ", " +
              std::to_string(in) + "] and lora_B [" + std::to_string(out) + ", " + std::to_string(rE) + "] (PEFT >= 0.19.1) or lora_A [" +
              std::to_string(rE) + ", " + std::to_string(out) + "] and lora_B [" + std::to_string(in) + ", " + std::to_string(rE) +
              "] (PEFT <= 0.19.0)");
    return;
  }
  any_wrapper_ = true;
  wrappers_.push_back(w);
}

bool adapter_reader::read_per_expert_pair(const std::string& m, const factor_pair& f, const std::string& what) {
  lora_adapter& a = a_;
  const model_dims& dims = dims_;
  const std::string& C = a.config_path;
  const std::string& W = a.weights_path;
  // A per-expert module?
  bool done = false;
  for (const auto& t : split_) {
    for (const auto& rt : t.read)
      if (auto c = rt.match(m)) {
        done = true;
        int layer = std::stoi(c->at("layer"));
        std::int64_t e = std::stoll(c->at("expert"));
        if (targets_) {
          // The fused parameter this piece becomes in a transformers 5 model, and every layer's experts module.
          std::string param;
          std::vector<std::string> containers;
          for (const auto& ft : fused_) {
            if (std::find(ft.entry->pieces.begin(), ft.entry->pieces.end(), t.p) != ft.entry->pieces.end())
              param = ft.module.format({{"layer", std::to_string(layer)}}) + "." + ft.param;
            if (containers.empty())
              for (int l : dims.moe_layers) containers.push_back(ft.module.format({{"layer", std::to_string(l)}}));
          }
          if (!targeted(f, targets_->per_expert(m, leaf_of(m), param, containers))) break;
        }
        if (!layer_ok(layer, what)) break;
        if (e >= dims.E) {
          problem(W + ": " + what + ": expert " + std::to_string(e) + " but the base has E=" + std::to_string(dims.E));
          break;
        }
        auto g = geom(t.p, dims);
        lora_pair p;
        expected({m}, &p.rank, &p.alpha);
        p.rslora = a.rslora;
        const auto &sA = f.A->shape, &sB = f.B->shape;
        if (sA.size() != 2 || sB.size() != 2 || sA[1] != g.in || sB[0] != g.out || sA[0] != sB[1]) {
          problem(W + ": " + what + ": lora_A " + shape_string(sA) + ", lora_B " + shape_string(sB) + " do not fit " + piece_name(t.p) +
                  " [" + std::to_string(g.out) + ", " + std::to_string(g.in) + "] of the base (" + dims.describe() + "): expected [r, " +
                  std::to_string(g.in) + "] and [" + std::to_string(g.out) + ", r]");
          break;
        }
        if (sA[0] != p.rank) {
          problem(W + ": " + what + ": rank " + std::to_string(sA[0]) + " disagrees with " + C + " (r or rank_pattern: " + std::to_string(p.rank) + ")");
          break;
        }
        p.A = view_of(entry_for(f.A), 0, sA[0], sA[1], sA[1], 1);
        p.B = view_of(entry_for(f.B), 0, sB[0], sB[1], sB[1], 1);
        auto& s = slot(layer, e)[static_cast<std::size_t>(t.p)];
        if (s) problem(W + ": " + what + ": " + piece_name(t.p) + " of layer " + std::to_string(layer) + " expert " + std::to_string(e) + " adapted twice");
        s = p;
        any_split_ = true;
        break;
      }
    if (done) break;
  }
  return done;
}

void adapter_reader::read_other_pair(const std::string& m, const factor_pair& f, const std::string& what) {
  lora_adapter& a = a_;
  const std::string& C = a.config_path;
  const std::string& W = a.weights_path;
  // Any other module: carried through under its canonical name.
  lora_module_pair o;
  o.stored = m;
  o.canonical = to_canonical(*a.naming.modules, m + ".weight");
  if (targets_ && !targeted(f, targets_->other(m, !spec_.moe_block.router.empty() && spec_.moe_block.router.match(o.canonical))))
    return;
  expected({m}, &o.pair.rank, &o.pair.alpha);
  o.pair.rslora = a.rslora;
  const auto &sA = f.A->shape, &sB = f.B->shape;
  if (sA.size() != 2 || sB.size() != 2 || sA[0] != sB[1]) {
    problem(W + ": " + what + ": lora_A " + shape_string(sA) + " and lora_B " + shape_string(sB) + " are not a pair [r, in], [out, r]");
    return;
  }
  if (sA[0] != o.pair.rank) {
    problem(W + ": " + what + ": rank " + std::to_string(sA[0]) + " disagrees with " + C + " (r or rank_pattern: " + std::to_string(o.pair.rank) + ")");
    return;
  }
  if (options_.base) {
    auto it = std::find_if(options_.base->others.begin(), options_.base->others.end(),
                           [&](const passthrough_tensor& t) { return t.canonical == o.canonical; });
    if (it == options_.base->others.end()) {
      problem(W + ": " + what + ": the base has no weight " + o.canonical + ": an adapter for another model?");
      return;
    }
    const auto& bs = it->source->info->shape;
    if (bs.size() != 2 || bs[0] != sB[0] || bs[1] != sA[1]) {
      problem(W + ": " + what + ": lora_B " + shape_string(sB) + " x lora_A " + shape_string(sA) + " does not fit the base's " + o.canonical + " " +
              shape_string(bs));
      return;
    }
  }
  o.pair.A = view_of(entry_for(f.A), 0, sA[0], sA[1], sA[1], 1);
  o.pair.B = view_of(entry_for(f.B), 0, sB[0], sB[1], sB[1], 1);
  a.others.push_back(std::move(o));
}

void adapter_reader::read_wrapper_orientation() {
  lora_adapter& a = a_;
  const model_dims& dims = dims_;
  const std::string& C = a.config_path;
  const std::string& W = a.weights_path;
  const json::value& cfg = a.config;
  // The orientation of ParamWrapper pairs: peft_version decides; without it the shapes, when
  // they can tell (they cannot where in == out for every pair, e.g. gate_up with 2I == H).
  if (!wrappers_.empty()) {
    const json::value* pv = cfg.find("peft_version");
    std::string version = pv && pv->is_string() ? pv->as_string() : "";
    if (!version.empty() && !options_.peft_version.empty() &&
        parse_peft_version(version, C) != parse_peft_version(options_.peft_version, "--peft-version"))
      throw error(C + ": peft_version '" + version + "' disagrees with --peft-version " + options_.peft_version);
    std::string v = version.empty() ? options_.peft_version : version;
    if (!v.empty()) {
      auto n = parse_peft_version(v, version.empty() ? "--peft-version" : C + ": peft_version");
      bool old = n < std::array<int, 3>{0, 19, 1};
      a.orientation = old ? lora_orientation::peft_0_18 : lora_orientation::peft_0_19_1;
      a.orientation_reason = "peft_version " + v + (version.empty() ? " (--peft-version)" : " (adapter_config.json)") +
                             (old ? " < 0.19.1: in and out taken positionally from the fused parameter" : " >= 0.19.1: the matrices' own in and out");
      for (const auto& w : wrappers_)
        if (old ? !w.fits_old : !w.fits_new)
          problem(W + ": " + peft_prefix + w.module + "...lora_A.weight " + shape_string(w.f.A->shape) + ": does not fit " +
                  lora_orientation_name(a.orientation) + " (" + a.orientation_reason + ") for " + w.target->param + " with " + dims.describe());
    } else {
      bool can_new = true, can_old = true;
      for (const auto& w : wrappers_) {
        can_new &= w.fits_new;
        can_old &= w.fits_old;
      }
      if (can_new && can_old)
        throw error(C + ": no peft_version, and with " + dims.describe() +
                    " the ParamWrapper factors have the same shapes in both PEFT orientations (<= 0.19.0 and >= 0.19.1): give --peft-version "
                    "with the PEFT version that saved the adapter");
      if (!can_new && !can_old)
        problem(W + ": ParamWrapper factors fit neither PEFT orientation consistently across layers");
      a.orientation = can_new ? lora_orientation::peft_0_19_1 : lora_orientation::peft_0_18;
      a.orientation_reason = std::string("no peft_version; the factor shapes fit only ") + lora_orientation_name(a.orientation);
    }
    if (problems_.empty())
      for (const auto& w : wrappers_) {
        bool old = a.orientation == lora_orientation::peft_0_18;
        const checkpoint::entry* eA = entry_for(w.f.A);
        const checkpoint::entry* eB = entry_for(w.f.B);
        std::int64_t r_ = w.rank, E = dims.E, rE = r_ * E;
        std::int64_t in = geom(w.target->entry->pieces[0], dims).in, out_total = 0;
        for (piece p : w.target->entry->pieces) out_total += geom(p, dims).out;
        for (std::int64_t e = 0; e < E; ++e) {
          std::int64_t row0 = 0;
          for (piece p : w.target->entry->pieces) {
            auto g = geom(p, dims);
            lora_pair pr;
            pr.rank = w.rank;
            pr.alpha = w.alpha;
            pr.rslora = a.rslora;
            auto ue = static_cast<std::uint64_t>(e);
            if (!old) {
              pr.A = view_of(eA, ue * static_cast<std::uint64_t>(r_ * in), r_, in, in, 1);
              pr.B = view_of(eB, ue + static_cast<std::uint64_t>(row0 * rE), g.out, r_, rE, E);
            } else {
              // A_e = (B_old_e)^T with B_old [in, r*E]; B_e = (A_old_e)^T with A_old [E*r, out].
              pr.A = view_of(eB, ue, r_, in, E, rE);
              pr.B = view_of(eA, ue * static_cast<std::uint64_t>(r_ * out_total) + static_cast<std::uint64_t>(row0), g.out, r_, 1, out_total);
            }
            auto& s = slot(w.layer, e)[static_cast<std::size_t>(p)];
            if (s) problem(W + ": layer " + std::to_string(w.layer) + " " + piece_name(p) + " adapted twice");
            s = pr;
            row0 += g.out;
          }
        }
      }
  }
}

lora_adapter adapter_reader::finish() {
  lora_adapter& a = a_;
  const std::string& W = a.weights_path;
  report_untargeted();
  int forms = any_wrapper_ + any_split_ + any_nemo_;
  if (forms > 1) problem(W + ": expert pairs in more than one form (ParamWrapper, per-expert, NeMo grouped) in one adapter");
  if (!problems_.empty()) {
    std::string msg = problems_.size() == 1 ? problems_[0] : std::to_string(problems_.size()) + " problems in the adapter " + dir_ + ":";
    if (problems_.size() > 1)
      for (std::size_t i = 0; i < problems_.size() && i < 20; ++i) msg += "\n  " + problems_[i];
    if (problems_.size() > 20) msg += "\n  ... and " + std::to_string(problems_.size() - 20) + " more";
    throw error(msg);
  }
  a.form = any_wrapper_ ? lora_form::peft_param_wrapper : any_nemo_ ? lora_form::nemo_grouped : lora_form::peft_per_expert;
  if (a.form == lora_form::nemo_grouped)
    for (auto& o : a.others) o.canonical = to_canonical(*a.naming.grouped, o.stored + ".weight");
  std::sort(a.others.begin(), a.others.end(), [](const auto& x, const auto& y) { return x.canonical < y.canonical; });
  if (a.experts.empty() && a.others.empty() && a.untargeted.empty()) throw error(W + ": no LoRA factors");
  return std::move(a_);
}

}  // namespace lora_detail

lora_adapter read_lora_adapter(const std::string& dir, const family_spec& spec, const model_dims& dims,
                               const lora_read_options& options) {
  return adapter_reader(dir, spec, dims, options).read();
}

}  // namespace moereg
