// SPDX-License-Identifier: Apache-2.0
// verify resolves layouts; inspect names the family and layout.
#include <gtest/gtest.h>

#include <filesystem>

#include "moereg/base/json.h"
#include "test_support.h"

using namespace moereg;

TEST(VerifyLayouts, SameModelInDifferentLayoutsVerifiesEqual) {
  test::temp_dir d;
  ASSERT_EQ(test::run_moereg("convert " + test::fixture("deepseek_v2/hf") + " " + (d / "g") + " --to grouped").exit_code, 0);
  auto r = test::run_moereg("verify " + (d / "g") + " " + test::fixture("deepseek_v2/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("through layouts grouped and hf"), std::string::npos) << r.output;
  r = test::run_moereg("verify " + test::fixture("qwen3_vl_moe/hub") + " " + test::fixture("qwen3_vl_moe/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(VerifyLayouts, DifferentWeightsInDifferentLayoutsAreReported) {
  test::temp_dir d;
  ASSERT_EQ(test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "v5") + " --to transformers_v5").exit_code, 0);
  // Same names and shapes, other weights: qwen3_vl_moe hub vs qwen3_vl_moe hf with a flipped byte.
  std::string bytes = test::read_bytes(d / "v5/model.safetensors");
  auto hdr = bytes.find("model.layers.1.mlp.experts.gate_up_proj");
  ASSERT_NE(hdr, std::string::npos);
  bytes[bytes.size() - 3] ^= 0x40;  // the last tensor's data
  test::write_bytes(d / "v5/model.safetensors", bytes);
  auto r = test::run_moereg("verify --json " + (d / "v5") + " " + test::fixture("qwen3_moe/hf"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  json::value v = json::parse(r.output, "verify");
  EXPECT_FALSE(v.find("equal")->as_bool());
  EXPECT_EQ(v.find("differences")->as_array().size(), 1u) << r.output;
}

TEST(Inspect, NamesFamilyAndLayout) {
  struct c { const char* dir; const char* family; const char* layout; };
  for (auto [dir, family, layout] : {c{"qwen3_moe/hf", "qwen3_moe", "hf"}, c{"qwen3_vl_moe/hub", "qwen3_vl_moe", "hf"},
                                     c{"qwen3_vl_moe/hf", "qwen3_vl_moe", "transformers_v5"},
                                     c{"qwen3_5_moe/hf", "qwen3_5_moe", "hf_split"}, c{"mixtral/hf", "mixtral", "hf"},
                                     c{"deepseek_v2/hf", "deepseek", "hf"}}) {
    auto r = test::run_moereg("inspect --json " + test::fixture(dir));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    json::value v = json::parse(r.output, "inspect");
    EXPECT_EQ(v.find("family")->as_string(), family) << dir;
    EXPECT_EQ(v.find("layout")->as_string(), layout) << dir;
  }
}
