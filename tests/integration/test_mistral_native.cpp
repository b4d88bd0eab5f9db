// SPDX-License-Identifier: Apache-2.0
// The mistral plugin: native params.json + consolidated.safetensors, through its hooks.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

TEST(MistralNative, MixtralToNativeAndBackIsBitExact) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture("mixtral/hf") + " " + (d / "native") + " --to mistral");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(d / "native/params.json"));
  EXPECT_TRUE(fs::exists(d / "native/consolidated.safetensors"));
  EXPECT_FALSE(fs::exists(d / "native/config.json"));
  json::value params = json::parse_file(d / "native/params.json");
  EXPECT_EQ(params.find("dim")->as_int(), 64);
  EXPECT_EQ(params.find_path("moe.num_experts")->as_int(), 8);

  // wq rows are interleaved per head natively: native row 2j+1 of head 0 is transformers row hd/2 + j.
  checkpoint hf = checkpoint::open(test::fixture("mixtral/hf"));
  checkpoint native = checkpoint::open(d / "native", {false});
  const auto* q = hf.find("model.layers.0.self_attn.q_proj.weight");
  const auto* wq = native.find("layers.0.attention.wq.weight");
  ASSERT_TRUE(q && wq);
  const std::size_t row = 64 * 2, hd = 16;
  EXPECT_EQ(std::memcmp(wq->data() + 1 * row, q->data() + (hd / 2) * row, row), 0);
  EXPECT_EQ(std::memcmp(wq->data() + 2 * row, q->data() + 1 * row, row), 0);
  EXPECT_NE(std::memcmp(wq->data(), q->data(), wq->info->nbytes()), 0);

  r = test::run_moereg("convert " + (d / "native") + " " + (d / "back") + " --to hf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("verify " + (d / "back") + " " + test::fixture("mixtral/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("convert " + (d / "native") + " " + (d / "v5") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("verify " + (d / "v5") + " " + test::fixture("mixtral/transformers_v5.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(MistralNative, LargeThreeFormRoundTripsThroughDeepseekV3) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture("deepseek_v3/hf") + " " + (d / "native") + " --to mistral");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  checkpoint native = checkpoint::open(d / "native", {false});
  EXPECT_NE(native.find("layers.1.experts.7.w2.weight"), nullptr);
  EXPECT_NE(native.find("layers.1.shared_experts.w1.weight"), nullptr);
  EXPECT_NE(native.find("layers.0.attention.wkv_a_with_mqa.weight"), nullptr);
  r = test::run_moereg("convert " + (d / "native") + " " + (d / "v5") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("verify " + (d / "v5") + " " + test::fixture("deepseek_v3/transformers_v5.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(MistralNative, HookErrorIsReportedWithNoOutputLeft) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture("mixtral/hf") + " " + (d / "native") + " --to mistral");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  test::write_bytes(d / "native/params.json", R"({"dim": 64, "n_layers": 2, "n_heads": 4})");
  r = test::run_moereg("convert " + (d / "native") + " " + (d / "out") + " --to hf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.output, "plugin 'mistral'");
  EXPECT_HAS(r.output, "params.json");
  EXPECT_HAS(r.output, "no \"moe\" section");
  EXPECT_FALSE(fs::exists(d / "out"));
}
