// SPDX-License-Identifier: Apache-2.0
// Real llama.cpp (the pinned prebuilt package, scripts/fetch-llamacpp.sh) loads .gguf files and
// gives the fixtures' transformers logits: max |diff| <= 5 % of max |logit| and the same argmax
// at every position (tests/llamacpp/llamacpp_run.cpp does the run, in a child process).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/gguf/ggml_dequant.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/dtype.h"

#include "conversion_support.h"
#include "llamacpp_support.h"
#include "test_support.h"

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_llamacpp {
namespace {


// llama.cpp loads `gguf` and matches `family`'s logits_f32 within the bound.
void expect_llamacpp_matches(const std::string& gguf, const std::string& family) {
  command_result r = run_command(quoted(llamacpp_run) + " logits " + quoted(llamacpp_lib) + " " + quoted(gguf) + " " +
                                 quoted(fixture(family + "/logits.safetensors")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::cout << r.output;
}

TEST(LlamaCpp, LoadsItsOwnConversionsOfTheFixtures) {
  SKIP_WITHOUT_LLAMACPP();
  // The two of llama.cpp's own conversions its loader accepts (fixtures/README.md).
  expect_llamacpp_matches(fixture("gguf_llamacpp/mixtral.gguf"), "mixtral");
  expect_llamacpp_matches(fixture("gguf_llamacpp/deepseek_v3.gguf"), "deepseek_v3");
}

TEST(LlamaCpp, HarnessRejectsLogitsOfAnotherModel) {
  SKIP_WITHOUT_LLAMACPP();
  // Same vocabulary size, other weights: the comparison must fail, so a pass above means something.
  command_result r = run_command(quoted(llamacpp_run) + " logits " + quoted(llamacpp_lib) + " " +
                                 quoted(fixture("gguf_llamacpp/mixtral.gguf")) + " " +
                                 quoted(fixture("deepseek_v3/logits.safetensors")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

// ggml's to_float (libggml-base of the package) on the blocks in `bytes` equals moereg's
// decoding bit for bit.
void expect_same_decoding(ggml_type type, const std::string& bytes, const std::string& what) {
  temp_dir dir;
  write_bytes(dir / "in.bin", bytes);
  command_result r = run_command(quoted(llamacpp_run) + " to_float " + quoted(llamacpp_lib) + " " +
                                 std::to_string(static_cast<int>(type)) + " " + quoted(dir / "in.bin") + " " +
                                 quoted(dir / "out.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string theirs = read_bytes(dir / "out.bin");
  const auto& tr = ggml_traits(type);
  std::vector<float> ours(bytes.size() / tr.type_size * tr.block_size);
  ggml_dequantize(type, reinterpret_cast<const std::byte*>(bytes.data()), ours.data(), static_cast<std::int64_t>(ours.size()));
  ASSERT_EQ(theirs.size(), ours.size() * 4) << what;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    float t;
    std::memcpy(&t, theirs.data() + 4 * i, 4);
    if (std::memcmp(&t, &ours[i], 4) != 0) {
      ADD_FAILURE() << what << " " << tr.name << ": value " << i << " (block " << i / tr.block_size << ") is " << ours[i]
                    << ", ggml gives " << t;
      return;
    }
  }
}

TEST(LlamaCpp, GgmlBlocksDecodeBitIdenticalToGgmlOnRandomBlocks) {
  SKIP_WITHOUT_LLAMACPP();
  std::mt19937 rng(16);
  for (ggml_type t : {ggml_type::Q4_0, ggml_type::Q4_1, ggml_type::Q5_0, ggml_type::Q5_1, ggml_type::Q8_0, ggml_type::Q2_K,
                      ggml_type::Q3_K, ggml_type::Q4_K, ggml_type::Q5_K, ggml_type::Q6_K, ggml_type::MXFP4}) {
    // Random bytes everywhere, scales included (so infinities, NaNs and subnormals occur too).
    std::string bytes(ggml_traits(t).type_size * 4096, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() & 0xFF);
    expect_same_decoding(t, bytes, "random blocks");
  }
}

TEST(LlamaCpp, GgmlBlocksDecodeBitIdenticalToGgmlOnLlamaCppQuantizedFixtures) {
  SKIP_WITHOUT_LLAMACPP();
  for (const char* name : {"gguf_llamacpp/qwen3_moe-q8_0.gguf", "gguf_llamacpp/qwen3_moe-q4_0.gguf"}) {
    gguf_file f(fixture(name));
    int quantized = 0;
    for (const auto& t : f.tensors()) {
      if (!t.quantized()) continue;
      ++quantized;
      expect_same_decoding(t.type, std::string(reinterpret_cast<const char*>(f.data(t)), t.nbytes), t.name);
    }
    EXPECT_GT(quantized, 0) << name;
  }
}

TEST(LlamaCpp, GgufFromAQuantizedThenDequantizedRoundTripMatchesTransformersLogits) {
  SKIP_WITHOUT_LLAMACPP();
  // llama.cpp's Q8_0 file -> hf safetensors (moereg decodes the blocks to bf16, config from the
  // metadata) -> a .gguf by moereg -> llama.cpp: the quantization error stays inside the bound.
  temp_dir d;
  command_result r = run_moereg("convert " + quoted(fixture("gguf_llamacpp/qwen3_moe-q8_0.gguf")) + " " + quoted(d / "hf") +
                                " --to hf --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_moereg("convert " + quoted(d / "hf") + " " + quoted(d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_llamacpp_matches(d / "g/model.gguf", "qwen3_moe");
}

// A Qwen2-MoE checkpoint (the YAML-only family of docs/plugin-authoring.md, which has no
// fixture): random bf16 weights of small magnitude, norms 1, config.json with every field
// its `gguf` section writes.
void write_qwen2_moe(const std::string& dir) {
  const std::int64_t L = 2, E = 4, H = 32, I = 16, Is = 24, V = 64, heads = 4, kv = 2, hd = H / heads;
  std::vector<tensor_spec> s;
  auto add = [&](std::string n, std::vector<std::int64_t> shape) { s.push_back({std::move(n), dtype::BF16, std::move(shape)}); };
  add("lm_head.weight", {V, H});
  add("model.embed_tokens.weight", {V, H});
  add("model.norm.weight", {H});
  for (std::int64_t l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {H, H});
    add(p + "self_attn.q_proj.bias", {H});
    for (const char* x : {"k", "v"}) {
      add(p + "self_attn." + x + "_proj.weight", {kv * hd, H});
      add(p + "self_attn." + x + "_proj.bias", {kv * hd});
    }
    add(p + "self_attn.o_proj.weight", {H, H});
    add(p + "mlp.gate.weight", {E, H});
    add(p + "mlp.shared_expert.gate_proj.weight", {Is, H});
    add(p + "mlp.shared_expert.up_proj.weight", {Is, H});
    add(p + "mlp.shared_expert.down_proj.weight", {H, Is});
    add(p + "mlp.shared_expert_gate.weight", {1, H});
    for (std::int64_t e = 0; e < E; ++e) {
      std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      add(x + "gate_proj.weight", {I, H});
      add(x + "up_proj.weight", {I, H});
      add(x + "down_proj.weight", {H, I});
    }
  }
  sort_like_safetensors(s);
  checkpoint_writer w(dir, plan_shards(s, {}));
  auto& f = static_cast<safetensors_writer&>(w.open_shard(0, {{"format", "pt"}}));
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 0.08f);
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const bool norm = f.tensors()[i].name.find("norm") != std::string::npos;
    std::vector<std::uint16_t> v(f.tensors()[i].numel());
    for (auto& x : v) x = f32_to_bf16(norm ? 1.0f : normal(rng));
    f.write(i, 0, v.data(), v.size() * 2);
  }
  w.commit_shard();
  w.write_file("config.json", R"({"model_type": "qwen2_moe", "dtype": "bfloat16", "hidden_size": 32, "intermediate_size": 48,
    "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24, "num_experts": 4, "num_experts_per_tok": 2,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "vocab_size": 64, "norm_topk_prob": false,
    "decoder_sparse_step": 1, "mlp_only_layers": []})");
  w.finish(false);
}

TEST(LlamaCpp, YamlOnlyPluginGgufLoadsAndRuns) {
  SKIP_WITHOUT_LLAMACPP();
  // examples/families/qwen2_moe declares its llama.cpp architecture (qwen2moe), names and
  // metadata in plugin.yaml alone; llama.cpp loads the .gguf and decodes with finite logits,
  // and it reads back equal to the source.
  temp_dir d;
  write_qwen2_moe(d / "hf");
  const std::string plugins = " --plugin-path " + quoted(std::string(MOEREG_SOURCE_DIR) + "/examples/families");
  command_result r = run_moereg("convert " + quoted(d / "hf") + " " + quoted(d / "g") + " --to gguf" + plugins);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  gguf_file g(d / "g/model.gguf");
  EXPECT_EQ(g.get_string("general.architecture"), "qwen2moe");
  ASSERT_NE(g.find_tensor("blk.1.ffn_gate_inp_shexp.weight"), nullptr);
  EXPECT_EQ(g.find_tensor("blk.1.ffn_gate_inp_shexp.weight")->type, ggml_type::F32);
  r = run_command(quoted(llamacpp_run) + " run " + quoted(llamacpp_lib) + " " + quoted(d / "g/model.gguf") + " 12");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::cout << r.output;
  r = run_moereg("convert " + quoted(d / "g/model.gguf") + " " + quoted(d / "back") + " --to hf" + plugins);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_moereg("verify " + quoted(d / "back") + " " + quoted(d / "hf") + plugins);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A family written in YAML alone (no hook library: what docs/plugin-authoring.md describes),
// the qwen3_moe plugin's manifest under another name, given with --plugin-path and chosen with
// --family: its `gguf` layout and section are all llama.cpp needs to give transformers' logits.
TEST(LlamaCpp, YamlOnlyFamilyGgufMatchesTransformersLogits) {
  SKIP_WITHOUT_LLAMACPP();
  temp_dir d;
  std::string yaml = read_bytes(std::string(MOEREG_SOURCE_DIR) + "/plugins/qwen3_moe/plugin.yaml"), kept;
  std::istringstream lines(yaml);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("library:", 0) == 0 || line.rfind("hooks:", 0) == 0) continue;
    kept += (line == "name: qwen3_moe" ? "name: qwen3_moe_yaml" : line) + "\n";
  }
  ASSERT_NE(kept.find("name: qwen3_moe_yaml"), std::string::npos);
  std::filesystem::create_directories(d / "plugins/qwen3_moe_yaml");
  write_bytes(d / "plugins/qwen3_moe_yaml/plugin.yaml", kept);
  const std::string plugins = " --plugin-path " + quoted(d / "plugins");
  command_result r = run_moereg("plugins show qwen3_moe_yaml" + plugins);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("library       -"), std::string::npos) << r.output;
  r = run_moereg("convert " + quoted(fixture("qwen3_moe/hf")) + " " + quoted(d / "g") + " --to gguf --family qwen3_moe_yaml --json" +
                 plugins);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"family\": \"qwen3_moe_yaml\""), std::string::npos) << r.output;
  expect_llamacpp_matches(d / "g/model.gguf", "qwen3_moe");
}

// hf/ -> model.gguf by moereg, then into llama.cpp.
class LlamaCppFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppFamily, LoadsMoeregGgufAndMatchesTransformersLogits) {
  SKIP_WITHOUT_LLAMACPP();
  temp_dir out;
  // qwen3_vl_moe's hf/ holds the transformers-5 order, which its hub layout shares names with.
  convert(fixture(GetParam() + "/hf"), out.path(), "gguf", GetParam() == "qwen3_vl_moe" ? "transformers_v5" : "");
  expect_llamacpp_matches(out / "model.gguf", GetParam());
}

INSTANTIATE_TEST_SUITE_P(Families, LlamaCppFamily,
                         ::testing::Values("qwen3_moe", "qwen3_vl_moe", "qwen3_5_moe", "mixtral", "deepseek_v2", "deepseek_v3"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace test_llamacpp
}  // namespace moereg::test
