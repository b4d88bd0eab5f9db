// SPDX-License-Identifier: Apache-2.0
#include "moe_presets.h"

#include "moereg/base/error.h"

namespace moereg::cli {

namespace {

moereg_routing_params softmax_routing(bool renorm) {
  moereg_routing_params r{};
  r.renormalize = renorm;
  r.routed_scaling_factor = 1;
  return r;
}

moereg_routing_params deepseek_v3_routing() {
  moereg_routing_params r{};
  r.scoring = MOEREG_SCORING_SIGMOID;
  r.logits_in_f32 = 1;
  r.n_group = 8;
  r.topk_group = 4;
  r.group_score = MOEREG_GROUP_SCORE_TOP2_SUM;
  r.renormalize = 1;
  r.renorm_eps = 1e-20f;
  r.routed_scaling_factor = 2.5f;
  return r;
}

}  // namespace

const std::vector<moe_preset>& presets() {
  static const std::vector<moe_preset> p = {
      {"qwen3_30b_a3b", 128, 2048, 768, 8, 0, softmax_routing(true), "Qwen3-30B-A3B layer"},
      {"mixtral_8x7b", 8, 4096, 14336, 2, 0, softmax_routing(true), "Mixtral-8x7B layer"},
      {"deepseek_v3", 256, 7168, 2048, 8, 2048, deepseek_v3_routing(),
       "DeepSeek-V3 layer, all 256 experts: 22.5 GB of bf16 weights (11.3 GB in F8), for hosts and GPUs that hold it"},
      {"deepseek_v3_e64", 64, 7168, 2048, 8, 2048, deepseek_v3_routing(),
       "DeepSeek-V3 layer shapes (H, I, K, shared expert, 8 groups keep 4) with 64 of its 256 experts, to fit in memory"},
      {"tiny", 8, 256, 128, 2, 128, softmax_routing(true), "small shapes for a quick check"},
  };
  return p;
}

const moe_preset& find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) return p;
  std::string names;
  for (const auto& p : presets()) names += (names.empty() ? "" : ", ") + std::string(p.name);
  throw usage_error("--preset: unknown '" + name + "', expected one of " + names);
}

}  // namespace moereg::cli
