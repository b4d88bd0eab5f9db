// SPDX-License-Identifier: Apache-2.0
// Families added with plugin.yaml alone (examples/families/qwen2_moe, the one
// docs/plugin-authoring.md walks through, and granitemoe) convert both ways with no rebuild.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_yaml_only_plugin {
namespace {

// A one-shard bf16 checkpoint of `specs`, each element next(), and its config.json.
void write_bf16_checkpoint(const std::string& dir, std::vector<tensor_spec> specs, const std::string& config,
                           const std::function<std::uint16_t()>& next) {
  sort_like_safetensors(specs);
  checkpoint_writer w(dir, plan_shards(specs, {}));
  auto& f = static_cast<safetensors_writer&>(w.open_shard(0, {{"format", "pt"}}));
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    std::vector<std::uint16_t> v(f.tensors()[i].numel());
    for (auto& x : v) x = next();
    f.write(i, 0, v.data(), v.size() * 2);
  }
  w.commit_shard();
  w.write_file("config.json", config);
  w.finish(false);
}

// The tensors every decoder layer stack has (embeddings, final norm, each layer's norms and
// attention, q/k/v biases where asked), bf16, with each layer's MoE tensors from moe(add, p),
// p = "model.layers.N.".
using add_fn = std::function<void(std::string, std::vector<std::int64_t>)>;
std::vector<tensor_spec> decoder_specs(int L, int H, int V, bool qkv_bias,
                                       const std::function<void(const add_fn&, const std::string&)>& moe) {
  std::vector<tensor_spec> s;
  const add_fn add = [&](std::string n, std::vector<std::int64_t> shape) { s.push_back({std::move(n), dtype::BF16, std::move(shape)}); };
  add("lm_head.weight", {V, H});
  add("model.embed_tokens.weight", {V, H});
  add("model.norm.weight", {H});
  for (int l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    for (const char* x : {"q", "k", "v", "o"}) {
      add(p + "self_attn." + x + "_proj.weight", {H, H});
      if (qkv_bias && x[0] != 'o') add(p + "self_attn." + x + "_proj.bias", {H});
    }
    moe(add, p);
  }
  return s;
}

void write_qwen2_moe(const std::string& dir) {
  const int L = 2, E = 4, H = 16, I = 8, Is = 12, V = 32;
  std::vector<tensor_spec> s = decoder_specs(L, H, V, true, [&](const add_fn& add, const std::string& p) {
    add(p + "mlp.gate.weight", {E, H});
    add(p + "mlp.shared_expert.gate_proj.weight", {Is, H});
    add(p + "mlp.shared_expert.up_proj.weight", {Is, H});
    add(p + "mlp.shared_expert.down_proj.weight", {H, Is});
    add(p + "mlp.shared_expert_gate.weight", {1, H});
    for (int e = 0; e < E; ++e) {
      std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      add(x + "gate_proj.weight", {I, H});
      add(x + "up_proj.weight", {I, H});
      add(x + "down_proj.weight", {H, I});
    }
  });
  std::uint16_t n = 1;
  write_bf16_checkpoint(dir, std::move(s), R"({"model_type": "qwen2_moe", "hidden_size": 16, "moe_intermediate_size": 8,
    "shared_expert_intermediate_size": 12, "num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2,
    "norm_topk_prob": false, "decoder_sparse_step": 1, "mlp_only_layers": []})",
                        [&] { return static_cast<std::uint16_t>(0x3c00 + (n++ % 997)); });
}

