// SPDX-License-Identifier: Apache-2.0
// Metadata that contradicts the model (issue 13): refused by name where a config is made
// from a GGUF's metadata, where a .gguf's metadata is made from config.json, and where the
// MoE sizes are read from config.json.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/gguf/gguf_model_metadata.h"
#include "moereg/gguf/gguf_writer.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_model_metadata {
namespace {

gguf_metadata good() {
  return {{"general.architecture", gguf_value::string("qwen3moe")},
          {"qwen3moe.block_count", gguf_value::u32(2)},
          {"qwen3moe.embedding_length", gguf_value::u32(64)},
          {"qwen3moe.expert_count", gguf_value::u32(8)},
          {"qwen3moe.expert_used_count", gguf_value::u32(2)},
          {"qwen3moe.attention.head_count", gguf_value::u32(4)},
          {"qwen3moe.attention.head_count_kv", gguf_value::u32(2)},
          {"qwen3moe.attention.layer_norm_rms_epsilon", gguf_value::f32(1e-6f)},
          {"qwen3moe.rope.freq_base", gguf_value::f32(1e6f)},
          {"qwen3moe.expert_shared_count", gguf_value::u32(0)},
          {"qwen3moe.attention.head_count_kv_per_layer", gguf_value::array(gguf_type::u32, {gguf_value::u32(0)})}};
}

gguf_metadata with(const std::string& key, gguf_value v) {
  gguf_metadata md = good();
  for (auto& [k, old] : md)
    if (k == key) {
      old = std::move(v);
      return md;
    }
  md.emplace_back(key, std::move(v));
  return md;
}

std::string check_error(const gguf_metadata& md) {
  try {
    check_gguf_model_metadata(md, "qwen3moe", "m.gguf", [](const std::string& k) { return "gguf metadata '" + k + "'"; });
  } catch (const error& e) {
    return e.what();
  }
  return "no error";
}


// A qwen3moe GGUF of E=2, H=64, I=32, one layer, with the metadata given.
void write_model(const std::string& path, const gguf_metadata& md) {
  std::vector<gguf_tensor_spec> specs = {{"blk.0.ffn_gate_exps.weight", ggml_type::F16, {2, 32, 64}},
                                         {"blk.0.ffn_up_exps.weight", ggml_type::F16, {2, 32, 64}},
                                         {"blk.0.ffn_down_exps.weight", ggml_type::F16, {2, 64, 32}},
                                         {"blk.0.ffn_gate_inp.weight", ggml_type::F32, {2, 64}}};
  gguf_writer w(path, md, specs);
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    std::string b(w.tensors()[i].nbytes, '\0');
    w.write(i, 0, b.data(), b.size());
  }
  w.commit();
}

}  // namespace

TEST(GgufModelMetadata, AcceptsConsistentMetadata) { EXPECT_EQ(check_error(good()), "no error"); }

