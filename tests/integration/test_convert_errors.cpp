// SPDX-License-Identifier: Apache-2.0
// Bad input to `moereg convert`: one clear message each, exit 1, no output left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "moereg/base/json.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_convert_errors {
namespace {

// Copy a fixture checkpoint, dropping `drop` and replacing tensors by name.
void rewrite_fixture(const std::string& fixture_dir, const std::string& out_dir, const std::string& drop,
                     const std::string& reshape = "", std::vector<std::int64_t> new_shape = {}) {
  fs::create_directories(out_dir);
  safetensors_file in(fixture_dir + "/model.safetensors");
  std::vector<tensor_spec> specs;
  for (const auto& t : in.tensors()) {
    if (t.name == drop) continue;
    specs.push_back({t.name, t.type, t.name == reshape ? new_shape : t.shape});
  }
  sort_like_safetensors(specs);
  safetensors_writer w(out_dir + "/model.safetensors", specs);
  std::vector<std::byte> zeros(1 << 20);
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    const tensor_info* src = in.find(w.tensors()[i].name);
    if (src->nbytes() == w.tensors()[i].nbytes()) w.write(i, 0, in.data(*src), src->nbytes());
    else w.write(i, 0, zeros.data(), w.tensors()[i].nbytes());
  }
  w.commit();
  fs::copy_file(fixture_dir + "/config.json", out_dir + "/config.json");
}

void edit_config(const std::string& path, const std::string& key, json::value v) {
  json::value c = json::parse_file(path);
  c.set(key, std::move(v));
  std::ofstream(path) << json::dump(c, 2);
}

struct convert_result {
  test::command_result r;
  bool out_exists;
};

convert_result convert(const std::string& args, const std::string& out) {
  auto r = test::run_moereg("convert " + args + " " + out);
  return {r, fs::exists(out)};
}


}  // namespace

TEST(ConvertErrors, MissingExpert) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("qwen3_moe/hf"), d / "in", "model.layers.1.mlp.experts.5.up_proj.weight");
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "missing expert tensor model.layers.1.mlp.experts.5.up_proj.weight");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, ExpertWithWrongShape) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("mixtral/hf"), d / "in", "", "model.layers.0.block_sparse_moe.experts.3.w2.weight", {64, 23});
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "model.layers.0.block_sparse_moe.experts.3.w2.weight: shape [64, 23], expected [64, 24]");
  EXPECT_FALSE(c.out_exists);
}

// A router or selection bias of the wrong shape converted into a complete-looking output that
// routed wrongly (only moe run checked it). An expert slice keeps the whole model's router,
// so a slice still converts.
TEST(ConvertErrors, RouterOrBiasOfTheWrongShape) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("deepseek_v3/hf"), d / "router", "", "model.layers.1.mlp.gate.weight", {7, 64});
  auto c = convert(d / "router" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "model.safetensors: model.layers.1.mlp.gate.weight: shape [7, 64], expected [8, 64] (the router of layer 1: E=8");
  EXPECT_FALSE(c.out_exists);

  rewrite_fixture(test::fixture("deepseek_v3/hf"), d / "bias", "", "model.layers.1.mlp.gate.e_score_correction_bias", {1, 8});
  c = convert(d / "bias" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "model.layers.1.mlp.gate.e_score_correction_bias: shape [1, 8], expected [8] (the router's selection bias of layer 1");
  EXPECT_FALSE(c.out_exists);

  auto slice = test::run_moereg("convert " + test::fixture("deepseek_v3/hf") + " --to hf --experts 2:6 " + (d / "slice"));
  ASSERT_EQ(slice.exit_code, 0) << slice.output;
  c = convert(d / "slice" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 0) << c.r.output;
}

// A config.json of another size makes a problem per layer or tensor; 1200 lines were printed.
TEST(ConvertErrors, ManyProblemsAreCutToTheFirstTwenty) {
  test::temp_dir d;
  auto synth = test::run_moereg("synth " + (d / "in") + " --layers 30");
  ASSERT_EQ(synth.exit_code, 0) << synth.output;
  edit_config(d / "in/config.json", "num_experts", json::value(16));
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "120 problems reading it");  // per layer: three projections missing experts, the router
  EXPECT_HAS(c.r.output, "\n  ... and 100 more");
  EXPECT_LT(std::count(c.r.output.begin(), c.r.output.end(), '\n'), 30) << c.r.output;
  EXPECT_FALSE(c.out_exists);
}

