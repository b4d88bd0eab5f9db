// SPDX-License-Identifier: Apache-2.0
// synthetic_lora.h - a random LoRA adapter for a synthetic checkpoint (synth --lora R), for
// benchmarks: PEFT 0.21's ParamWrapper form on every expert of every layer, float32 factors
// with nonzero B (as init_lora_weights=False makes them), deterministic in the seed.
#pragma once

#include <cstdint>
#include <string>

#include "moereg/synth/synthetic_checkpoint.h"

namespace moereg {

// Writes adapter_dir/adapter_config.json (base_model_name_or_path = base_dir relative to the
// adapter) and adapter_model.safetensors. Returns the bytes of tensor data written.
std::uint64_t write_synthetic_lora(const std::string& adapter_dir, const std::string& base_dir, const synthetic_dims& dims, int rank,
                                   std::uint64_t seed);

}  // namespace moereg
