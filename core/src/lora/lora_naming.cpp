// SPDX-License-Identifier: Apache-2.0
// Where each adapter form names the experts and the other modules, derived from the
// family's layouts (docs/lora.md, "Naming"): no family is named here.
#include "lora_naming_detail.h"

#include "moereg/base/error.h"

namespace moereg {

namespace {

bool is_split(const layout_spec& l) {
  for (const auto& e : l.experts)
    if (!e.stacked) return true;
  return false;
}

bool has_stacked_plain(const layout_spec& l) {
  for (const auto& e : l.experts)
    if (e.stacked && !e.transpose) return true;
  return false;
}

}  // namespace

lora_naming derive_lora_naming(const family_spec& spec) {
  lora_naming n;
  const layout_spec* ref = spec.find_layout(spec.reference_layout);
  const layout_spec* v5 = spec.find_layout("transformers_v5");
  n.modules = v5 ? v5 : ref;
  if (ref && is_split(*ref)) n.split = ref;
  for (const auto& l : spec.layouts)
    if (!n.split && is_split(l) && l.container == "safetensors") n.split = &l;
  const layout_spec* g = spec.find_layout("grouped");
  n.grouped = g ? g : n.modules;
  return n;
}

namespace lora_detail {

std::string module_of(const std::string& key_text) {
  auto dot = key_text.rfind('.');
  return dot == std::string::npos ? std::string() : key_text.substr(0, dot);
}

std::string leaf_of(const std::string& key_text) {
  auto dot = key_text.rfind('.');
  return dot == std::string::npos ? key_text : key_text.substr(dot + 1);
}

std::vector<fused_target> fused_targets(const layout_spec* l) {
  std::vector<fused_target> out;
  if (!l || !has_stacked_plain(*l)) return out;
  for (const auto& e : l->experts) {
    if (!e.stacked || e.transpose) continue;
    fused_target t;
    t.entry = &e;
    t.module = key_template(module_of(e.key.text()), l->at.str());
    t.param = leaf_of(e.key.text());
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<per_expert_template> per_expert_templates(const lora_naming& n) {
  std::vector<per_expert_template> out;
  if (!n.split) return out;
  std::vector<fused_target> fused = fused_targets(n.modules);
  for (const auto& e : n.split->experts) {
    if (e.stacked || e.pieces.size() != 1) continue;
    const std::string& text = e.key.text();
    auto at = text.find("{expert}.");
    std::string leaf = at == std::string::npos ? std::string() : text.substr(at + 9);
    if (leaf.size() > 7 && leaf.compare(leaf.size() - 7, 7, ".weight") == 0) leaf.resize(leaf.size() - 7);
    std::string own = text.size() > 7 && text.compare(text.size() - 7, 7, ".weight") == 0 ? text.substr(0, text.size() - 7) : text;
    per_expert_template t;
    t.p = e.pieces[0];
    // Written as PEFT names the modules of the model it adapts (the fused layout's module path,
    // the split layout's leaf), read in either that or the split layout's own naming.
    if (!fused.empty() && !leaf.empty()) {
      t.write = key_template(fused[0].module.text() + ".{expert}." + leaf, n.split->at.str());
      t.read.push_back(t.write);
    } else {
      t.write = key_template(own, n.split->at.str());
    }
    if (t.read.empty() || t.read[0].text() != own) t.read.emplace_back(own, n.split->at.str());
    out.push_back(std::move(t));
  }
  return out;
}

key_template grouped_module(const lora_naming& n) {
  for (const auto* l : {n.grouped, n.modules})
    if (l)
      for (const auto& e : l->experts)
        if (e.stacked) return key_template(module_of(e.key.text()), l->at.str());
  return {};
}

}  // namespace lora_detail

}  // namespace moereg
