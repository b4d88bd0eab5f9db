// SPDX-License-Identifier: Apache-2.0
// Merging the parsed parts of plugin manifests (family_parts.h): a variant over its family,
// a family over the one it extends, then the spec with the quantizers' default names.
#include <algorithm>
#include <set>

#include "family_parts.h"
#include "moereg/base/error.h"
#include "moereg/layout/family_spec.h"

namespace moereg {

namespace {

// The names the quantizers themselves write: transformers' FineGrainedFP8 (and DeepSeek),
// AutoGPTQ, compressed-tensors, and MXFP4 as DeepSeek-V4 stores it (FORMATS.md section 5).
std::map<std::string, quant_naming> default_quant_naming() {
  std::map<std::string, quant_naming> m;
  m["fp8"].scale = {"{key}_scale_inv", "{key}_scale"};
  m["mxfp4"].scale = {"{stem}.scale"};
  quant_naming& g = m["gptq"];
  g.weight = "{stem}.qweight";
  g.scale = {"{stem}.scales"};
  g.g_idx = "{stem}.g_idx";
  g.zeros = "{stem}.qzeros";
  quant_naming& c = m["compressed"];
  c.weight = "{stem}.weight_packed";
  c.scale = {"{stem}.weight_scale"};
  c.shape = "{stem}.weight_shape";
  c.zeros = "{stem}.weight_zero_point";
  return m;
}

}  // namespace

namespace detail {

const family_part* manifest_parts::variant(const std::string& model_type) const {
  for (const auto& [type, p] : variants)
    if (type == model_type) return &p;
  return nullptr;
}

void overlay(family_part& base, const family_part& over) {
  auto take = [](auto& b, const auto& o) {
    if (o.set) b = o;
  };
  take(base.dims, over.dims);
  take(base.moe_layers, over.moe_layers);
  take(base.moe_block, over.moe_block);
  take(base.passthrough, over.passthrough);
  take(base.reference_layout, over.reference_layout);
  take(base.routing, over.routing);
  take(base.quantization, over.quantization);
  take(base.gguf, over.gguf);
  if (over.layouts.set) {
    if (!base.layouts.set) base.layouts.at = over.layouts.at;
    base.layouts.set = true;
    for (const auto& l : over.layouts.value) {
      auto it = std::find_if(base.layouts.value.begin(), base.layouts.value.end(), [&](const layout_spec& x) { return x.name == l.name; });
      if (it != base.layouts.value.end()) *it = l;
      else base.layouts.value.push_back(l);
    }
  }
}

family_spec finish_spec(const family_part& merged, const manifest_parts& self, const std::string& model_type,
                        const std::map<std::string, const manifest_parts*>& owners, std::vector<std::string>& problems) {
  family_spec f;
  auto problem = [&](const source_loc& at, const std::string& what) { problems.push_back(at.str() + ": " + what); };
  const source_loc& top = self.root_at;
  f.name = self.name;
  f.model_type = model_type;
  f.version = self.version;
  f.api_version = self.api_version;
  f.description = self.description;
  f.manifest_path = self.path;
  f.model_types = self.model_types;
  f.library = self.library;
  f.hooks = self.hooks;
  f.native_config_file = self.native_config_file;
  f.native_config_hook = self.native_config_hook;
  f.dims = merged.dims.value;
  for (const char* need : {"E", "H", "I"})
    if (!f.dims.count(need)) problem(merged.dims.set ? merged.dims.at : top, std::string("dims needs '") + need + "' (a config.json field)");
  if (!merged.moe_layers.set) problem(top, "missing 'moe_layers' (at least count: <config field of the layer count>)");
  f.moe_layers = merged.moe_layers.value;
  f.moe_block = merged.moe_block.value;
  f.passthrough = merged.passthrough.value;
  f.passthrough_declared = merged.passthrough.set;
  if (merged.reference_layout.set) f.reference_layout = merged.reference_layout.value;
  if (!merged.layouts.set) problem(top, "missing 'layouts'");
  f.layouts = merged.layouts.value;
  std::set<std::string> names;
  for (const auto& l : f.layouts) {
    if (!names.insert(l.name).second) problem(l.at, "layout '" + l.name + "' declared twice");
    for (const auto& a : l.aliases)
      if (!names.insert(a).second) problem(l.at, "layout name '" + a + "' used twice");
  }
  if (!f.layouts.empty() && !f.find_layout(f.reference_layout))
    problem(merged.reference_layout.set ? merged.reference_layout.at : top,
            "reference_layout '" + f.reference_layout + "' is not one of the layouts");
  f.routing = merged.routing.value;
  f.quantization = default_quant_naming();
  for (const auto& [scheme, q] : merged.quantization.value) f.quantization[scheme] = q;
  f.gguf = merged.gguf.value.spec;
  f.gguf.metadata.clear();
  for (std::size_t i = 0; i < merged.gguf.value.spec.metadata.size(); ++i) {
    const std::string& only = merged.gguf.value.metadata_for[i];
    if (only.empty() || model_type.empty() || only == model_type) f.gguf.metadata.push_back(merged.gguf.value.spec.metadata[i]);
  }
  for (const auto& [pre, only] : merged.gguf.value.tokenizer_pre_for)
    if (only.empty() || model_type.empty() || only == model_type) {
      f.gguf.tokenizer_pre = pre;
      break;
    }
  for (const auto& l : f.layouts)
    if (l.container == "gguf" && f.gguf.architecture.empty())
      problem(l.at, "layout '" + l.name + "' writes a .gguf (container: gguf), so the plugin needs a 'gguf' section (architecture, metadata)");

  // A hook is named by the part of a manifest that uses it, and that plugin must list it. It
  // is served by the resolved plugin's library when that lists the name (mistral's
  // permute_qk also for mixtral's gguf layout: one library per conversion where it can be),
  // else by the library of the plugin that wrote the part.
  for (const auto& h : self.hooks) f.hook_plugins.emplace(h, self.name);
  auto serve = [&](const std::string& hook, const source_loc& at) {
    if (hook.empty()) return;
    const std::string& plugin = at.plugin.empty() ? self.name : at.plugin;
    auto it = owners.find(plugin);
    const manifest_parts* owner = it == owners.end() ? &self : it->second;
    if (std::find(owner->hooks.begin(), owner->hooks.end(), hook) == owner->hooks.end()) {
      problem(at, "hook '" + hook + "' is used but not listed under 'hooks' of plugin '" + owner->name + "' (" + owner->path + ")");
      return;
    }
    f.hook_plugins.emplace(hook, owner->name);
  };
  serve(self.native_config_hook, self.native_config_at.line ? self.native_config_at : top);
  for (const auto& l : f.layouts) {
    serve(l.write_config_hook, l.at);
    for (const auto& t : l.transforms) serve(t.hook, t.at);
  }
  if (!self.hooks.empty() && self.library.empty()) problem(self.hooks_at, "'hooks' are listed but no 'library' provides them");
  return f;
}

}  // namespace detail

}  // namespace moereg
