// SPDX-License-Identifier: Apache-2.0
// lora_targets_detail.h - which of an adapter's modules PEFT builds a LoRA layer on, decided from
// adapter_config.json alone as PEFT decides it (private to the reader; docs/lora.md, "Refused").
//
// PEFT (src/peft/tuners/tuners_utils.py, check_target_module_exists and _inject_parameters;
// src/peft/utils/transformers_weight_conversion.py for models that transformers 5 fused):
//   exclude_modules    checked first: a list names a module equal to an entry or ending with
//                      "." + entry; a string is a regex full-matched against the module name
//   target_modules     the same rules; "all-linear" (any case) is every nn.Linear but the
//                      output layer; null means a default per model_type (undecidable here)
//   layers_to_transform (list target_modules only) the layer index is the number after
//                      ".<layers_pattern>." (any name without a pattern): the first such number
//                      since PEFT 0.20.0, the last before; a name without one is not targeted
//   target_parameters  "<module>.<parameter>" equal to an entry or ending with "." + entry;
//                      neither exclude_modules nor layers_to_transform applies to them
// A pair PEFT does not build a layer on is an "unexpected key" when it loads the adapter: it is
// not applied. Where the answer depends on more than the config (the default target_modules of a
// model type, a regex std::regex cannot compile, PEFT's version where the two layer rules differ,
// whether transformers 5 turns per-expert and router targets into target_parameters), the pair is
// taken as applied: only what PEFT certainly skips is reported.
#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "moereg/base/json.h"

namespace moereg::lora_detail {

class peft_targets {
 public:
  explicit peft_targets(const json::value& config);

  // Empty when PEFT applies a pair on `module` (named without "base_model.model."), or when that
  // cannot be decided; otherwise why not, as "<field> <value> <reason>" naming the module.
  // `router`: the module is a MoE router (transformers 5 may make its target a parameter target,
  // to which exclude_modules and layers_to_transform do not apply).
  std::string other(const std::string& module, bool router) const;
  // A per-expert module ("model.layers.1.mlp.experts.3.gate_proj"): `leaf` its last name,
  // `param` the fused parameter it becomes in transformers 5 ("model.layers.1.mlp.experts.gate_up_proj"),
  // `containers` the fused experts module of every MoE layer (PEFT probes them for a regex).
  std::string per_expert(const std::string& module, const std::string& leaf, const std::string& param,
                         const std::vector<std::string>& containers) const;

 private:
  enum class verdict { applied, not_applied, undecided };
  struct result {
    verdict v = verdict::applied;
    std::string why;
    bool by_target = false;  // target_modules itself rejects the name (not exclude_modules or the layers)
  };
  enum class kind { absent, list, regex, all_linear };

  result modules(const std::string& key) const;
  std::optional<bool> matches(kind k, const std::vector<std::string>& list, const std::optional<std::regex>& re,
                              const std::string& key) const;
  bool parameter(const std::string& key) const;
  // PEFT's layer index of `key` by its >= 0.20.0 (first) or earlier (last) rule; nullopt when the
  // name has none; throws for a layers_pattern std::regex cannot compile or an index past long.
  std::optional<long> layer_index(const std::string& key, bool first) const;

  kind target_ = kind::absent, exclude_ = kind::absent;
  std::vector<std::string> target_list_, exclude_list_, parameters_, layers_pattern_;
  std::optional<std::regex> target_re_, exclude_re_;  // nullopt for a regex std::regex cannot compile
  std::string target_text_, exclude_text_, layers_text_, parameters_text_;
  std::vector<long> layers_;
  bool layers_set_ = false;
  std::optional<bool> first_index_;  // from peft_version: true >= 0.20.0, false earlier; nullopt unknown
  mutable std::map<std::string, bool> leaf_probe_;
};

}  // namespace moereg::lora_detail