// Two config.json fields for E that disagree: the first the family lists is read, and the
// messages now name the other (it said only "missing expert tensors ... E=16").
TEST(ConvertErrors, DisagreeingSizeFieldsAreNamed) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("qwen3_moe/hf"), d / "in", "");
  edit_config(d / "in/config.json", "num_experts", json::value(16));
  edit_config(d / "in/config.json", "num_local_experts", json::value(8));
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "E = 16 from `num_experts` (also in config.json: `num_local_experts` says 8)");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, ConfigDisagreesWithTensors) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("qwen3_moe/hf"), d / "in", "");
  edit_config(d / "in/config.json", "moe_intermediate_size", json::value(32));
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "I = 32 from `moe_intermediate_size`");
  EXPECT_HAS(c.r.output, "config.json");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, UnknownModelTypeListsFamiliesAndHowToAddOne) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("qwen3_moe/hf"), d / "in", "");
  edit_config(d / "in/config.json", "model_type", json::value("acme_moe"));
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "model_type 'acme_moe'");
  EXPECT_HAS(c.r.output, "qwen3_moe");
  EXPECT_HAS(c.r.output, "deepseek_v3");
  EXPECT_HAS(c.r.output, "docs/plugin-authoring.md");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, UnclaimedTensorIsListedNotDropped) {
  test::temp_dir d;
  rewrite_fixture(test::fixture("qwen3_moe/hf"), d / "in", "");
  // Add a stray tensor by rewriting with an extra name.
  safetensors_file in(d / "in/model.safetensors");
  std::vector<tensor_spec> specs;
  for (const auto& t : in.tensors()) specs.push_back({t.name, t.type, t.shape});
  specs.push_back({"model.layers.0.mlp.mystery.weight", dtype::BF16, {2}});
  sort_like_safetensors(specs);
  {
    safetensors_writer w(d / "in2.safetensors", specs);
    std::uint16_t two[2] = {1, 2};
    for (std::size_t i = 0; i < w.tensors().size(); ++i) {
      const tensor_info* src = in.find(w.tensors()[i].name);
      if (src) w.write(i, 0, in.data(*src), src->nbytes());
      else w.write(i, 0, two, 4);
    }
    w.commit();
  }
  fs::rename(d / "in2.safetensors", d / "in/model.safetensors");
  auto c = convert(d / "in" + " --to transformers_v5", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "model.layers.0.mlp.mystery.weight: not claimed by any rule");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, UnknownTargetLayout) {
  auto c = convert(test::fixture("qwen3_moe/hf") + " --to nonsense", "/tmp/moereg-never-written");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "has no layout 'nonsense'");
  EXPECT_HAS(c.r.output, "transformers_v5");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, YamlTypoInAUserPluginNamesFileAndLine) {
  test::temp_dir d;
  fs::create_directories(d / "plugins/acme_moe");
  std::string yaml = test::read_bytes(std::string(MOEREG_SOURCE_DIR) + "/plugins/qwen3_moe/plugin.yaml");
  auto replace = [&](const std::string& a, const std::string& b) { yaml.replace(yaml.find(a), a.size(), b); };
  replace("name: qwen3_moe", "name: acme_moe");
  replace("model_types: [qwen3_moe]", "model_types: [acme_moe]");
  replace("library: libmoereg_qwen3_moe.so\n", "");
  replace("      gate_up: {key: \"model.layers.{layer}.mlp.experts.gate_up_proj\", fuse: [gate, up]}",
          "      gate_up: {key: \"model.layers.{layer}.mlp.experts.gate_up_proj\", fuze: [gate, up]}");
  test::write_bytes(d / "plugins/acme_moe/plugin.yaml", yaml);
  rewrite_fixture(test::fixture("qwen3_moe/hf"), d / "in", "");
  edit_config(d / "in/config.json", "model_type", json::value("acme_moe"));
  auto c = convert(d / "in" + " --to transformers_v5 --plugin-path " + (d / "plugins"), d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "acme_moe/plugin.yaml:");
  EXPECT_HAS(c.r.output, "unknown key 'fuze'");
  EXPECT_FALSE(c.out_exists);
}

