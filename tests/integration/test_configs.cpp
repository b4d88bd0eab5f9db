// SPDX-License-Identifier: Apache-2.0
// Every recipe in configs/ parses and plans against a fixture of its family.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_support.h"

TEST(Configs, EveryRecipeRunsAsADryRun) {
  struct c { const char* recipe; const char* fixture; };
  for (auto [recipe, fixture] : {c{"qwen3_moe_hub_to_transformers_v5", "qwen3_moe/hf"}, c{"qwen3_moe_to_nemo_grouped", "qwen3_moe/hf"},
                                 c{"qwen3_vl_moe_hub_to_transformers_v5", "qwen3_vl_moe/hub"},
                                 c{"transformers_v5_to_hub", "qwen3_vl_moe/hf"}, c{"mixtral_to_mistral_native", "mixtral/hf"},
                                 c{"deepseek_v3_expert_parallel_rank0of8", "deepseek_v3/hf"}, c{"qwen3_moe_to_gguf", "qwen3_moe/hf"},
                                 c{"deepseek_v3_fp8_to_bf16", "deepseek_v3_fp8/hf"}}) {
    std::string path = std::string(MOEREG_SOURCE_DIR) + "/configs/" + recipe + ".yaml";
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    std::string extra = std::string(recipe).find("rank0of8") != std::string::npos ? " --experts 0:4" : "";
    auto r = moereg::test::run_moereg("convert --dry-run --config " + path + " " + moereg::test::fixture(fixture) + extra);
    EXPECT_EQ(r.exit_code, 0) << recipe << "\n" << r.output;
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(std::string(MOEREG_SOURCE_DIR) + "/configs"),
                          std::filesystem::directory_iterator{}),
            8) << "a new recipe needs a line in this test";
}
