// SPDX-License-Identifier: Apache-2.0
// lora.h - expert LoRA adapters: describe one, rewrite it in another form, or merge it into
// its base checkpoint written in any layout of the family (docs/lora.md: the adapter forms,
// the orientations, the rounding modes and what PEFT does).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moereg/app/convert.h"
#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

// An adapter and what it is read against: the base gives the family and the dimensions (only
// its config.json is read); empty: base_model_name_or_path, when that is a local directory.
struct lora_open_request {
  std::string adapter;       // the adapter directory (adapter_config.json + weights)
  std::string base;          // the base model, or a directory holding its config.json
  std::string peft_version;  // the PEFT that saved the adapter, when adapter_config.json has none
  std::vector<std::string> plugin_paths;
};

// The routed-expert pairs of one piece with one rank and alpha.
struct lora_expert_target {
  std::string piece;  // "gate", "up", "down"
  int rank = 0;
  double alpha = 0, scale = 0;
  std::string dtype;
  std::vector<int> layers;
  std::uint64_t pairs = 0;
};

// A pair outside the routed experts (attention, shared experts, dense MLPs).
struct lora_module {
  std::string module, canonical;
  int rank = 0;
  double alpha = 0, scale = 0;
  std::string dtype;
};

struct lora_info {
  std::string adapter, base, family, dims;
  std::string form;                      // "peft_param_wrapper", "peft_per_expert", "nemo_grouped"
  std::string orientation, orientation_reason;  // ParamWrapper only: which PEFT layout, and why
  int rank = 0;
  double alpha = 0;
  bool rslora = false, gate_up_share_A = false;
  std::vector<int> expert_layers;
  std::uint64_t expert_pairs = 0;
  std::vector<lora_expert_target> experts;
  std::vector<lora_module> others;
  // Pairs on modules adapter_config.json does not target ("<lora_A tensor>: <why>"): PEFT skips
  // them as unexpected keys; convert and merge refuse such an adapter (docs/lora.md).
  std::vector<std::string> untargeted;
};

MOEREG_API result<lora_info> inspect_lora(const lora_open_request& request) noexcept;

struct lora_convert_request {
  lora_open_request source;
  std::string output;  // created; must not exist or be empty
  std::string to;      // "peft_param_wrapper" (written in PEFT >= 0.19.1's orientation), "peft_per_expert", "nemo_grouped"
  std::optional<std::pair<std::int64_t, std::int64_t>> experts;  // keep experts [first, second) only
};

struct lora_convert_report {
  std::string adapter, from, to, output;
  std::uint64_t tensors = 0, bytes = 0;
  std::string notes;  // what the form changed: block-diagonal ranks, padding
};

// Exact: factors are copied, re-indexed and concatenated, never recomputed.
MOEREG_API result<lora_convert_report> convert_lora(const lora_convert_request& request) noexcept;

struct lora_merge_request {
  // The job: source is the base checkpoint, output the merged one; `to` empty = the base's
  // own layout. Sharding, resume, threads, progress and cancel work as for convert.
  convert_request job;
  std::string adapter;          // the adapter directory (adapter_config.json + weights)
  std::string rounding = "peft";  // "peft": PEFT's merge_and_unload bit for bit; "single": round once
  std::string peft_version;     // the PEFT that saved the adapter, when adapter_config.json has none
};

MOEREG_API result<convert_report> merge_lora(const lora_merge_request& request) noexcept;

}  // namespace moereg::app