TEST(GgufModelMetadata, RefusesEachContradictionByName) {
  EXPECT_HAS(check_error(with("qwen3moe.expert_used_count", gguf_value::u32(9))),
             "m.gguf: gguf metadata 'qwen3moe.expert_used_count' = 9 is more than gguf metadata 'qwen3moe.expert_count' = 8");
  EXPECT_HAS(check_error(with("qwen3moe.attention.head_count", gguf_value::u32(0))),
             "m.gguf: gguf metadata 'qwen3moe.attention.head_count': expected an integer from 1 to 2^31-1, found 0");
  EXPECT_HAS(check_error(with("qwen3moe.attention.head_count", gguf_value::u32(4294967295u))),
             "'qwen3moe.attention.head_count': expected an integer from 1 to 2^31-1, found 4294967295");
  EXPECT_HAS(check_error(with("qwen3moe.attention.head_count_kv", gguf_value::u32(0))),
             "'qwen3moe.attention.head_count_kv': expected an integer from 1");
  EXPECT_HAS(check_error(with("qwen3moe.attention.head_count_kv", gguf_value::u32(3))),
             "'qwen3moe.attention.head_count' = 4 is not a multiple of gguf metadata 'qwen3moe.attention.head_count_kv' = 3");
  EXPECT_HAS(check_error(with("qwen3moe.attention.head_count_kv", gguf_value::u32(8))), "= 8 is more than");
  EXPECT_HAS(check_error(with("qwen3moe.attention.head_count", gguf_value::u32(128))),
             "'qwen3moe.attention.head_count' = 128 is more than gguf metadata 'qwen3moe.embedding_length' = 64");
  EXPECT_HAS(check_error(with("qwen3moe.attention.layer_norm_rms_epsilon", gguf_value::f32(std::nanf("")))),
             "'qwen3moe.attention.layer_norm_rms_epsilon': expected a finite number, found NaN");
  EXPECT_HAS(check_error(with("qwen3moe.attention.layer_norm_rms_epsilon", gguf_value::f32(-1e-6f))),
             "'qwen3moe.attention.layer_norm_rms_epsilon': expected a number > 0, found -9.99999997e-07");
  EXPECT_HAS(check_error(with("qwen3moe.attention.layer_norm_rms_epsilon", gguf_value::f64(0))), "expected a number > 0, found 0");
  EXPECT_HAS(check_error(with("qwen3moe.rope.freq_base", gguf_value::f32(std::numeric_limits<float>::infinity()))),
             "'qwen3moe.rope.freq_base': expected a finite number, found inf");
  EXPECT_HAS(check_error(with("qwen3moe.some_future_scale", gguf_value::f64(std::nan("")))),
             "'qwen3moe.some_future_scale': expected a finite number, found NaN");
  EXPECT_HAS(check_error(with("qwen3moe.expert_count", gguf_value::i32(-8))), "'qwen3moe.expert_count': expected an integer from 1 to 2^31-1, found -8");
  EXPECT_HAS(check_error(with("qwen3moe.expert_count", gguf_value::string("8"))), "'qwen3moe.expert_count': expected an integer from 1 to 2^31-1, found STRING");
  EXPECT_HAS(check_error(with("qwen3moe.block_count", gguf_value::f32(2.0f))), "found 2 (FLOAT32)");
  EXPECT_HAS(check_error(with("qwen3moe.leading_dense_block_count", gguf_value::u32(3))),
             "'qwen3moe.leading_dense_block_count' = 3 is more than gguf metadata 'qwen3moe.block_count' = 2");
  EXPECT_HAS(check_error(with("qwen3moe.expert_group_count", gguf_value::u32(3))),
             "'qwen3moe.expert_count' = 8 is not a multiple of gguf metadata 'qwen3moe.expert_group_count' = 3");
  gguf_metadata groups = with("qwen3moe.expert_group_count", gguf_value::u32(4));
  groups.emplace_back("qwen3moe.expert_group_used_count", gguf_value::u32(5));
  EXPECT_HAS(check_error(groups), "'qwen3moe.expert_group_used_count' = 5 is more than gguf metadata 'qwen3moe.expert_group_count' = 4");
  // Keys of another architecture are not this model's.
  EXPECT_EQ(check_error(with("llama.expert_used_count", gguf_value::u32(99))), "no error");
}