// GraniteMoE's hub layout: experts stacked, gate and up fused (input_linear [E, 2I, H]).
void write_granitemoe(const std::string& dir) {
  const int L = 2, E = 4, H = 16, I = 8, V = 32;
  std::vector<tensor_spec> s = decoder_specs(L, H, V, false, [&](const add_fn& add, const std::string& p) {
    add(p + "block_sparse_moe.router.layer.weight", {E, H});
    add(p + "block_sparse_moe.input_linear.weight", {E, 2 * I, H});
    add(p + "block_sparse_moe.output_linear.weight", {E, H, I});
  });
  std::uint32_t n = 12345;
  write_bf16_checkpoint(dir, std::move(s), R"({"model_type": "granitemoe", "hidden_size": 16, "intermediate_size": 8,
    "num_local_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2})",
                        [&] {  // small bf16 values of both signs (about +-0.008 .. 0.03)
                          n = n * 1103515245u + 12345u;
                          return static_cast<std::uint16_t>((n >> 16 & 0x8000) | (0x3c00 + (n >> 8) % 0x300));
                        });
}

}  // namespace

// The second example family: its hub layout is already stacked and fused, so every other
// layout is reached by cutting and transposing, and moe run gives the same output whichever
// layout it reads.
TEST(YamlOnlyPlugin, GraniteMoeWithStackedHubExpertsConvertsAndRuns) {
  test::temp_dir d;
  write_granitemoe(d / "hf");
  const std::string plugins = " --plugin-path " + std::string(MOEREG_SOURCE_DIR) + "/examples/families";
  auto r = test::run_moereg("plugins check " + std::string(MOEREG_SOURCE_DIR) + "/examples/families/granitemoe");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string from = "hf";
  for (const char* to : {"per_expert", "grouped", "hf"}) {  // a chain back to the start
    r = test::run_moereg("convert " + (d / from) + " " + (d / (std::string("c_") + to)) + " --to " + to + plugins);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    from = std::string("c_") + to;
  }
  r = test::run_moereg("verify " + (d / "c_hf") + " " + (d / "hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  safetensors_writer in(d / "in.safetensors", {{"input", dtype::F32, {5, 16}}});
  std::vector<float> x(5 * 16);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((static_cast<int>(i * 37 % 23) - 11)) / 8.0f;
  in.write(0, 0, x.data(), x.size() * 4);
  in.commit();
  std::string first;
  for (const char* layout : {"hf", "c_per_expert", "c_grouped"}) {
    const std::string out = d / (std::string("run_") + layout + ".safetensors");
    r = test::run_moereg("moe run " + (d / layout) + " --layer 1 --backend cpu --input " + (d / "in.safetensors") + " --output " + out + plugins);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string bytes = test::read_bytes(out);
    if (first.empty()) first = bytes;
    EXPECT_EQ(bytes, first) << layout << ": the same layer read through another layout";
  }
}

TEST(YamlOnlyPlugin, Qwen2MoeFromTheAuthoringGuideConvertsBothWays) {
  test::temp_dir d;
  write_qwen2_moe(d / "hf");
  std::string plugins = std::string(MOEREG_SOURCE_DIR) + "/examples/families";
  auto check = test::run_moereg("plugins check " + plugins + "/qwen2_moe");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  auto without = test::run_moereg("convert " + (d / "hf") + " " + (d / "x") + " --to transformers_v5");
  EXPECT_EQ(without.exit_code, 1) << "qwen2_moe is not a built-in family";
  for (const char* to : {"transformers_v5", "grouped"}) {
    auto r = test::run_moereg("convert " + (d / "hf") + " " + (d / to) + " --to " + to + " --plugin-path " + plugins);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_moereg("convert " + (d / to) + " " + (d / (std::string(to) + "_back")) + " --to hf --plugin-path " + plugins);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_moereg("verify " + (d / (std::string(to) + "_back")) + " " + (d / "hf"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("by tensor name"), std::string::npos) << "same layout: compared by name";
  }
  auto env = test::run_moereg("inspect --json " + (d / "grouped"));
  EXPECT_NE(env.output.find("\"family\": null"), std::string::npos) << env.output;
  auto r = std::system(("MOEREG_PLUGIN_PATH=" + plugins + " " + MOEREG_BUILD_DIR + "/bin/moereg inspect " + (d / "grouped") +
                        " | grep -q 'layout grouped'").c_str());
  EXPECT_EQ(r, 0) << "MOEREG_PLUGIN_PATH finds the plugin too";
}

}  // namespace test_yaml_only_plugin
