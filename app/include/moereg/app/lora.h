// SPDX-License-Identifier: Apache-2.0
// lora.h - merge an expert LoRA adapter into its base checkpoint, written in any layout of
// the family (docs/lora.md: the adapter forms, the rounding modes and what PEFT does).
#pragma once

#include <string>

#include "moereg/app/convert.h"
#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

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
