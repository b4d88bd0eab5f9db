// SPDX-License-Identifier: Apache-2.0
// lora_support.h - adapters for tests: reading one against a base, converting in-process,
// and building adapters of any shape, rank and PEFT orientation from canonical factors.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "moereg/lora/lora_adapter.h"
#include "moereg/lora/lora_writer.h"

namespace moereg::test {

// A family spec and dims read from a base's config.json (a directory holding it).
struct lora_base {
  family_spec spec;
  model_dims dims;
  std::string arch;
};
lora_base lora_base_of(const std::string& base_dir);

lora_adapter read_adapter(const std::string& dir, const lora_base& b, const std::string& peft_version = "");
// Read `in`, write it as `form` into out.
void convert_adapter(const std::string& in, const std::string& out, lora_form form, const lora_base& b,
                     const std::string& peft_version = "");

// One float32 tensor.
struct f32_tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};
void write_f32_safetensors(const std::string& path, const std::map<std::string, f32_tensor>& tensors);

// Canonical factors of a qwen3_moe-style adapter: per layer and expert, gate/up/down pairs.
struct canonical_lora {
  std::int64_t E = 0, H = 0, I = 0;
  int r = 0;
  std::vector<int> layers;
  // A[layer][e][piece] [r, in], B [out, r], row-major.
  std::map<int, std::vector<std::array<std::vector<float>, 3>>> A, B;
  bool share_gate_up_A = true;
};
canonical_lora random_lora(std::int64_t E, std::int64_t H, std::int64_t I, int r, std::vector<int> layers, unsigned seed,
                           bool share_gate_up_A = true);

// A qwen3_moe base config.json (num_hidden_layers = layers) in dir.
void write_qwen3_moe_config(const std::string& dir, std::int64_t E, std::int64_t H, std::int64_t I, int layers);

// adapter_config.json for qwen3_moe with r, alpha, target_parameters or target_modules and
// an optional peft_version (empty: absent).
std::string lora_config_json(int r, double alpha, bool param_wrapper, const std::string& peft_version);

// The canonical factors written in a form: ParamWrapper (old or new orientation), per-expert.
void write_param_wrapper(const std::string& dir, const canonical_lora& c, bool old_orientation, const std::string& peft_version);
void write_per_expert(const std::string& dir, const canonical_lora& c, const std::string& peft_version = "0.21.0");

}  // namespace moereg::test
