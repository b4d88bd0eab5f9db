// SPDX-License-Identifier: Apache-2.0
// Writing an adapter in a chosen form (lora_writer.h).
#include "moereg/lora/lora_writer.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "lora_naming_detail.h"
#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/exec/executor.h"

namespace moereg {

using namespace lora_detail;

namespace {

std::string strip_weight(const std::string& s) {
  return s.size() > 7 && s.compare(s.size() - 7, 7, ".weight") == 0 ? s.substr(0, s.size() - 7) : s;
}

// The output rank and alpha of each module (or module pattern), for rank_pattern/alpha_pattern.
struct rank_use {
  std::string key;  // module name, or a pattern standing for several
  int rank;
  double alpha;
  std::size_t count;
  std::string leaf;  // for target_modules
  bool listed = true;  // named in target_modules (fused expert modules are target_parameters or NeMo's own)
};

// Linear index map of a fused factor tensor: element (e, row, col) of an expert's block is at
// e*per_expert + row*row_stride + col*col_stride.
struct fused_map {
  std::int64_t per_expert, row_stride, col_stride;
};

void place(lora_output_tensor& t, const matrix_view& v, std::int64_t e, std::int64_t row0, std::int64_t col0, const fused_map& m) {
  lora_block b;
  b.src = v;
  b.dst_offset = static_cast<std::uint64_t>(e * m.per_expert + row0 * m.row_stride + col0 * m.col_stride);
  b.dst_row_stride = m.row_stride;
  b.dst_col_stride = m.col_stride;
  t.blocks.push_back(b);
}

dtype factor_type(const lora_adapter& a) {
  for (const auto& [l, ex] : a.experts)
    for (const auto& e : ex)
      for (const auto& p : e)
        if (p) return p->A.type;
  return a.others.empty() ? dtype::F32 : a.others[0].pair.A.type;
}

}  // namespace

lora_output plan_lora_output(const lora_adapter& a, const lora_write_options& options) {
  lora_output out;
  const model_dims& d = a.dims;
  std::int64_t e0 = 0, e1 = d.E;
  if (options.experts) {
    std::tie(e0, e1) = *options.experts;
    if (e0 < 0 || e1 > d.E || e0 >= e1)
      throw error("--experts " + std::to_string(e0) + ":" + std::to_string(e1) + ": expected 0 <= A < B <= E = " + std::to_string(d.E));
  }
  const std::int64_t En = e1 - e0;
  const dtype ft = factor_type(a);
  std::vector<rank_use> uses;
  auto tensor = [&](std::string name, std::vector<std::int64_t> shape) -> lora_output_tensor& {
    lora_output_tensor t;
    t.spec.name = std::move(name);
    t.spec.type = ft;
    t.spec.shape = std::move(shape);
    out.tensors.push_back(std::move(t));
    return out.tensors.back();
  };
  auto check_type = [&](const lora_pair& p, const std::string& where) {
    if (p.A.type != ft || p.B.type != ft)
      throw error(a.weights_path + ": " + where + ": factors of dtype " + std::string(dtype_name(p.A.type)) + " beside " + std::string(dtype_name(ft)) +
                  "; a converted adapter keeps one dtype (the bytes are copied, never cast)");
  };
  const bool nemo = options.to == lora_form::nemo_grouped;
  const std::string prefix = nemo ? "" : peft_prefix;
  const layout_spec& names = nemo ? *a.naming.grouped : *a.naming.modules;

  // Routed experts.
  std::vector<std::string> target_params;
  std::string summary;
  if (options.to == lora_form::peft_per_expert) {
    std::vector<per_expert_template> tpl = per_expert_templates(a.naming);
    if (tpl.empty() && !a.experts.empty())
      throw error("family " + a.spec->name + " declares no layout with one tensor per expert, so there is no per-expert adapter form for it");
    for (const auto& [layer, ex] : a.experts)
      for (const auto& t : tpl) {
        std::size_t n = 0;
        int rank = 0;
        double alpha = 0;
        for (std::int64_t e = e0; e < e1; ++e) {
          const auto& p = ex[static_cast<std::size_t>(e)][static_cast<std::size_t>(t.p)];
          if (!p) continue;
          std::string m = t.write.format({{"layer", std::to_string(layer)}, {"expert", std::to_string(e)}});
          check_type(*p, m);
          auto& A = tensor(prefix + m + ".lora_A.weight", {p->A.rows, p->A.cols});
          place(A, p->A, 0, 0, 0, {0, p->A.cols, 1});
          auto& B = tensor(prefix + m + ".lora_B.weight", {p->B.rows, p->B.cols});
          place(B, p->B, 0, 0, 0, {0, p->B.cols, 1});
          if (n && (rank != p->rank || alpha != p->alpha)) {
            uses.push_back({m, p->rank, p->alpha, 1, leaf_of(m)});
            continue;
          }
          rank = p->rank;
          alpha = p->alpha;
          ++n;
        }
        if (n) {
          std::string pat = t.write.format({{"layer", std::to_string(layer)}, {"expert", "\\d+"}});
          uses.push_back({pat, rank, alpha, n, leaf_of(t.write.text())});
        }
      }
  } else if (!a.experts.empty()) {
    std::vector<fused_target> fused = fused_targets(a.naming.modules);
    key_template gmod = grouped_module(a.naming);
    if (!nemo && fused.empty())
      throw error("family " + a.spec->name + " declares no fused expert layout (stacked [E, out, in] tensors, e.g. transformers_v5), so there is no ParamWrapper form for it");
    if (nemo && gmod.empty()) throw error("family " + a.spec->name + " declares no stacked expert layout, so there is no NeMo grouped form for it");
    if (nemo) {  // NeMo always holds gate_up and down
      fused.clear();
      fused_target gu, dn;
      static const expert_entry gu_entry{"gate_up", {}, {piece::gate, piece::up}}, dn_entry{"down", {}, {piece::down}};
      gu.entry = &gu_entry;
      dn.entry = &dn_entry;
      fused = {gu, dn};
    }
    const bool share = a.gate_up_share_A();
    for (const auto& [layer, ex] : a.experts) {
      const std::string L = std::to_string(layer);
      // Ranks: per fused target, the rank its pieces need; the module's rank is the largest.
      struct plan_t {
        const fused_target* t;
        int rank = 0;
        double alpha = 0;
        bool block_diag = false;
        bool any = false;
      };
      std::vector<plan_t> plans;
      int module_rank = 0;
      double module_scale = 0;
      bool rslora = false;
      for (const auto& t : fused) {
        plan_t pl{&t};
        for (std::int64_t e = e0; e < e1; ++e) {
          int rk = 0;
          const auto& slots = ex[static_cast<std::size_t>(e)];
          bool diag = t.entry->pieces.size() > 1 && !share;
          for (piece p : t.entry->pieces) {
            const auto& pr = slots[static_cast<std::size_t>(p)];
            if (!pr) continue;
            pl.any = true;
            rk = diag ? rk + pr->rank : std::max(rk, pr->rank);
            double sc = pr->scale();
            if (module_scale != 0 && sc != module_scale)
              throw error(a.config_path + ": layer " + L + ": expert pairs with different scales (lora_alpha / r) cannot share one fused module");
            module_scale = sc;
            rslora = pr->rslora;
            if (pl.alpha == 0) pl.alpha = pr->alpha;
          }
          if (pl.rank && rk && rk != pl.rank)
            throw error(a.config_path + ": layer " + L + ": experts of different ranks cannot be folded into one fused " + std::string(nemo ? "NeMo" : "ParamWrapper") + " pair");
          if (rk) pl.rank = rk;
          pl.block_diag = diag;
        }
        if (pl.any) {
          module_rank = std::max(module_rank, pl.rank);
          plans.push_back(pl);
        }
      }
      if (plans.empty()) continue;
      if (rslora && std::any_of(plans.begin(), plans.end(), [&](const plan_t& p) { return p.rank != module_rank; }))
        throw error(a.config_path + ": use_rslora with fused pairs of different ranks (block-diagonal gate_up, padded down): the scale alpha/sqrt(r) would change");
      int rf = module_rank;
      std::string module_name;
      std::size_t nt = plans.size();
      for (std::size_t ti = 0; ti < nt; ++ti) {
        const plan_t& pl = plans[ti];
        const fused_target& t = *pl.t;
        std::int64_t in = t.entry->pieces[0] == piece::down ? d.I : d.H, out_total = 0;
        for (piece p : t.entry->pieces) out_total += p == piece::down ? d.H : d.I;
        std::string nameA, nameB;
        std::vector<std::int64_t> shA, shB;
        fused_map mA, mB;
        if (nemo) {
          module_name = gmod.format({{"layer", L}});
          std::string base = module_name + (t.entry->pieces.size() > 1 ? ".lora_gate_and_up_" : ".lora_down_");
          nameA = base + "A";
          nameB = base + "B";
          shA = {En, in, rf};
          shB = {En, rf, out_total};
          mA = {in * rf, 1, rf};
          mB = {rf * out_total, 1, out_total};
        } else {
          module_name = t.module.format({{"layer", L}});
          std::string nest;
          for (std::size_t k = ti + 1; k < nt; ++k) nest += ".base_layer";
          nameA = prefix + module_name + nest + ".lora_A.weight";
          nameB = prefix + module_name + nest + ".lora_B.weight";
          shA = {En * rf, in};
          shB = {out_total, rf * En};
          mA = {rf * in, in, 1};
          mB = {1, rf * En, En};
          std::string rel = t.module.text();
          auto at = rel.find("{layer}.");
          rel = (at == std::string::npos ? rel : rel.substr(at + 8)) + "." + t.param;
          if (std::find(target_params.begin(), target_params.end(), rel) == target_params.end()) target_params.push_back(rel);
        }
        tensor(nameA, shA);
        tensor(nameB, shB);
        // References only now: the second push_back may have moved the first.
        lora_output_tensor& TA = out.tensors[out.tensors.size() - 2];
        lora_output_tensor& TB = out.tensors.back();
        for (std::int64_t e = e0; e < e1; ++e) {
          const auto& slots = ex[static_cast<std::size_t>(e)];
          std::int64_t row0 = 0, col0 = 0;
          bool placed_A = false;
          for (piece p : t.entry->pieces) {
            const auto& pr = slots[static_cast<std::size_t>(p)];
            std::int64_t rows = p == piece::down ? d.H : d.I;
            if (pr) {
              check_type(*pr, module_name);
              if (pl.block_diag) {
                place(TA, pr->A, e - e0, col0, 0, mA);
                place(TB, pr->B, e - e0, row0, col0, mB);
                col0 += pr->rank;
              } else {
                if (!placed_A) place(TA, pr->A, e - e0, 0, 0, mA);
                placed_A = true;
                place(TB, pr->B, e - e0, row0, 0, mB);
              }
            } else if (pl.block_diag) {
              // A piece this expert leaves out: its block stays zero, at the rank the others use.
              col0 += pl.rank / static_cast<int>(t.entry->pieces.size());
            }
            row0 += rows;
          }
        }
        if (pl.block_diag) summary += (summary.empty() ? "" : "; ") + std::string("layer ") + L + " gate_up rank " + std::to_string(rf) + " (block-diagonal: gate and up carry different A)";
        if (pl.rank != rf) summary += (summary.empty() ? "" : "; ") + std::string("layer ") + L + " " + t.entry->name + " padded from rank " + std::to_string(pl.rank) + " to " + std::to_string(rf);
      }
      // Alpha such that alpha / r keeps the pairs' scale (exact when the rank doubles).
      double alpha = module_scale * rf;
      uses.push_back({module_name, rf, alpha, static_cast<std::size_t>(En), leaf_of(module_name), false});
    }
  }

  // Every other pair, under the target form's name for its module.
  for (const auto& o : a.others) {
    std::string m = strip_weight(from_canonical(names, o.canonical));
    check_type(o.pair, m);
    auto& A = tensor(prefix + m + ".lora_A.weight", {o.pair.A.rows, o.pair.A.cols});
    place(A, o.pair.A, 0, 0, 0, {0, o.pair.A.cols, 1});
    auto& B = tensor(prefix + m + ".lora_B.weight", {o.pair.B.rows, o.pair.B.cols});
    place(B, o.pair.B, 0, 0, 0, {0, o.pair.B.cols, 1});
    uses.push_back({m, o.pair.rank, o.pair.alpha, 1, leaf_of(m)});
  }

  // Global r / lora_alpha: the source's when some module uses them, else the most common.
  std::map<std::pair<int, double>, std::size_t> counts;
  for (const auto& u : uses) counts[{u.rank, u.alpha}] += u.count;
  std::pair<int, double> global{a.rank, a.alpha};
  if (!counts.count(global) && !counts.empty())
    global = std::max_element(counts.begin(), counts.end(), [](const auto& x, const auto& y) { return x.second < y.second; })->first;
  json::object rank_pattern, alpha_pattern;
  std::set<std::string> leaves;
  for (const auto& u : uses) {
    if (u.listed) leaves.insert(u.leaf);
    if (u.rank != global.first) rank_pattern.emplace_back(u.key, json::value(static_cast<std::int64_t>(u.rank)));
    if (u.alpha != global.second) {
      double iv = u.alpha;
      alpha_pattern.emplace_back(u.key, iv == static_cast<double>(static_cast<std::int64_t>(iv)) ? json::value(static_cast<std::int64_t>(iv)) : json::value(iv));
    }
  }

  // adapter_config.json: the source's, with what the form changes rewritten.
  json::object cfg;
  auto number = [](double v) {
    return v == static_cast<double>(static_cast<std::int64_t>(v)) ? json::value(static_cast<std::int64_t>(v)) : json::value(v);
  };
  std::string version = "0.21.0";
  if (const json::value* pv = a.config.find("peft_version"); pv && pv->is_string()) {
    auto v = parse_peft_version(pv->as_string(), a.config_path);
    if (v >= std::array<int, 3>{0, 19, 1}) version = pv->as_string();
  }
  bool has_tp = false;
  for (const auto& [k, v] : a.config.as_object()) {
    if (k == "target_modules") {
      json::array tm;
      for (const auto& l : leaves) tm.emplace_back(json::value(l));
      cfg.emplace_back(k, json::value(std::move(tm)));
    } else if (k == "target_parameters") {
      has_tp = true;
      if (target_params.empty()) {
        cfg.emplace_back(k, json::value(nullptr));
      } else {
        json::array tp;
        for (const auto& p : target_params) tp.emplace_back(json::value(p));
        cfg.emplace_back(k, json::value(std::move(tp)));
      }
    } else if (k == "r") {
      cfg.emplace_back(k, json::value(static_cast<std::int64_t>(global.first)));
    } else if (k == "lora_alpha") {
      cfg.emplace_back(k, number(global.second));
    } else if (k == "rank_pattern") {
      cfg.emplace_back(k, json::value(rank_pattern));
    } else if (k == "alpha_pattern") {
      cfg.emplace_back(k, json::value(alpha_pattern));
    } else if (k == "peft_version") {
      cfg.emplace_back(k, json::value(version));
    } else {
      cfg.emplace_back(k, v);
    }
  }
  auto add_missing = [&](const char* k, json::value v) {
    for (const auto& [k2, _] : cfg)
      if (k2 == k) return;
    cfg.emplace_back(k, std::move(v));
  };
  if (!has_tp && !target_params.empty()) {
    json::array tp;
    for (const auto& p : target_params) tp.emplace_back(json::value(p));
    cfg.emplace_back("target_parameters", json::value(std::move(tp)));
  }
  add_missing("rank_pattern", json::value(rank_pattern));
  add_missing("alpha_pattern", json::value(alpha_pattern));
  add_missing("peft_version", json::value(version));
  std::sort(cfg.begin(), cfg.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  out.config = json::value(std::move(cfg));
  out.summary = summary;

  std::vector<tensor_spec> specs;
  for (const auto& t : out.tensors) specs.push_back(t.spec);
  std::set<std::string> seen;
  for (const auto& s : specs)
    if (!seen.insert(s.name).second) throw error("the converted adapter would hold " + s.name + " twice");
  sort_like_safetensors(specs);
  std::map<std::string, std::size_t> at;
  for (std::size_t i = 0; i < out.tensors.size(); ++i) at[out.tensors[i].spec.name] = i;
  std::vector<lora_output_tensor> sorted;
  for (const auto& s : specs) sorted.push_back(std::move(out.tensors[at[s.name]]));
  out.tensors = std::move(sorted);
  return out;
}

void write_lora_output(const lora_output& out, const std::string& out_dir) {
  std::vector<tensor_spec> specs;
  for (const auto& t : out.tensors) specs.push_back(t.spec);
  checkpoint_writer_options wo;
  wo.file_stem = "adapter_model";
  std::vector<shard_plan> shards = plan_shards(specs, wo);
  checkpoint_writer writer(out_dir, std::move(shards));
  tensor_sink& sink = writer.open_shard(0, {{"format", "pt"}});
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < out.tensors.size(); ++i) {
    const auto& t = out.tensors[i];
    buf.assign(t.spec.nbytes(), std::byte{0});
    for (const auto& b : t.blocks)
      copy_matrix(b.src, buf.data() + b.dst_offset * dtype_size(t.spec.type), b.dst_row_stride, b.dst_col_stride);
    sink.write(i, 0, buf.data(), buf.size());
  }
  writer.commit_shard(0);
  writer.write_file("adapter_config.json", json::dump(out.config, 2) + "\n");
  writer.finish(false);
}

}  // namespace moereg
