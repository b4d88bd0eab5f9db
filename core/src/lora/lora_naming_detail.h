// SPDX-License-Identifier: Apache-2.0
// lora_naming_detail.h - the key templates each adapter form uses, from lora_naming.
#pragma once

#include <string>
#include <vector>

#include "moereg/lora/lora_adapter.h"

namespace moereg::lora_detail {

// "a.b.c" -> "a.b" / "c"
std::string module_of(const std::string& key_text);
std::string leaf_of(const std::string& key_text);

// A fused expert parameter as PEFT targets it: module "model.layers.{layer}.mlp.experts",
// parameter "gate_up_proj", the layout entry giving its pieces. Empty when the layout has no
// stacked, untransposed expert tensors (then there is no ParamWrapper form).
struct fused_target {
  const expert_entry* entry = nullptr;
  key_template module;
  std::string param;
};
std::vector<fused_target> fused_targets(const layout_spec* l);

// A per-expert module of one piece: the name written, and every name accepted when read.
struct per_expert_template {
  piece p = piece::gate;
  key_template write;
  std::vector<key_template> read;
};
std::vector<per_expert_template> per_expert_templates(const lora_naming& n);

// The module holding NeMo's grouped LoRA tensors ("model.layers.{layer}.mlp.experts").
key_template grouped_module(const lora_naming& n);

inline constexpr const char* peft_prefix = "base_model.model.";

// NeMo's four tensors: suffix, piece set (gate_up or down), A or B.
struct nemo_tensor {
  const char* suffix;
  bool gate_up;
  bool is_A;
};
inline constexpr nemo_tensor nemo_tensors[] = {{"lora_gate_and_up_A", true, true},
                                               {"lora_gate_and_up_B", true, false},
                                               {"lora_down_A", false, true},
                                               {"lora_down_B", false, false}};

}  // namespace moereg::lora_detail
