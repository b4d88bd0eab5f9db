// SPDX-License-Identifier: Apache-2.0
// Conversions against the fixtures made by transformers itself: bit-exact, both ways.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/tensor/dtype.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_conversion_fixtures {
namespace {

const char* families[] = {"qwen3_moe", "qwen3_vl_moe", "qwen3_5_moe", "mixtral", "deepseek_v2", "deepseek_v3"};

}  // namespace

TEST(ConversionFixtures, HfToTransformersV5IsBitExact) {
  for (const char* f : families) {
    test::temp_dir d;
    test::convert(test::fixture(std::string(f) + "/hf"), d / "out", "transformers_v5");
    test::expect_same_tensors(d / "out/model.safetensors", test::fixture(std::string(f) + "/transformers_v5.safetensors"));
  }
}

TEST(ConversionFixtures, HubToTransformersV5IsBitExact) {
  for (const char* f : {"qwen3_vl_moe", "qwen3_5_moe"}) {
    test::temp_dir d;
    test::convert(test::fixture(std::string(f) + "/hub"), d / "out", "transformers_v5");
    test::expect_same_tensors(d / "out/model.safetensors", test::fixture(std::string(f) + "/transformers_v5.safetensors"));
  }
}

TEST(ConversionFixtures, ReverseDirectionsReproduceHfAndHub) {
  // transformers_v5.safetensors has no config.json beside it: convert a v5 copy made by moereg.
  for (const char* f : families) {
    test::temp_dir d;
    test::convert(test::fixture(std::string(f) + "/hf"), d / "v5", "transformers_v5");
    checkpoint hf = checkpoint::open(test::fixture(std::string(f) + "/hf"));
    family_spec spec = test::spec_for(hf);
    std::string back = spec.find_layout("hf_split") ? "hf_split" : "hf";
    // The hf/ folders are what transformers 5.17 saves: qwen3_vl_moe saves transformers_v5 order.
    if (std::string(f) == "qwen3_vl_moe") back = "transformers_v5";
    test::convert(d / "v5", d / "back", back, "transformers_v5");
    test::expect_same_tensors(d / "back/model.safetensors", test::fixture(std::string(f) + "/hf/model.safetensors"));
  }
  for (const char* f : {"qwen3_vl_moe", "qwen3_5_moe"}) {
    test::temp_dir d;
    test::convert(test::fixture(std::string(f) + "/hf"), d / "hub", "hf", std::string(f) == "qwen3_vl_moe" ? "transformers_v5" : "");
    test::expect_same_tensors(d / "hub/model.safetensors", test::fixture(std::string(f) + "/hub/model.safetensors"));
  }
}

TEST(ConversionFixtures, EveryPairOfLayoutsRoundTripsBitExact) {
  for (const char* f : families) {
    checkpoint hf = checkpoint::open(test::fixture(std::string(f) + "/hf"));
    family_spec spec = test::spec_for(hf);
    model_dims dims = read_dims(spec, hf.config(), hf.config_path());
    std::string origin = detect_layout(hf, spec, dims).name;
    test::temp_dir d;
    // A layout that drops tensors (qwen3_vl_moe's text-only gguf) cannot round-trip the
    // rest; test_gguf_more_families.cpp checks it on what it keeps.
    std::vector<std::string> layouts;
    for (const auto& name : spec.layout_names())
      if (spec.find_layout(name)->drops.empty()) layouts.push_back(name);
    for (const auto& a : layouts) test::convert(test::fixture(std::string(f) + "/hf"), d / a, a, origin);
    for (const auto& a : layouts)
      for (const auto& b : layouts) {
        if (a == b) continue;
        std::string ab = d / (a + "_to_" + b), back = d / (a + "_to_" + b + "_back");
        test::convert(d / a, ab, b, a);
        test::convert(ab, back, a, b);
        test::expect_same_tensors(test::output_file(back, a, spec), test::output_file(d / a, a, spec));
        // And B reached through A equals B reached directly.
        test::expect_same_tensors(test::output_file(ab, b, spec), test::output_file(d / b, b, spec));
      }
  }
}

TEST(ConversionFixtures, NonExpertTensorsPassThroughByteIdentical) {
  test::temp_dir d;
  test::convert(test::fixture("deepseek_v3/hf"), d / "v5", "transformers_v5");
  test::convert(test::fixture("deepseek_v3/hf"), d / "gguf", "gguf");
  checkpoint src = checkpoint::open(test::fixture("deepseek_v3/hf"));
  const auto* a = src.find("model.layers.1.mlp.gate.e_score_correction_bias");
  ASSERT_TRUE(a);
  checkpoint v5 = checkpoint::open(d / "v5");
  const auto* b = v5.find("model.layers.1.mlp.gate.e_score_correction_bias");
  ASSERT_TRUE(b);
  EXPECT_EQ(a->info->type, b->info->type) << "passes through in its source dtype";
  EXPECT_EQ(std::memcmp(a->data(), b->data(), a->info->nbytes()), 0);
  // A .gguf holds 1-D tensors as F32, as llama.cpp's converter writes them: widened exactly.
  checkpoint out = checkpoint::open(d / "gguf");
  const auto* g = out.find("blk.1.exp_probs_b.bias");
  ASSERT_TRUE(g);
  ASSERT_EQ(a->info->type, dtype::BF16);
  ASSERT_EQ(g->info->type, dtype::F32);
  ASSERT_EQ(g->info->numel(), a->info->numel());
  for (std::size_t i = 0; i < a->info->numel(); ++i) {
    std::uint16_t h;
    float f;
    std::memcpy(&h, a->data() + 2 * i, 2);
    std::memcpy(&f, g->data() + 4 * i, 4);
    EXPECT_EQ(f, bf16_to_f32(h)) << "element " << i;
  }
  EXPECT_NE(out.find("blk.2.ffn_gate_exps.weight"), nullptr);
  EXPECT_EQ(out.find("blk.2.ffn_gate_exps.weight")->info->shape, (std::vector<std::int64_t>{8, 24, 64}));
}

TEST(ConversionFixtures, ExpertRangeWritesOnlyThoseExperts) {
  test::temp_dir d;
  plan_options o;
  o.experts = {{2, 5}};
  test::convert(test::fixture("qwen3_moe/hf"), d / "v5", "transformers_v5", "", o);
  test::convert(test::fixture("qwen3_moe/hf"), d / "split", "hf", "", o);
  checkpoint v5 = checkpoint::open(d / "v5");
  checkpoint full = checkpoint::open(test::fixture("qwen3_moe/transformers_v5.safetensors"));
  const auto* part = v5.find("model.layers.1.mlp.experts.gate_up_proj");
  const auto* all = full.find("model.layers.1.mlp.experts.gate_up_proj");
  ASSERT_TRUE(part && all);
  EXPECT_EQ(part->info->shape, (std::vector<std::int64_t>{3, 48, 64}));
  std::uint64_t per = 48 * 64 * 2;
  EXPECT_EQ(std::memcmp(part->data(), all->data() + 2 * per, 3 * per), 0);
  checkpoint split = checkpoint::open(d / "split");
  EXPECT_NE(split.find("model.layers.0.mlp.experts.2.gate_proj.weight"), nullptr) << "split keys keep global expert ids";
  EXPECT_EQ(split.find("model.layers.0.mlp.experts.5.gate_proj.weight"), nullptr);
  EXPECT_EQ(split.find("model.layers.0.mlp.experts.1.gate_proj.weight"), nullptr);
}

}  // namespace test_conversion_fixtures
