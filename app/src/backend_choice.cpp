// SPDX-License-Identifier: Apache-2.0
#include "backend_choice.h"

#include <algorithm>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/plan/moe_layer.h"

namespace moereg::app {

std::string backend_instance::describe() const {
  std::string text;
  if (!api_->describe) return text;
  moereg_sink sink{&text, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
  throw_if_error(api_->describe(handle_, sink), "backend " + record_->name + " describe");
  return text;
}

namespace {

// One create call: through create_with_options when there are options (plugin API 2).
moereg_status* create_one(const plugin_record& record, const moereg_backend_api& api, const moereg_moe_weights& weights,
                          const moereg_routing_params& routing, const moereg_backend_options& options,
                          const backend_option_list& backend_options, moereg_backend** handle) {
  if (backend_options.empty()) return api.create(&weights, &routing, &options, handle);
  if (api.api_version < 2 || !api.create_with_options)
    throw error("backend " + record.name + " takes no backend options (--backend-option " + backend_options[0].first +
                "=...): its table is plugin API " + std::to_string(api.api_version) +
                (api.api_version < 2 ? ", options came with API 2" : " without create_with_options"));
  std::vector<moereg_backend_option> kv;
  for (const auto& [k, v] : backend_options) kv.push_back({k.c_str(), v.c_str()});
  return api.create_with_options(&weights, &routing, &options, kv.data(), kv.size(), handle);
}

}  // namespace

std::unique_ptr<backend_instance> create_backend(plugin_registry& registry, const std::string& wanted,
                                                 const moereg_moe_weights& weights, const moereg_routing_params& routing,
                                                 const moereg_backend_options& options,
                                                 const backend_option_list& backend_options) {
  registry.load_all();  // probes every backend, so refusals have reasons
  std::string scores;
  for (const auto& r : registry.records()) {
    if (r.kind != plugin_kind::backend) continue;
    scores += (scores.empty() ? "" : ", ") + r.name + " " +
              (r.state == plugin_state::refused ? "refused (" + r.reason + ")" : "score " + std::to_string(r.probe_score));
  }
  // The candidates in the order they are tried: the named one alone, or every usable one by score.
  std::vector<const plugin_record*> order;
  std::string why;
  if (wanted != "auto") {
    const plugin_record* r = registry.find_backend(wanted);
    if (!r) {
      for (const auto& x : registry.records())
        if (x.kind == plugin_kind::backend && x.name == wanted)
          throw error("backend '" + wanted + "' cannot run here: " + x.reason);
      throw error("no backend named '" + wanted + "' was found (" + (scores.empty() ? "none found" : scores) + ")");
    }
    order.push_back(r);
    why = "asked for with --backend " + wanted;
  } else {
    for (const plugin_record* r : registry.backends())
      if (r->probe_score > 0) order.push_back(r);
    if (order.empty()) throw error("no backend can run here (" + (scores.empty() ? "none found" : scores) + ")");
    std::stable_sort(order.begin(), order.end(),
                     [](const plugin_record* a, const plugin_record* b) { return a->probe_score > b->probe_score; });
    why = "auto: best probe score among " + scores;
  }
  for (std::size_t i = 0;; ++i) {
    const moereg_backend_api* api = registry.backend(*order[i]);
    moereg_backend* handle = nullptr;
    // A table before API 3 reads no shared-expert scales: its F8_E4M3 shared expert comes as BF16.
    moereg_moe_weights given = weights;
    std::unique_ptr<std::uint16_t[]> kept = api->api_version < 3 ? shared_expert_to_bf16(given) : nullptr;
    if (kept) spdlog::info("backend {} (plugin API {}) gets the F8_E4M3 shared expert as BF16", order[i]->name, api->api_version);
    // A version 1 table predates weight_quant: it would read 4-bit experts as plain U8.
    auto [code, message] = weights.weight_quant != MOEREG_WEIGHT_QUANT_NONE && api->api_version < 2
                               ? std::pair<int32_t, std::string>{MOEREG_UNSUPPORTED,
                                                                 "its table is plugin API 1, which has no 4-bit experts"}
                               : take_status(create_one(*order[i], *api, given, routing, options, backend_options, &handle));
    if (code == MOEREG_OK) return std::make_unique<backend_instance>(order[i], api, handle, why, std::move(kept));
    if (code != MOEREG_UNSUPPORTED || i + 1 >= order.size())
      throw error("backend " + order[i]->name + " create: " + message);
    spdlog::info("backend {} cannot take this layer ({}); trying {}", order[i]->name, message, order[i + 1]->name);
    why += "; " + order[i]->name + " refused the layer (" + message + "), next best: " + order[i + 1]->name;
  }
}

}  // namespace moereg::app
