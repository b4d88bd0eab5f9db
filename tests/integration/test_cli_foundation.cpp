// SPDX-License-Identifier: Apache-2.0
// The CLI as a user runs it: exit statuses, --help, --json, inspect, verify, demo.
#include <gtest/gtest.h>

#include "moereg/base/json.h"
#include "test_support.h"

using namespace moereg;
using test::run_moereg;

TEST(Cli, HelpAndUsageErrors) {
  auto r = run_moereg("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("inspect"), std::string::npos);
  r = run_moereg("inspect --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--json"), std::string::npos);
  EXPECT_NE(r.output.find("--log-level"), std::string::npos);
  EXPECT_EQ(run_moereg("no-such-command").exit_code, 2);
  EXPECT_EQ(run_moereg("inspect").exit_code, 2);
  EXPECT_EQ(run_moereg("inspect --bogus x").exit_code, 2);
  EXPECT_EQ(run_moereg("verify --log-level loud a b").exit_code, 2);
}

TEST(Cli, InspectJson) {
  auto r = run_moereg("inspect --json " + test::fixture("qwen3_moe/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json::parse(r.output, "inspect output");
  EXPECT_EQ(v.find("tensor_count")->as_int(), 69);
  EXPECT_EQ(v.find("total_bytes")->as_int(), 232192);
  bool folded = false;
  for (const auto& g : v.find("groups")->as_array())
    folded |= g.find("pattern")->as_string() == "model.layers.{0,1}.mlp.experts.{0..7}.gate_proj.weight" &&
              g.find("count")->as_int() == 16;
  EXPECT_TRUE(folded) << r.output;
}

TEST(Cli, InspectTextAndBadInput) {
  auto r = run_moereg("inspect " + test::fixture("deepseek_v3_fp8/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("F8_E4M3 x120"), std::string::npos) << r.output;
  r = run_moereg("inspect /nonexistent");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent"), std::string::npos);
}

TEST(Cli, VerifyEqualAndDifferent) {
  auto r = run_moereg("verify " + test::fixture("qwen3_5_moe/hub") + " " + test::fixture("qwen3_5_moe/transformers_v5.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_moereg("verify --json " + test::fixture("qwen3_moe/hf") + " " + test::fixture("qwen3_moe/transformers_v5.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  json::value v = json::parse(r.output, "verify output");
  EXPECT_FALSE(v.find("equal")->as_bool());
  bool missing = false;
  for (const auto& d : v.find("differences")->as_array())
    missing |= d.find("kind")->as_string() == "missing_in_b" &&
               d.find("name")->as_string() == "model.layers.0.mlp.experts.0.gate_proj.weight";
  EXPECT_TRUE(missing);
}

TEST(Cli, VerifyReportsFirstDifferingElement) {
  test::temp_dir d;
  std::string h = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  float a[3] = {1, 2, 3}, b[3] = {1, 2, 4};
  test::write_bytes(d / "a.safetensors", test::safetensors_image(h, std::string(reinterpret_cast<char*>(a), 12)));
  test::write_bytes(d / "b.safetensors", test::safetensors_image(h, std::string(reinterpret_cast<char*>(b), 12)));
  auto r = run_moereg("verify " + (d / "a.safetensors") + " " + (d / "b.safetensors"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("first difference at element 2: 3 vs 4"), std::string::npos) << r.output;
}

TEST(Cli, Demo) {
  auto r = run_moereg("demo");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("equal"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("through layouts transformers_v5 and hf"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("backend cpu"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("DIFFERENT"), std::string::npos) << r.output;
}
