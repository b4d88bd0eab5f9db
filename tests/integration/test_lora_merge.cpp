// SPDX-License-Identifier: Apache-2.0
// `moereg lora merge`: PEFT's merge_and_unload bit for bit on the fixtures, in any layout,
// through the convert job (shards, atomic finish).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "conversion_support.h"
#include "lora_support.h"
#include "moereg/app/lora.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/lora/lora_merge.h"
#include "moereg/synth/synthetic_checkpoint.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_lora_merge {
namespace {

const char* families[] = {"qwen3_moe", "mixtral", "deepseek_v3"};


float bf(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The merged checkpoint equals PEFT's state_dict tensor for tensor. One known exception
// (fixtures README): transformers 5.17 holds deepseek_v3's all-zero e_score_correction_bias in
// F32 where the checkpoint stores BF16; a conversion passes it through in its source dtype.
void expect_peft_merge(const std::string& got, const std::string& peft) {
  checkpoint a = checkpoint::open(got, {false}), b = checkpoint::open(peft, {false});
  comparison c = compare_tensors(test::refs(a), test::refs(b));
  EXPECT_EQ(c.compared, b.tensors().size());
  for (const auto& diff : c.differences) {
    bool bias = diff.kind == "dtype" && diff.name.find("e_score_correction_bias") != std::string::npos;
    EXPECT_TRUE(bias) << diff.kind << " " << diff.name << ": " << diff.detail;
    if (!bias) continue;
    const auto* ta = a.find(diff.name);
    const auto* tb = b.find(diff.name);
    for (std::uint64_t i = 0; i < ta->info->numel(); ++i) {
      float va = bf(reinterpret_cast<const std::uint16_t*>(ta->data())[i]), vb;
      std::memcpy(&vb, tb->data() + 4 * i, 4);
      EXPECT_EQ(va, vb) << diff.name;
    }
  }
}

}  // namespace

TEST(LoraMerge, FixturesAsTransformersV5EqualPeftMerge) {
  for (const char* f : families)
    for (const char* form : {"peft_param_wrapper", "peft_per_expert"}) {
      SCOPED_TRACE(std::string(f) + " " + form);
      test::temp_dir d;
      auto r = test::run_moereg("lora merge " + test::fixture(std::string(f) + "/hf") + " " +
                                test::fixture(std::string("lora/") + f + "/" + form) + " " + (d / "out") + " --to transformers_v5");
      ASSERT_EQ(r.exit_code, 0) << r.output;
      expect_peft_merge(d / "out", test::fixture(std::string("lora/") + f + "/merged_transformers_v5.safetensors"));
    }
}

TEST(LoraMerge, FixturesAsHfVerifyThroughTheLayouts) {
  for (const char* f : families) {
    SCOPED_TRACE(f);
    test::temp_dir d;
    auto r = test::run_moereg("lora merge " + test::fixture(std::string(f) + "/hf") + " " + test::fixture(std::string("lora/") + f + "/peft_per_expert") +
                              " " + (d / "hf") + " --shard-size 20KB --threads 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(d / "hf/model.safetensors.index.json"));  // sharded through convert's writer
    test::convert(d / "hf", d / "v5", "transformers_v5");
    expect_peft_merge(d / "v5", test::fixture(std::string("lora/") + f + "/merged_transformers_v5.safetensors"));
  }
}

TEST(LoraMerge, SingleRoundingDiffersFromPeftOnExpertsOnly) {
  test::temp_dir d;
  const std::string base = test::fixture("qwen3_moe/hf"), ad = test::fixture("lora/qwen3_moe/peft_param_wrapper");
  ASSERT_EQ(test::run_moereg("lora merge " + base + " " + ad + " " + (d / "peft") + " --to transformers_v5").exit_code, 0);
  auto r = test::run_moereg("lora merge " + base + " " + ad + " " + (d / "single") + " --to transformers_v5 --rounding single");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  checkpoint p = checkpoint::open(d / "peft", {false}), s = checkpoint::open(d / "single", {false}), b = checkpoint::open(test::fixture("qwen3_moe/transformers_v5.safetensors"), {false});
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.experts.gate_up_proj"}) {
    const auto* tp = p.find(name);
    const auto* ts = s.find(name);
    ASSERT_TRUE(tp && ts);
    std::size_t n = tp->info->nbytes() / 2, differ = 0;
    const auto* a = reinterpret_cast<const std::uint16_t*>(tp->data());
    const auto* c = reinterpret_cast<const std::uint16_t*>(ts->data());
    for (std::size_t i = 0; i < n; ++i) differ += a[i] != c[i];
    if (std::string(name).find("experts") != std::string::npos) EXPECT_GT(differ, n / 20) << name;  // PEFT rounds twice there
    else EXPECT_EQ(differ, 0u) << name;                                                          // and once elsewhere
  }
  (void)b;
}

TEST(LoraMerge, ConstructedAdapterOnSyntheticBase) {
  // Other shapes and a rank of 5: merged = bf16(w + bf16(scale * sum_j B_j A_j)), checked
  // against the canonical factors directly.
  test::temp_dir d;
  synthetic_dims sd;
  sd.layers = 2;
  sd.experts = 4;
  sd.hidden = 48;
  sd.intermediate = 20;
  write_synthetic_qwen3_moe(d / "base", sd, {});
  auto c = test::random_lora(4, 48, 20, 5, {0, 1}, 21);
  test::write_param_wrapper(d / "pw", c, false, "0.21.0");
  auto r = test::run_moereg("lora merge " + (d / "base") + " " + (d / "pw") + " " + (d / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  checkpoint base = checkpoint::open(d / "base"), out = checkpoint::open(d / "out");
  const float s = static_cast<float>(2.0 * 5 / 5);
  for (int e : {0, 3})
    for (int p = 0; p < 3; ++p) {
      const char* names[] = {"gate_proj", "up_proj", "down_proj"};
      std::string k = "model.layers.1.mlp.experts." + std::to_string(e) + "." + names[p] + ".weight";
      const auto* tb = base.find(k);
      const auto* to = out.find(k);
      ASSERT_TRUE(tb && to) << k;
      std::int64_t rows = tb->info->shape[0], cols = tb->info->shape[1];
      const auto* wb = reinterpret_cast<const std::uint16_t*>(tb->data());
      const auto* wo = reinterpret_cast<const std::uint16_t*>(to->data());
      const auto& A = c.A.at(1)[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
      const auto& B = c.B.at(1)[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
      std::size_t changed = 0;
      for (std::int64_t o = 0; o < rows; ++o)
        for (std::int64_t i = 0; i < cols; ++i) {
          float acc = B[static_cast<std::size_t>(o * 5)] * A[static_cast<std::size_t>(i)];
          for (int j = 1; j < 5; ++j) acc += B[static_cast<std::size_t>(o * 5 + j)] * A[static_cast<std::size_t>(j * cols + i)];
          auto round = [](float x) {
            std::uint32_t u;
            std::memcpy(&u, &x, 4);
            u += 0x7fffu + ((u >> 16) & 1u);
            return static_cast<std::uint16_t>(u >> 16);
          };
          std::uint16_t want = round(bf(wb[o * cols + i]) + bf(round(acc * s)));
          ASSERT_EQ(wo[o * cols + i], want) << k << " " << o << "," << i;
          changed += wo[o * cols + i] != wb[o * cols + i];
        }
      EXPECT_GT(changed, static_cast<std::size_t>(rows * cols / 2)) << k;
    }
  // Layer 0's attention passes through untouched; --experts writes only some experts.
  auto r2 = test::run_moereg("lora merge " + (d / "base") + " " + (d / "pw") + " " + (d / "part") + " --experts 1:3 --to transformers_v5");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_EQ(checkpoint::open(d / "part").find("model.layers.0.mlp.experts.gate_up_proj")->info->shape[0], 2);
}

TEST(LoraMerge, BadInput) {
  test::temp_dir d;
  // An adapter of another model.
  auto r = test::run_moereg("lora merge " + test::fixture("mixtral/hf") + " " + test::fixture("lora/qwen3_moe/peft_param_wrapper") + " " + (d / "o1"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "another model");
  EXPECT_FALSE(fs::exists(d / "o1"));
  // Unknown rounding: a usage error.
  r = test::run_moereg("lora merge " + test::fixture("qwen3_moe/hf") + " " + test::fixture("lora/qwen3_moe/peft_param_wrapper") + " " + (d / "o2") + " --rounding half");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--rounding 'half'");
  // An adapted module the base lacks: nothing is written.
  test::write_qwen3_moe_config(d / "cfg", 8, 64, 24, 2);
  r = test::run_moereg("lora merge " + test::fixture("qwen3_vl_moe/hf") + " " + test::fixture("lora/qwen3_moe/peft_param_wrapper") + " " + (d / "o3"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(d / "o3/model.safetensors"));
  // A lora_alpha whose delta overflows the weights: a checkpoint of infinities was written with exit 0.
  fs::copy(test::fixture("lora/qwen3_moe/peft_per_expert"), d / "huge", fs::copy_options::recursive);
  json::value cfg = json::parse_file(d / "huge/adapter_config.json");
  cfg.set("lora_alpha", json::value(1e308));
  std::ofstream(d / "huge/adapter_config.json") << json::dump(cfg, 2);
  r = test::run_moereg("lora merge " + test::fixture("qwen3_moe/hf") + " " + (d / "huge") + " " + (d / "o4"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "adapter_model.safetensors: merging its pair on model.layers.");
  EXPECT_HAS(r.output, "a finite weight would become infinite or NaN");
  EXPECT_FALSE(fs::exists(d / "o4")) << "a failed merge leaves nothing that looks like a checkpoint";
}

// The adapter is a source of the merge: a resume after its lora_alpha changed merged the
// shards left with the new value beside those done with the old, and said it resumed.
TEST(LoraMerge, ResumeRefusesAChangedAdapter) {
  test::temp_dir d;
  const std::string base = d / "base", ad = d / "base-lora", out = d / "out";
  auto r = test::run_moereg("synth " + base + " --layers 4 --lora 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  app::lora_merge_request req;
  req.job.source = base;
  req.job.output = out;
  req.job.shard_size = 100'000;
  req.job.fault.abandon_after_shards = 1;
  req.adapter = ad;
  auto first = app::merge_lora(req);
  ASSERT_FALSE(first.ok());
  ASSERT_EQ(first.error().kind, app::error_kind::cancelled) << first.error().message;

  // Resumed with another rounding, or as a plain conversion: the message names what differs
  // (it listed "source, --to, --experts, --dtype, --shard-size" as what might).
  r = test::run_moereg("lora merge " + base + " " + ad + " " + out + " --shard-size 100KB --resume --rounding single");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "--rounding was peft, now single");
  r = test::run_moereg("convert " + base + " " + out + " --to hf --shard-size 100KB --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "adapter was ");
  EXPECT_HAS(r.output, ", now none");

  const std::string cfg_path = ad + "/adapter_config.json", original = test::read_bytes(cfg_path);
  json::value cfg = json::parse(original, "adapter_config.json");
  cfg.set("lora_alpha", json::value(json::parse_file(cfg_path).find("lora_alpha")->as_double() * 4));
  std::ofstream(cfg_path) << json::dump(cfg, 2);
  const std::string resume = "lora merge " + base + " " + ad + " " + out + " --shard-size 100KB --resume";
  r = test::run_moereg(resume);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "adapter_config.json: the source changed since the interrupted conversion");
}

TEST(LoraCli, InspectAndConvert) {
  test::temp_dir d;
  auto r = test::run_moereg("lora inspect " + test::fixture("lora/mixtral/peft_param_wrapper"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "form peft_param_wrapper");
  EXPECT_HAS(r.output, "peft_version 0.21.0");
  EXPECT_HAS(r.output, "family mixtral");
  EXPECT_HAS(r.output, "self_attn.q_proj r=4");
  // A --base that does not exist is named as given (was "/config.json: missing").
  r = test::run_moereg("lora inspect " + test::fixture("lora/mixtral/peft_param_wrapper") + " --base " + (d / "nowhere"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "nowhere") + ": no such file or directory");
  r = test::run_moereg("lora convert " + test::fixture("lora/mixtral/peft_param_wrapper") + " " + (d / "pe") + " --to peft_per_expert --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  test::expect_same_tensors(d / "pe/adapter_model.safetensors", test::fixture("lora/mixtral/peft_per_expert/adapter_model.safetensors"));
  r = test::run_moereg("lora convert " + test::fixture("lora/mixtral/peft_param_wrapper") + " " + (d / "x") + " --to gguf");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  // No local base and no --base.
  fs::create_directories(d / "lonely");
  fs::copy(test::fixture("lora/mixtral/peft_param_wrapper/adapter_model.safetensors"), d / "lonely/adapter_model.safetensors");
  fs::copy(test::fixture("lora/mixtral/peft_param_wrapper/adapter_config.json"), d / "lonely/adapter_config.json");
  r = test::run_moereg("lora inspect " + (d / "lonely"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--base");
  r = test::run_moereg("lora inspect " + (d / "lonely") + " --base " + test::fixture("mixtral/hf") + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "\"orientation\": \"peft>=0.19.1\"");
  // An adapter path that is a file, or nothing, is named as such (not read as a directory).
  test::write_bytes(d / "a-file", "x");
  r = test::run_moereg("lora inspect " + (d / "a-file"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "a-file") + ": not a directory (expected an adapter directory");
  r = test::run_moereg("lora convert " + (d / "nothing") + " " + (d / "out") + " --to peft_per_expert");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "nothing") + ": no such directory (expected an adapter directory");
  EXPECT_FALSE(fs::exists(d / "out"));
}

}  // namespace test_lora_merge
