// SPDX-License-Identifier: Apache-2.0
// qwen3_vl_moe as a .gguf: the text model in llama.cpp's qwen3vlmoe architecture (fused hub
// experts cut into stacked gate / up, M-RoPE sections as an INT32 array), the vision tower
// left out by the layout's `drops`; read back, the language model equals the fixture's.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "conversion_support.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/gguf/gguf_file.h"
#include "test_support.h"

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_qwen3_vl_moe {
namespace {

TEST(GgufQwen3VlMoe, TextModelIsWrittenWithoutTheVisionTower) {
  temp_dir d;
  convert(fixture("qwen3_vl_moe/hf"), d / "g", "gguf", "transformers_v5");
  gguf_file g(d / "g/model.gguf");
  EXPECT_EQ(g.get_string("general.architecture"), "qwen3vlmoe");
  for (const auto& t : g.tensors())
    EXPECT_TRUE(t.name.rfind("mmproj.", 0) != 0 && t.name.rfind("model.", 0) != 0) << t.name << ": the vision tower is left out";
  EXPECT_EQ(g.tensors().size(), 27u) << "the fixture's 25 language-model tensors, each layer's gate_up cut into gate and up";
  ASSERT_NE(g.find_tensor("blk.1.ffn_gate_exps.weight"), nullptr);
  EXPECT_EQ(g.find_tensor("blk.1.ffn_gate_exps.weight")->shape, (std::vector<std::int64_t>{8, 24, 64}));
  const gguf_value* sections = g.find("qwen3vlmoe.rope.dimension_sections");
  ASSERT_NE(sections, nullptr);
  ASSERT_EQ(sections->type(), gguf_type::array);
  EXPECT_EQ(sections->element_type(), gguf_type::i32);
  std::vector<std::int64_t> got;
  for (const auto& x : sections->items()) got.push_back(x.as_i64());
  EXPECT_EQ(got, (std::vector<std::int64_t>{2, 3, 3, 0})) << "mrope_section [2, 3, 3], padded to 4 as llama.cpp's converter does";
  EXPECT_EQ(g.get_uint("qwen3vlmoe.expert_count"), 8u);
  EXPECT_EQ(g.get_uint("qwen3vlmoe.attention.key_length"), 16u);
}

TEST(GgufQwen3VlMoe, LanguageModelReadsBackBitExact) {
  temp_dir d;
  convert(fixture("qwen3_vl_moe/hf"), d / "g", "gguf", "transformers_v5");
  // With config.json beside it, and bare (the config made from the metadata, text_config.*).
  convert(d / "g", d / "v5", "transformers_v5");
  expect_language_model_equal(d / "v5/model.safetensors", fixture("qwen3_vl_moe/transformers_v5.safetensors"));
  command_result r = run_moereg("convert " + (d / "g/model.gguf") + " " + (d / "v5_bare") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_language_model_equal(d / "v5_bare/model.safetensors", fixture("qwen3_vl_moe/transformers_v5.safetensors"));
  json::value c = json::parse_file(d / "v5_bare/config.json");
  const json::value* sec = c.find_path("text_config.rope_parameters.mrope_section");
  ASSERT_NE(sec, nullptr) << "the sections come back without their padding";
  ASSERT_TRUE(sec->is_array());
  ASSERT_EQ(sec->as_array().size(), 3u);
  EXPECT_EQ(sec->as_array()[1].as_int(), 3);
  EXPECT_EQ(c.find_path("text_config.hidden_size")->as_int(), 64);
  EXPECT_EQ(c.find_path("model_type")->as_string(), "qwen3_vl_moe");
}

TEST(GgufQwen3VlMoe, MropeSectionsThatDoNotFitAreOneError) {
  temp_dir d;
  std::string cfg = read_bytes(fixture("qwen3_vl_moe/hf/config.json"));
  const std::string from = "\"mrope_section\": [";
  const std::size_t at = cfg.find(from);
  ASSERT_NE(at, std::string::npos);
  cfg.insert(at + from.size(), "1, 1, ");  // five sections: more than llama.cpp's four
  std::filesystem::create_directories(d / "m");
  write_bytes(d / "m/config.json", cfg);
  std::filesystem::copy_file(fixture("qwen3_vl_moe/hf/model.safetensors"), d / "m/model.safetensors");
  command_result r = run_moereg("convert " + (d / "m") + " " + (d / "out") + " --to gguf --from transformers_v5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "'text_config.rope_parameters.mrope_section' is");
  EXPECT_HAS(r.output, "expected a list of at most 4 integers for gguf metadata 'qwen3vlmoe.rope.dimension_sections'");
  EXPECT_FALSE(std::filesystem::exists(d / "out/model.gguf"));
}

}  // namespace
}  // namespace test_gguf_qwen3_vl_moe
}  // namespace moereg::test