TEST(GgufModelMetadata, ConvertRefusesAGgufWhoseMetadataContradictsTheModel) {
  test::temp_dir d;
  gguf_metadata md = {{"general.architecture", gguf_value::string("qwen3moe")},
                      {"qwen3moe.block_count", gguf_value::u32(1)},
                      {"qwen3moe.expert_count", gguf_value::u32(2)},
                      {"qwen3moe.expert_used_count", gguf_value::u32(3)},
                      {"qwen3moe.embedding_length", gguf_value::u32(64)},
                      {"qwen3moe.expert_feed_forward_length", gguf_value::u32(32)}};
  write_model(d / "m.gguf", md);
  gguf_file g(d / "m.gguf");
  family_spec spec = test::source_catalog().resolve("qwen3_moe", "qwen3_moe");
  try {
    gguf_config(g, spec);
    ADD_FAILURE() << "expert_used_count 3 > expert_count 2 accepted";
  } catch (const error& e) {
    EXPECT_HAS(std::string(e.what()), "m.gguf: gguf metadata 'qwen3moe.expert_used_count' = 3 is more than gguf metadata "
                                      "'qwen3moe.expert_count' = 2");
  }
  auto r = test::run_moereg("convert " + (d / "m.gguf") + " " + (d / "out") + " --to hf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "'qwen3moe.expert_used_count' = 3 is more than");
  EXPECT_FALSE(fs::exists(d / "out"));

  md[3].second = gguf_value::u32(1);
  md.emplace_back("qwen3moe.attention.layer_norm_rms_epsilon", gguf_value::f32(std::nanf("")));
  write_model(d / "nan.gguf", md);
  r = test::run_moereg("convert " + (d / "nan.gguf") + " " + (d / "out") + " --to hf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "'qwen3moe.attention.layer_norm_rms_epsilon': expected a finite number, found NaN");
  EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(GgufModelMetadata, MetadataMadeFromConfigJsonIsCheckedByField) {
  family_spec spec = test::source_catalog().resolve("qwen3_moe", "qwen3_moe");
  auto error_of = [&](const std::string& json_text) {
    try {
      gguf_metadata_for(spec, json::parse(json_text, "cfg"), "cfg.json");
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_HAS(error_of(R"({"num_experts": 8, "num_experts_per_tok": 9})"),
             "cfg.json: 'num_experts_per_tok' (gguf metadata 'qwen3moe.expert_used_count') = 9 is more than 'num_experts' "
             "(gguf metadata 'qwen3moe.expert_count') = 8");
  EXPECT_HAS(error_of(R"({"num_attention_heads": 0})"),
             "cfg.json: 'num_attention_heads' (gguf metadata 'qwen3moe.attention.head_count'): expected an integer from 1");
  EXPECT_HAS(error_of(R"({"rms_norm_eps": -1e-6})"), "'rms_norm_eps' (gguf metadata 'qwen3moe.attention.layer_norm_rms_epsilon'): expected a number > 0");
  EXPECT_HAS(error_of(R"({"rms_norm_eps": 1e300})"), "expected a finite number, found inf");
  EXPECT_EQ(error_of(R"({"num_experts": 8, "num_experts_per_tok": 2, "num_attention_heads": 4, "rms_norm_eps": 1e-6})"), "no error");
}

// A .gguf has no config.json: a problem with its dimensions names its metadata (this said
// "which config.json makes a dense layer" of a file that had none).
TEST(GgufModelMetadata, LayersPastTheBlockCountAreBlamedOnTheMetadata) {
  test::temp_dir d;
  const gguf_metadata md = {{"general.architecture", gguf_value::string("qwen3moe")},
                            {"qwen3moe.block_count", gguf_value::u32(1)},
                            {"qwen3moe.expert_count", gguf_value::u32(2)},
                            {"qwen3moe.expert_used_count", gguf_value::u32(1)},
                            {"qwen3moe.embedding_length", gguf_value::u32(64)},
                            {"qwen3moe.expert_feed_forward_length", gguf_value::u32(32)}};
  std::vector<gguf_tensor_spec> specs;
  for (const char* l : {"0", "1"}) {
    const std::string b = std::string("blk.") + l + ".";
    specs.push_back({b + "ffn_gate_exps.weight", ggml_type::F16, {2, 32, 64}});
    specs.push_back({b + "ffn_up_exps.weight", ggml_type::F16, {2, 32, 64}});
    specs.push_back({b + "ffn_down_exps.weight", ggml_type::F16, {2, 64, 32}});
    specs.push_back({b + "ffn_gate_inp.weight", ggml_type::F32, {2, 64}});
  }
  {
    gguf_writer w(d / "m.gguf", md, specs);
    for (std::size_t i = 0; i < w.tensors().size(); ++i) {
      std::string b(w.tensors()[i].nbytes, '\0');
      w.write(i, 0, b.data(), b.size());
    }
    w.commit();
  }
  auto r = test::run_moereg("convert " + (d / "m.gguf") + " " + (d / "out") + " --to hf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "blk.1.ffn_gate_exps.weight: experts in layer 1, which the .gguf's metadata makes a dense layer");
  EXPECT_FALSE(test::contains(r.output, "config.json")) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(GgufModelMetadata, ConfigJsonWithMoreExpertsPerTokenThanExpertsIsRefused) {
  family_spec spec = test::source_catalog().resolve("qwen3_moe", "qwen3_moe");
  auto dims_error = [&](const std::string& json_text) {
    try {
      read_dims(spec, json::parse(json_text, "cfg"), "cfg.json");
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string base = R"("hidden_size": 64, "moe_intermediate_size": 32, "num_hidden_layers": 2)";
  EXPECT_EQ(dims_error("{" + base + R"(, "num_experts": 8, "num_experts_per_tok": 2})"), "no error");
  EXPECT_HAS(dims_error("{" + base + R"(, "num_experts": 8, "num_experts_per_tok": 9})"),
             "cfg.json: num_experts_per_tok = 9 (K, experts per token) is more than num_experts or num_local_experts = 8");
  EXPECT_HAS(dims_error("{" + base + R"(, "num_experts": 4294967295, "num_experts_per_tok": 2})"), "at most 2^31-1");
  EXPECT_HAS(dims_error(R"({"hidden_size": 64, "moe_intermediate_size": 32, "num_hidden_layers": 1e12, "num_experts": 8, "num_experts_per_tok": 2})"),
             "expected the layer count (an integer from 1 to 1000000)");
}

}  // namespace test_gguf_model_metadata