TEST(ConvertErrors, AmbiguousTransposedLayoutAsksForFrom) {
  // qwen3_vl_moe with H == 2I: the hub's transposed [E, H, 2I] gate_up_proj has the same shape as
  // transformers 5's [E, 2I, H]; moereg must not guess.
  test::temp_dir d;
  fs::create_directories(d / "in");
  std::vector<tensor_spec> specs = {
      {"model.language_model.layers.0.mlp.experts.gate_up_proj", dtype::BF16, {2, 48, 48}},
      {"model.language_model.layers.0.mlp.experts.down_proj", dtype::BF16, {2, 24, 48}},
      {"model.language_model.layers.0.mlp.gate.weight", dtype::BF16, {2, 48}}};
  sort_like_safetensors(specs);
  {
    safetensors_writer w(d / "in/model.safetensors", specs);
    std::vector<std::byte> b(1 << 16, std::byte{1});
    for (std::size_t i = 0; i < w.tensors().size(); ++i) w.write(i, 0, b.data(), w.tensors()[i].nbytes());
    w.commit();
  }
  test::write_bytes(d / "in/config.json", R"({"model_type":"qwen3_vl_moe","text_config":{"hidden_size":48,
    "moe_intermediate_size":24,"num_experts":2,"num_experts_per_tok":1,"num_hidden_layers":1}})");
  auto c = convert(d / "in" + " --to grouped", d / "out");
  EXPECT_EQ(c.r.exit_code, 1);
  EXPECT_HAS(c.r.output, "--from");
  EXPECT_FALSE(c.out_exists);
  c = convert(d / "in" + " --to transformers_v5 --from hf", d / "out");
  EXPECT_EQ(c.r.exit_code, 0) << c.r.output;
}

TEST(ConvertCli, DryRunPrintsThePlanAndWritesNothing) {
  test::temp_dir d;
  auto r = test::run_moereg("convert --dry-run " + test::fixture("mixtral/hf") + " " + (d / "out") + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "model.layers.1.mlp.experts.gate_up_proj  BF16 [8, 48, 64]  <- stack experts 0..7 of concat(");
  EXPECT_HAS(r.output, "model.layers.1.mlp.gate.weight  BF16 [8, 64]  <- model.layers.1.block_sparse_moe.gate.weight");
  EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(ConvertCli, JsonSummaryShardsAndRecipe) {
  test::temp_dir d;
  auto r = test::run_moereg("convert --json " + test::fixture("deepseek_v3/hf") + " " + (d / "out") +
                            " --to transformers_v5 --shard-size 100KB");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json::parse(r.output.substr(r.output.find('{')), "convert --json");
  EXPECT_EQ(v.find("from")->as_string(), "hf");
  EXPECT_GT(v.find("shards")->as_int(), 2);
  EXPECT_TRUE(fs::exists(d / "out/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(d / "out/config.json"));
  auto verify = test::run_moereg("verify " + (d / "out") + " " + test::fixture("deepseek_v3/transformers_v5.safetensors"));
  EXPECT_EQ(verify.exit_code, 0) << verify.output;

  test::write_bytes(d / "recipe.yaml", "source: " + test::fixture("qwen3_moe/hf") + "\noutput: " + (d / "r") + "\nto: grouped\n");
  r = test::run_moereg("convert --config " + (d / "recipe.yaml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(d / "r/model.safetensors"));
  test::write_bytes(d / "bad.yaml", "source: x\nto: grouped\nshard_sise: 5GB\n");
  r = test::run_moereg("convert --config " + (d / "bad.yaml"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.output, "bad.yaml:3:1: unknown key 'shard_sise'");
}

}  // namespace test_convert_errors
