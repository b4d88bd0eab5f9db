// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "moereg/checkpoint/summary.h"
#include "test_support.h"

using namespace moereg;

TEST(Summary, FoldsLayersAndExperts) {
  std::vector<tensor_info> ts;
  for (int l = 0; l < 48; ++l)
    for (int e = 0; e < 128; ++e)
      ts.push_back({"model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(e) + ".gate_proj.weight",
                    dtype::BF16, {768, 2048}, 0, 768 * 2048 * 2});
  ts.push_back({"model.layers.3.mlp.gate.weight", dtype::BF16, {128, 2048}, 0, 128 * 2048 * 2});
  ts.push_back({"model.layers.5.mlp.gate.weight", dtype::BF16, {128, 2048}, 0, 128 * 2048 * 2});
  auto groups = fold_tensor_names(ts);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].pattern, "model.layers.{0..47}.mlp.experts.{0..127}.gate_proj.weight");
  EXPECT_EQ(groups[0].count, 6144u);
  EXPECT_EQ(groups[1].pattern, "model.layers.{3,5}.mlp.gate.weight");
}

TEST(Summary, DifferentShapesStayApartAndNamesWithDigitsAreNotFolded) {
  std::vector<tensor_info> ts = {{"layers.0.w1.weight", dtype::BF16, {4, 2}, 0, 16},
                                 {"layers.1.w1.weight", dtype::BF16, {4, 2}, 0, 16},
                                 {"layers.1.w3.weight", dtype::BF16, {4, 2}, 0, 16},
                                 {"layers.2.w1.weight", dtype::F32, {4, 2}, 0, 32}};
  auto groups = fold_tensor_names(ts);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].pattern, "layers.{0,1}.w1.weight");
  EXPECT_EQ(groups[1].pattern, "layers.1.w3.weight");
  EXPECT_EQ(groups[2].pattern, "layers.2.w1.weight");
}

TEST(Summary, NumberSets) {
  EXPECT_EQ(format_number_set({0, 1, 2, 5, 7, 8, 9}), "{0..2,5,7..9}");
  EXPECT_EQ(format_number_set({4}), "4");
  EXPECT_EQ(format_number_set({1, 2}), "{1,2}");
}

TEST(Summary, FixtureTotals) {
  checkpoint c = checkpoint::open(test::fixture("qwen3_moe/hf"));
  checkpoint_summary s = summarize(c);
  EXPECT_EQ(s.tensor_count, 69u);
  EXPECT_EQ(s.total_bytes, static_cast<const safetensors_file&>(*c.files()[0]).data_size());
  EXPECT_EQ(s.dtypes.at("BF16").first, 69u);
}
