// SPDX-License-Identifier: Apache-2.0
// test_cpu_fixture_util.h - reads a fixture's MoE block for the routing and CPU-backend tests:
// routing params from hf/config.json, tensor views into transformers_v5.safetensors.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/base/json.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/tensor/tensor_view.h"
#include "test_support.h"

namespace moereg::test {

inline const std::vector<std::string>& moe_fixture_families() {
  static const std::vector<std::string> f = {"qwen3_moe", "qwen3_vl_moe", "qwen3_5_moe",
                                             "mixtral",   "deepseek_v2",  "deepseek_v3"};
  return f;
}

// A contiguous row-major view of a tensor held in memory someone else owns.
inline moereg_tensor_view make_view(const void* data, std::int32_t type, const std::vector<std::int64_t>& shape) {
  return moereg::contiguous_view(data, static_cast<moereg::dtype>(type), shape);
}

inline moereg_tensor_view tensor_view(const safetensors_file& f, const std::string& name) {
  const tensor_info* t = f.find(name);
  if (!t) {
    ADD_FAILURE() << f.path() << ": no tensor " << name;
    return moereg_tensor_view{};
  }
  return make_view(f.data(*t), static_cast<std::int32_t>(t->type), t->shape);
}

inline std::vector<float> tensor_f32(const safetensors_file& f, const std::string& name) {
  const tensor_info* t = f.find(name);
  if (!t) {
    ADD_FAILURE() << f.path() << ": no tensor " << name;
    return {};
  }
  std::vector<float> out(t->numel());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(element_as_double(t->type, f.data(*t), i));
  return out;
}

// One fixture family's MoE block: its files and the routing its config declares.
struct moe_fixture {
  std::string family;
  std::string block;  // "model.layers.1.mlp"
  json::value config; // the text config (text_config for VL families)
  std::unique_ptr<safetensors_file> weights;  // transformers_v5.safetensors
  std::unique_ptr<safetensors_file> io;       // moe_block.safetensors
  moereg_routing_params routing{};

  explicit moe_fixture(const std::string& fam) : family(fam) {
    json::value meta = json::parse_file(fixture(fam + "/fixture.json"));
    block = meta.find("moe_block")->as_string();
    json::value cfg = json::parse_file(fixture(fam + "/hf/config.json"));
    const json::value* text = cfg.find("text_config");
    config = text ? *text : cfg;
    weights = std::make_unique<safetensors_file>(fixture(fam + "/transformers_v5.safetensors"));
    io = std::make_unique<safetensors_file>(fixture(fam + "/moe_block.safetensors"));
    routing = routing_from_config();
  }

  std::int64_t get_int(const char* key, std::int64_t fallback) const {
    const json::value* v = config.find(key);
    return v && v->is_integer() ? v->as_int() : fallback;
  }
  double get_double(const char* key, double fallback) const {
    const json::value* v = config.find(key);
    return v && v->is_number() ? v->as_double() : fallback;
  }
  bool get_bool(const char* key, bool fallback) const {
    const json::value* v = config.find(key);
    return v && v->is_bool() ? v->as_bool() : fallback;
  }

  // What each family's plugin YAML declares (FORMATS.md section 3), from this config.
  moereg_routing_params routing_from_config() const {
    moereg_routing_params p{};
    p.num_experts = static_cast<std::int32_t>(
        get_int("n_routed_experts", get_int("num_local_experts", get_int("num_experts", 0))));
    p.top_k = static_cast<std::int32_t>(get_int("num_experts_per_tok", 0));
    p.routed_scaling_factor = 1.0f;
    p.router = tensor_view(*weights, block + ".gate.weight");
    if (family == "qwen3_moe") {
      p.renormalize = get_bool("norm_topk_prob", false);
    } else if (family == "deepseek_v2") {
      p.logits_in_f32 = 1;
      const json::value* m = config.find("topk_method");
      if (m && m->as_string() == "group_limited_greedy") {
        p.group_score = MOEREG_GROUP_SCORE_MAX;
        p.n_group = static_cast<std::int32_t>(get_int("n_group", 1));
        p.topk_group = static_cast<std::int32_t>(get_int("topk_group", 1));
      }
      p.routed_scaling_factor = static_cast<float>(get_double("routed_scaling_factor", 1.0));
    } else if (family == "deepseek_v3") {
      p.logits_in_f32 = 1;
      p.scoring = MOEREG_SCORING_SIGMOID;
      p.group_score = MOEREG_GROUP_SCORE_TOP2_SUM;
      p.n_group = static_cast<std::int32_t>(get_int("n_group", 1));
      p.topk_group = static_cast<std::int32_t>(get_int("topk_group", 1));
      p.renormalize = get_bool("norm_topk_prob", false);
      p.renorm_eps = 1e-20f;
      p.routed_scaling_factor = static_cast<float>(get_double("routed_scaling_factor", 1.0));
      p.router_bias = tensor_view(*weights, block + ".gate.e_score_correction_bias");
    } else {  // qwen3_vl_moe, qwen3_5_moe, mixtral: always renormalised
      p.renormalize = 1;
    }
    return p;
  }
};

}  // namespace moereg::test
