// SPDX-License-Identifier: Apache-2.0
// synth.h - a synthetic checkpoint of real MoE shapes (qwen3_moe, hf layout, random bf16
// weights), and optionally a random LoRA adapter on every expert: data for benchmarks, demos
// and tests that no download provides at the size wanted.
//
//   moereg::app::synth_request r;
//   r.out = "/tmp/q30b-8l"; r.preset = "qwen3_30b_a3b"; r.layers = 8; r.lora_rank = 16;
//   auto w = moereg::app::synthesize(r);     // w.value().bytes: tensor bytes written
//
// A job stopped by a signal (while the caller holds moereg's signal handlers) removes what it
// wrote and comes back as a problem of kind `cancelled`.
#pragma once

#include <cstdint>
#include <string>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct synth_request {
  std::string out;                  // must not exist, or be empty
  std::string preset = "tiny";      // "tiny" (E=8 H=64 I=32) or "qwen3_30b_a3b" (E=128 H=2048 I=768)
  int layers = 2;                   // 1..65536
  std::uint64_t shard_size = 0;     // bytes per shard; 0 = one file
  std::uint64_t seed = 1;
  int threads = 0;                  // 0: every CPU this process may use
  int lora_rank = 0;                // > 0: also a rank-R adapter (PEFT ParamWrapper form) on every expert
  std::string lora_out;             // the adapter's directory; empty = OUT-lora
};

struct synth_report {
  std::uint64_t bytes = 0;  // tensor data written to `out`
  std::string lora_dir;     // empty without an adapter
  std::uint64_t lora_bytes = 0;
};

MOEREG_API result<synth_report> synthesize(const synth_request& request) noexcept;

}  // namespace moereg::app
