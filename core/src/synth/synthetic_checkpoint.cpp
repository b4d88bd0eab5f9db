// SPDX-License-Identifier: Apache-2.0
#include "moereg/synth/synthetic_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/parallel.h"
#include "moereg/checkpoint/checkpoint_writer.h"

namespace moereg {

synthetic_dims synthetic_preset(const std::string& name, int layers) {
  synthetic_dims d;
  if (name == "tiny") {
  } else if (name == "qwen3_30b_a3b") {
    d.experts = 128;
    d.hidden = 2048;
    d.intermediate = 768;
    d.top_k = 8;
    d.vocab = 1024;  // real vocab is 151936; small here so the file is mostly experts
    d.heads = 32;
    d.kv_heads = 4;
    d.head_dim = 128;
  } else {
    throw usage_error("unknown synthetic preset '" + name + "', expected tiny or qwen3_30b_a3b");
  }
  d.layers = layers > 0 ? layers : d.layers;
  return d;
}

namespace {

// splitmix64: fast, deterministic, good enough for test data.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void fill_bf16(std::uint16_t* out, std::size_t n, std::uint64_t seed, float scale) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t r = mix(seed ^ (i * 0xD1B54A32D192ED03ull));
    // Sum of two uniforms: a cheap bell-shaped distribution with mean 0, never all zeros.
    float u = static_cast<float>(r & 0xFFFFFF) / 16777216.0f + static_cast<float>((r >> 24) & 0xFFFFFF) / 16777216.0f - 1.0f;
    out[i] = f32_to_bf16(u * scale * 2.45f);
  }
}

json::value make_config(const synthetic_dims& d) {
  return json::value(json::object{
      {"architectures", json::value(json::array{json::value("Qwen3MoeForCausalLM")})},
      {"model_type", json::value("qwen3_moe")},
      {"hidden_size", json::value(d.hidden)},
      {"intermediate_size", json::value(d.intermediate * 4)},
      {"moe_intermediate_size", json::value(d.intermediate)},
      {"num_hidden_layers", json::value(d.layers)},
      {"num_attention_heads", json::value(d.heads)},
      {"num_key_value_heads", json::value(d.kv_heads)},
      {"head_dim", json::value(d.head_dim)},
      {"num_experts", json::value(d.experts)},
      {"num_experts_per_tok", json::value(d.top_k)},
      {"norm_topk_prob", json::value(true)},
      {"decoder_sparse_step", json::value(1)},
      {"mlp_only_layers", json::value(json::array{})},
      {"vocab_size", json::value(d.vocab)},
      {"hidden_act", json::value("silu")},
      {"rms_norm_eps", json::value(1e-6)},
      {"rope_theta", json::value(1000000.0)},
      {"max_position_embeddings", json::value(4096)},  // a .gguf needs context_length
      {"tie_word_embeddings", json::value(false)},
      {"dtype", json::value("bfloat16")},
  });
}

}  // namespace

std::uint64_t write_synthetic_qwen3_moe(const std::string& out_dir, const synthetic_dims& d, const synthetic_options& o) {
  std::vector<tensor_spec> specs;
  auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    specs.push_back({std::move(name), dtype::BF16, std::move(shape)});
  };
  const std::int64_t H = d.hidden, I = d.intermediate, q = d.heads * d.head_dim, kv = d.kv_heads * d.head_dim;
  add("lm_head.weight", {d.vocab, H});
  add("model.embed_tokens.weight", {d.vocab, H});
  add("model.norm.weight", {H});
  for (int l = 0; l < d.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {q, H});
    add(p + "self_attn.k_proj.weight", {kv, H});
    add(p + "self_attn.v_proj.weight", {kv, H});
    add(p + "self_attn.o_proj.weight", {H, q});
    add(p + "self_attn.q_norm.weight", {d.head_dim});
    add(p + "self_attn.k_norm.weight", {d.head_dim});
    add(p + "mlp.gate.weight", {d.experts, H});
    for (int e = 0; e < d.experts; ++e) {
      std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      add(x + "gate_proj.weight", {I, H});
      add(x + "up_proj.weight", {I, H});
      add(x + "down_proj.weight", {H, I});
    }
  }
  sort_like_safetensors(specs);
  checkpoint_writer_options wo;
  wo.shard_size = o.shard_size;
  checkpoint_writer w(out_dir, plan_shards(std::move(specs), wo));
  const unsigned threads = resolve_threads(o.threads);
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < w.shards().size(); ++s) {
    // No sink factory was given, so the shard is a safetensors file.
    auto& f = static_cast<safetensors_writer&>(w.open_shard(s, {{"format", "pt"}}));
    const auto& tensors = f.tensors();
    std::vector<std::vector<std::uint16_t>> bufs(threads);
    ordered_run run;
    run.items = tensors.size();
    run.threads = threads;
    run_ordered(run, [&](std::size_t i, unsigned worker) {
      std::vector<std::uint16_t>& buf = bufs[worker];
      const auto& ti = tensors[i];
      buf.resize(ti.numel());
      bool norm = ti.name.find("norm") != std::string::npos;
      std::uint64_t seed = o.seed;
      for (char c : ti.name) seed = mix(seed ^ static_cast<unsigned char>(c));
      if (norm) std::fill(buf.begin(), buf.end(), f32_to_bf16(1.0f));
      else fill_bf16(buf.data(), buf.size(), seed, 0.02f);
      f.write(i, 0, buf.data(), ti.nbytes());
    });
    for (const auto& ti : tensors) total += ti.nbytes();
    w.commit_shard();
  }
  w.write_file("config.json", json::dump(make_config(d), 2) + "\n");
  w.finish(w.shards().size() > 1);
  return total;
}

}  // namespace moereg
