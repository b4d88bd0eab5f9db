// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/inspect.h"

#include "gguf_values.h"
#include "guard.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "session.h"

namespace moereg::app {

namespace {

// Family, layout and dimensions, when a plugin recognises the checkpoint (headers only,
// still); otherwise why not.
void add_family(checkpoint_report& r, const inspect_request& q) {
  try {
    session_request req;
    req.checkpoint = q.path;
    req.plugin_paths = q.plugin_paths;
    model_session m = open_session(req);
    r.family = m.spec.name;
    r.config_path = m.ckpt->config_path();  // a GGUF model's config is made from its metadata
    r.model_type = m.model_type;
    r.layout = m.layout->name;
    r.experts = m.dims.E;
    r.hidden = m.dims.H;
    r.intermediate = m.dims.I;
    r.experts_per_token = m.dims.K;
    r.moe_layers = m.dims.moe_layers;
    r.dims = m.dims.describe() + " K=" + std::to_string(m.dims.K) + ", " + std::to_string(m.dims.moe_layers.size()) + " MoE layers";
    try {
      decode_checkpoint(*m.ckpt, m.spec, *m.layout, m.dims);  // headers only: views, no data read
    } catch (const cancelled&) {
      throw;
    } catch (const error& e) {
      r.layout_error = e.what();
    }
  } catch (const cancelled&) {
    throw;
  } catch (const error& e) {
    r.family_error = e.what();
  }
}

json::value optional_string(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

json::value report_json(const checkpoint_summary& s, const checkpoint_report& r, json::object gguf_metadata, bool is_gguf) {
  json::value v = summary_to_json(s);
  v.set("config", json::value(r.config_path));
  v.set("family", optional_string(r.family));
  v.set("model_type", optional_string(r.model_type));
  v.set("layout", optional_string(r.layout));
  if (r.family.empty()) {
    v.set("dims", json::value(nullptr));
  } else {
    json::array layers;
    for (int l : r.moe_layers) layers.emplace_back(l);
    v.set("dims", json::value(json::object{{"E", json::value(r.experts)},
                                           {"H", json::value(r.hidden)},
                                           {"I", json::value(r.intermediate)},
                                           {"K", json::value(r.experts_per_token)},
                                           {"moe_layers", json::value(std::move(layers))}}));
  }
  if (!r.family_error.empty()) v.set("family_error", json::value(r.family_error));
  if (!r.layout_error.empty()) v.set("layout_error", json::value(r.layout_error));
  if (is_gguf) v.set("gguf_metadata", json::value(std::move(gguf_metadata)));
  return v;
}

}  // namespace

result<checkpoint_report> inspect(const inspect_request& q) noexcept {
  return guarded([&] {
    if (q.path.empty()) throw usage_error("inspect: no checkpoint path given");
    checkpoint_options opts;
    opts.require_config = false;  // inspect is for looking; a missing config is reported, not fatal
    checkpoint ckpt = checkpoint::open(q.path, opts);
    checkpoint_summary s = summarize(ckpt);
    checkpoint_report r;
    r.path = s.path;
    r.files = s.files;
    r.has_index = s.has_index;
    r.config_path = ckpt.config_path();
    r.tensor_count = s.tensor_count;
    r.total_bytes = s.total_bytes;
    r.header_bytes = s.header_bytes;
    for (const auto& [name, cb] : s.dtypes) r.dtypes.push_back({name, cb.first, cb.second});
    for (const auto& g : s.groups) r.groups.push_back({g.pattern, g.type_name, g.shape, g.count, g.bytes});
    json::object md;
    if (const gguf_file* g = ckpt.gguf())
      for (const auto& [k, val] : g->metadata()) {
        md.emplace_back(k, gguf_json(val));
        r.gguf_metadata.push_back({k, json::dump(md.back().second), gguf_text(val)});
      }
    add_family(r, q);
    r.json = json::dump(report_json(s, r, std::move(md), ckpt.gguf() != nullptr), 2);
    return r;
  });
}

}  // namespace moereg::app
