// SPDX-License-Identifier: Apache-2.0
#include "moereg/lora/synthetic_lora.h"

#include <filesystem>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint_writer.h"

namespace fs = std::filesystem;

namespace moereg {

namespace {

std::uint64_t mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::uint64_t write_synthetic_lora(const std::string& adapter_dir, const std::string& base_dir, const synthetic_dims& d, int rank,
                                   std::uint64_t seed) {
  if (rank < 1) throw error("--lora " + std::to_string(rank) + ": expected a rank of at least 1");
  const std::int64_t E = d.experts, H = d.hidden, I = d.intermediate, rE = static_cast<std::int64_t>(rank) * E;
  std::vector<tensor_spec> specs;
  for (int L = 0; L < d.layers; ++L) {
    std::string m = "base_model.model.model.layers." + std::to_string(L) + ".mlp.experts.";
    specs.push_back({m + "base_layer.lora_A.weight", dtype::F32, {rE, H}});  // gate_up: A [E*r, H]
    specs.push_back({m + "base_layer.lora_B.weight", dtype::F32, {2 * I, rE}});
    specs.push_back({m + "lora_A.weight", dtype::F32, {rE, I}});  // down: A [E*r, I]
    specs.push_back({m + "lora_B.weight", dtype::F32, {H, rE}});
  }
  sort_like_safetensors(specs);
  checkpoint_writer_options wo;
  wo.file_stem = "adapter_model";
  checkpoint_writer w(adapter_dir, plan_shards(specs, wo));
  tensor_sink& sink = w.open_shard(0, {{"format", "pt"}});
  std::vector<float> buf;
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < w.shards()[0].tensors.size(); ++i) {
    const tensor_spec& t = w.shards()[0].tensors[i];
    buf.resize(static_cast<std::size_t>(t.shape[0] * t.shape[1]));
    std::uint64_t s = seed;
    for (char c : t.name) s = mix(s ^ static_cast<unsigned char>(c));
    // Uniform in [-0.05, 0.05): deltas of a few bf16 ulps of 0.02-scale weights, like a trained adapter's.
    for (std::size_t k = 0; k < buf.size(); ++k)
      buf[k] = (static_cast<float>(mix(s ^ (k * 0xD1B54A32D192ED03ull)) >> 40) / 16777216.0f - 0.5f) * 0.1f;
    sink.write(i, 0, buf.data(), buf.size() * 4);
    bytes += buf.size() * 4;
  }
  w.commit_shard(0);
  std::string rel = fs::relative(fs::absolute(base_dir), fs::absolute(adapter_dir)).string();
  w.write_file("adapter_config.json",
               "{\n  \"base_model_name_or_path\": \"" + rel + "\",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n"
               "  \"lora_alpha\": " + std::to_string(2 * rank) + ",\n  \"lora_dropout\": 0.0,\n  \"peft_type\": \"LORA\",\n"
               "  \"peft_version\": \"0.21.0\",\n  \"r\": " + std::to_string(rank) + ",\n  \"rank_pattern\": {},\n  \"alpha_pattern\": {},\n"
               "  \"target_modules\": [],\n  \"target_parameters\": [\n    \"mlp.experts.gate_up_proj\",\n    \"mlp.experts.down_proj\"\n  ],\n"
               "  \"use_dora\": false,\n  \"use_rslora\": false\n}\n");
  w.finish(false);
  return bytes;
}

}  // namespace moereg
