// SPDX-License-Identifier: Apache-2.0
// Adapter conversions between the three forms, exact, on the fixture adapters and on adapters
// built here with other shapes, ranks, seeds and both PEFT orientations.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "conversion_support.h"
#include "lora_support.h"
#include "moereg/base/error.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_lora_convert {
namespace {

const char* families[] = {"qwen3_moe", "mixtral", "deepseek_v3"};

std::string weights(const std::string& dir) { return dir + "/adapter_model.safetensors"; }


}  // namespace

TEST(LoraConvert, FixtureParamWrapperToPerExpertIsTheFixture) {
  for (const char* f : families) {
    SCOPED_TRACE(f);
    auto b = test::lora_base_of(test::fixture(std::string(f) + "/hf"));
    std::string src = test::fixture(std::string("lora/") + f + "/peft_param_wrapper");
    lora_adapter a = test::read_adapter(src, b);
    EXPECT_EQ(a.form, lora_form::peft_param_wrapper);
    EXPECT_EQ(a.orientation, lora_orientation::peft_0_19_1);
    EXPECT_TRUE(a.gate_up_share_A());
    test::temp_dir d;
    test::convert_adapter(src, d / "pe", lora_form::peft_per_expert, b);
    test::expect_same_tensors(weights(d / "pe"), weights(test::fixture(std::string("lora/") + f + "/peft_per_expert")));
    // The config lists what PEFT's legacy form targets.
    json::value want = json::parse_file(test::fixture(std::string("lora/") + f + "/peft_per_expert/adapter_config.json"));
    json::value got = json::parse_file(d / "pe/adapter_config.json");
    EXPECT_EQ(json::dump(*got.find("target_modules")), json::dump(*want.find("target_modules")));
    EXPECT_TRUE(got.find("target_parameters")->is_null());
  }
}

TEST(LoraConvert, FixturePerExpertRoundTrips) {
  for (const char* f : families) {
    SCOPED_TRACE(f);
    auto b = test::lora_base_of(test::fixture(std::string(f) + "/hf"));
    std::string pe = test::fixture(std::string("lora/") + f + "/peft_per_expert");
    std::string pw = test::fixture(std::string("lora/") + f + "/peft_param_wrapper");
    test::temp_dir d;
    test::convert_adapter(pe, d / "pw", lora_form::peft_param_wrapper, b);
    // Gate and up carry the same A: the fused rank stays r, and the result is PEFT's own file.
    test::expect_same_tensors(weights(d / "pw"), weights(pw));
    json::value cfg = json::parse_file(d / "pw/adapter_config.json");
    EXPECT_EQ(json::dump(*cfg.find("target_parameters")), json::dump(*json::parse_file(pw + "/adapter_config.json").find("target_parameters")));
    EXPECT_EQ(cfg.find("r")->as_int(), 4);
    test::convert_adapter(d / "pw", d / "pe", lora_form::peft_per_expert, b);
    test::expect_same_tensors(weights(d / "pe"), weights(pe));
  }
}

// A slice of experts is numbered from 0, as `convert --experts` numbers the base slice it
// applies to (per-expert keys kept their global numbers until session 26).
TEST(LoraConvert, AnExpertSliceIsNumberedFromZero) {
  test::temp_dir d;
  const std::string pe = test::fixture("lora/qwen3_moe/peft_per_expert");
  auto r = test::run_moereg("lora convert " + pe + " " + (d / "slice") + " --to peft_per_expert --experts 2:4 --base " +
                            test::fixture("qwen3_moe/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  safetensors_file got(weights(d / "slice")), full(weights(pe));
  const std::string stem = "base_model.model.model.layers.0.mlp.experts.";
  for (const char* leaf : {".gate_proj.lora_A.weight", ".down_proj.lora_B.weight"}) {
    SCOPED_TRACE(leaf);
    const tensor_info* first = got.find(stem + "0" + leaf);
    const tensor_info* src = full.find(stem + "2" + leaf);
    ASSERT_TRUE(first && src);
    EXPECT_EQ(std::memcmp(got.data(*first), full.data(*src), src->nbytes()), 0) << "slice expert 0 is expert 2";
    EXPECT_NE(got.find(stem + "1" + leaf), nullptr);
    EXPECT_EQ(got.find(stem + "2" + leaf), nullptr);
  }
}

TEST(LoraConvert, FixtureNemoGroupedRoundTrips) {
  for (const char* f : families) {
    SCOPED_TRACE(f);
    auto b = test::lora_base_of(test::fixture(std::string(f) + "/hf"));
    for (const char* form : {"peft_per_expert", "peft_param_wrapper"}) {
      SCOPED_TRACE(form);
      std::string src = test::fixture(std::string("lora/") + f + "/" + form);
      test::temp_dir d;
      test::convert_adapter(src, d / "nemo", lora_form::nemo_grouped, b);
      lora_adapter n = test::read_adapter(d / "nemo", b);
      EXPECT_EQ(n.form, lora_form::nemo_grouped);
      test::convert_adapter(d / "nemo", d / "back", *parse_lora_form(form), b);
      test::expect_same_tensors(weights(d / "back"), weights(src));
    }
  }
}

TEST(LoraConvert, NemoTensorsFollowTheSeedsMapping) {
  // lora_gate_and_up_A [E, H, r] is A_e transposed; lora_down_B [E, r, H] is B_e transposed.
  auto b = test::lora_base_of(test::fixture("qwen3_moe/hf"));
  test::temp_dir d;
  test::convert_adapter(test::fixture("lora/qwen3_moe/peft_per_expert"), d / "nemo", lora_form::nemo_grouped, b);
  safetensors_file n(weights(d / "nemo"));
  safetensors_file pe(weights(test::fixture("lora/qwen3_moe/peft_per_expert")));
  const tensor_info* gA = n.find("model.layers.1.mlp.experts.lora_gate_and_up_A");
  const tensor_info* dB = n.find("model.layers.1.mlp.experts.lora_down_B");
  ASSERT_TRUE(gA && dB);
  EXPECT_EQ(gA->shape, (std::vector<std::int64_t>{8, 64, 4}));
  EXPECT_EQ(dB->shape, (std::vector<std::int64_t>{8, 4, 64}));
  const float* nga = reinterpret_cast<const float*>(n.data(*gA));
  const float* ndb = reinterpret_cast<const float*>(n.data(*dB));
  const float* pga = reinterpret_cast<const float*>(pe.data(*pe.find("base_model.model.model.layers.1.mlp.experts.5.gate_proj.lora_A.weight")));
  const float* pdb = reinterpret_cast<const float*>(pe.data(*pe.find("base_model.model.model.layers.1.mlp.experts.5.down_proj.lora_B.weight")));
  for (int j = 0; j < 4; ++j)
    for (int h = 0; h < 64; ++h) {
      EXPECT_EQ(nga[5 * 64 * 4 + h * 4 + j], pga[j * 64 + h]);
      EXPECT_EQ(ndb[5 * 4 * 64 + j * 64 + h], pdb[h * 4 + j]);
    }
}

// Other shapes, ranks and seeds; both orientations; 2I == H where only peft_version tells.
TEST(LoraConvert, ConstructedAdaptersBothOrientations) {
  struct shape_case {
    std::int64_t E, H, I;
    int r;
    unsigned seed;
  };
  for (shape_case s : {shape_case{4, 32, 16, 3, 7}, shape_case{6, 40, 12, 5, 8}, shape_case{3, 24, 24, 2, 9}}) {
    SCOPED_TRACE(s.H);
    test::temp_dir d;
    test::write_qwen3_moe_config(d / "base", s.E, s.H, s.I, 3);
    auto b = test::lora_base_of(d / "base");
    auto c = test::random_lora(s.E, s.H, s.I, s.r, {0, 2}, s.seed);
    test::write_per_expert(d / "pe", c);
    test::write_param_wrapper(d / "new", c, false, "0.21.0");
    test::write_param_wrapper(d / "old", c, true, "0.19.0");
    EXPECT_EQ(test::read_adapter(d / "old", b).orientation, lora_orientation::peft_0_18);
    for (const char* src : {"new", "old"}) {
      SCOPED_TRACE(src);
      test::convert_adapter(d / src, d / (std::string(src) + "_pe"), lora_form::peft_per_expert, b);
      test::expect_same_tensors(weights(d / (std::string(src) + "_pe")), weights(d / "pe"));
    }
    // Written ParamWrapper is always the >= 0.19.1 orientation: the "new" file, exactly.
    test::convert_adapter(d / "old", d / "old_pw", lora_form::peft_param_wrapper, b);
    test::expect_same_tensors(weights(d / "old_pw"), weights(d / "new"));
    test::convert_adapter(d / "pe", d / "nemo", lora_form::nemo_grouped, b);
    test::convert_adapter(d / "nemo", d / "nemo_pe", lora_form::peft_per_expert, b);
    test::expect_same_tensors(weights(d / "nemo_pe"), weights(d / "pe"));
  }
}

TEST(LoraConvert, TwoIEqualsHNeedsPeftVersion) {
  test::temp_dir d;
  test::write_qwen3_moe_config(d / "base", 4, 32, 16, 2);  // 2I == H: gate_up factors fit both orientations
  auto b = test::lora_base_of(d / "base");
  auto c = test::random_lora(4, 32, 16, 2, {0, 1}, 3);
  test::write_per_expert(d / "pe", c);
  c.layers = {0, 1};
  // Only gate_up: down's shapes (I != H) would otherwise tell the orientation.
  test::write_param_wrapper(d / "old", c, true, "");
  {
    // Drop the down pair: keep only gate_up so that shapes are ambiguous.
    safetensors_file f(weights(d / "old"));
    std::map<std::string, test::f32_tensor> keep;
    for (const auto& t : f.tensors())
      if (auto at = t.name.find("base_layer."); at != std::string::npos) {
        // The only target: PEFT nests nothing, so the keys lose their base_layer.
        const float* p = reinterpret_cast<const float*>(f.data(t));
        keep[t.name.substr(0, at) + t.name.substr(at + 11)] = {t.shape, std::vector<float>(p, p + t.numel())};
      }
    fs::remove(weights(d / "old"));
    test::write_f32_safetensors(weights(d / "old"), keep);
    std::ofstream(d / "old/adapter_config.json")
        << "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": null, \"target_parameters\": [\"mlp.experts.gate_up_proj\"]}";
  }
  try {
    test::read_adapter(d / "old", b);
    FAIL() << "an adapter whose orientation shapes cannot tell was read";
  } catch (const error& e) {
    EXPECT_HAS(e.what(), "--peft-version");
    EXPECT_HAS(e.what(), "adapter_config.json");
  }
  lora_adapter old = test::read_adapter(d / "old", b, "0.19.0");
  EXPECT_EQ(old.orientation, lora_orientation::peft_0_18);
  lora_adapter as_new = test::read_adapter(d / "old", b, "0.21.0");
  EXPECT_EQ(as_new.orientation, lora_orientation::peft_0_19_1);
  // With the right version, the gate pairs are the canonical ones (the other reading differs).
  test::convert_adapter(d / "old", d / "old_pe", lora_form::peft_per_expert, b, "0.19.0");
  safetensors_file got(weights(d / "old_pe")), want(weights(d / "pe"));
  for (const char* k : {"base_model.model.model.layers.1.mlp.experts.3.gate_proj.lora_A.weight",
                        "base_model.model.model.layers.1.mlp.experts.3.up_proj.lora_B.weight"}) {
    const tensor_info* g = got.find(k);
    const tensor_info* w = want.find(k);
    ASSERT_TRUE(g && w) << k;
    EXPECT_EQ(g->shape, w->shape);
    EXPECT_EQ(0, std::memcmp(got.data(*g), want.data(*w), w->nbytes())) << k;
  }
  test::temp_dir d2;
  test::convert_adapter(d / "old", d2 / "wrong", lora_form::peft_per_expert, b, "0.21.0");
  safetensors_file wrong(weights(d2 / "wrong"));
  const char* k = "base_model.model.model.layers.1.mlp.experts.3.gate_proj.lora_A.weight";
  EXPECT_NE(0, std::memcmp(wrong.data(*wrong.find(k)), want.data(*want.find(k)), want.find(k)->nbytes()));
}

TEST(LoraConvert, DifferentGateAndUpAGivesBlockDiagonalRank2r) {
  test::temp_dir d;
  test::write_qwen3_moe_config(d / "base", 4, 32, 12, 1);
  auto b = test::lora_base_of(d / "base");
  auto c = test::random_lora(4, 32, 12, 3, {0}, 11, false);
  test::write_per_expert(d / "pe", c);
  lora_adapter a = test::read_adapter(d / "pe", b);
  EXPECT_FALSE(a.gate_up_share_A());
  for (lora_form f : {lora_form::peft_param_wrapper, lora_form::nemo_grouped}) {
    SCOPED_TRACE(lora_form_name(f));
    test::temp_dir o;
    test::convert_adapter(d / "pe", o / "fused", f, b);
    json::value cfg = json::parse_file(o / "fused/adapter_config.json");
    lora_adapter fused = test::read_adapter(o / "fused", b);
    // gate_up has rank 6 = 2r; the scale alpha/r is kept. NeMo's grouped module has one rank,
    // so down is padded to 6; a ParamWrapper keeps down at 3, and the rank PEFT reads for
    // gate_up is keyed by module and parameter, as PEFT matches target_parameters.
    ASSERT_TRUE(fused.experts.at(0)[1][0].has_value());
    EXPECT_EQ(fused.experts.at(0)[1][0]->rank, 6);
    EXPECT_EQ(fused.experts.at(0)[1][0]->scale(), 2.0);
    EXPECT_EQ(fused.experts.at(0)[1][2]->rank, f == lora_form::nemo_grouped ? 6 : 3);
    EXPECT_EQ(fused.experts.at(0)[1][2]->scale(), 2.0);
    if (f == lora_form::peft_param_wrapper) {
      const json::value& rp = *cfg.find("rank_pattern");
      ASSERT_TRUE(rp.is_object()) << json::dump(cfg);
      ASSERT_EQ(rp.as_object().size(), 1u) << json::dump(rp);
      EXPECT_EQ(rp.as_object()[0].first, "model.layers.0.mlp.experts.gate_up_proj");
      EXPECT_EQ(rp.as_object()[0].second.as_int(), 6);
      EXPECT_EQ(cfg.find("r")->as_int(), 3);
    }
    // Back to per-expert: the pairs are rank 6 with zero blocks, and their products are the
    // original ones exactly (the zero blocks add exact zeros).
    test::convert_adapter(o / "fused", o / "pe", lora_form::peft_per_expert, b);
    lora_adapter back = test::read_adapter(o / "pe", b);
    for (int p = 0; p < 3; ++p) {
      const auto& pr = *back.experts.at(0)[2][static_cast<std::size_t>(p)];
      const auto& A0 = c.A.at(0)[2][static_cast<std::size_t>(p)];
      const auto& B0 = c.B.at(0)[2][static_cast<std::size_t>(p)];
      std::int64_t in = pr.A.cols, out = pr.B.rows;
      for (std::int64_t oo = 0; oo < out; ++oo)
        for (std::int64_t i = 0; i < in; ++i) {
          float want = 0, got = 0;
          for (int j = 0; j < 3; ++j) want += B0[static_cast<std::size_t>(oo * 3 + j)] * A0[static_cast<std::size_t>(j * in + i)];
          for (std::int64_t j = 0; j < pr.A.rows; ++j) {
            float bv, av;
            std::memcpy(&bv, pr.B.at(oo, j), 4);
            std::memcpy(&av, pr.A.at(j, i), 4);
            if (bv != 0 && av != 0) got += bv * av;
          }
          ASSERT_EQ(want, got) << "piece " << p << " " << oo << "," << i;
        }
    }
  }
}

// Bad input: one clear message naming the file and tensor each.
class LoraBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_qwen3_moe_config(d / "base", 4, 32, 16, 2);
    b = test::lora_base_of(d / "base");
    c = test::random_lora(4, 32, 16, 2, {0, 1}, 5);
  }
  std::string read_error(const std::string& dir, const std::string& version = "") {
    try {
      test::read_adapter(dir, b, version);
    } catch (const error& e) {
      return e.what();
    }
    return "(no error)";
  }
  void drop_tensor(const std::string& dir, const std::string& name, std::vector<std::int64_t> reshape = {}) {
    safetensors_file f(weights(dir));
    std::map<std::string, test::f32_tensor> keep;
    for (const auto& t : f.tensors()) {
      const float* p = reinterpret_cast<const float*>(f.data(t));
      if (t.name == name && reshape.empty()) continue;
      if (t.name == name) keep[t.name] = {reshape, std::vector<float>(p, p + t.numel())};
      else keep[t.name] = {t.shape, std::vector<float>(p, p + t.numel())};
    }
    fs::remove(weights(dir));
    test::write_f32_safetensors(weights(dir), keep);
  }
  void edit(const std::string& dir, const std::string& key, const std::string& json_value) {
    json::value v = json::parse_file(dir + "/adapter_config.json");
    v.set(key, json::parse(json_value, "test"));
    std::ofstream(dir + "/adapter_config.json") << json::dump(v, 2);
  }
  test::temp_dir d;
  test::lora_base b;
  test::canonical_lora c;
};

TEST_F(LoraBadInput, MissingFactor) {
  test::write_per_expert(d / "a", c);
  drop_tensor(d / "a", "base_model.model.model.layers.1.mlp.experts.2.up_proj.lora_B.weight");
  std::string m = read_error(d / "a");
  EXPECT_HAS(m, "adapter_model.safetensors");
  EXPECT_HAS(m, "layers.1.mlp.experts.2.up_proj.lora_B.weight missing");
}

// A NaN or infinite factor was merged into the weights (NaN model, exit 0).
TEST_F(LoraBadInput, NonFiniteFactorIsRefused) {
  for (const float bad : {std::nanf(""), INFINITY}) {
    test::write_per_expert(d / "a", c);
    const std::string name = "base_model.model.model.layers.1.mlp.experts.2.up_proj.lora_B.weight";
    safetensors_file f(weights(d / "a"));
    std::map<std::string, test::f32_tensor> keep;
    for (const auto& t : f.tensors()) {
      const float* p = reinterpret_cast<const float*>(f.data(t));
      keep[t.name] = {t.shape, std::vector<float>(p, p + t.numel())};
    }
    keep[name].data[3] = bad;
    fs::remove(weights(d / "a"));
    test::write_f32_safetensors(weights(d / "a"), keep);
    std::string m = read_error(d / "a");
    EXPECT_HAS(m, "adapter_model.safetensors: " + name + ": element 3 is NaN or infinite, expected finite factors");
    fs::remove_all(d / "a");
  }
}

TEST_F(LoraBadInput, WrongShapeForTheBase) {
  test::write_param_wrapper(d / "a", c, false, "0.21.0");
  drop_tensor(d / "a", "base_model.model.model.layers.0.mlp.experts.lora_A.weight", {8, 8, 2});
  EXPECT_HAS(read_error(d / "a"), "factors must be 2-D");
  test::write_per_expert(d / "b", c);
  drop_tensor(d / "b", "base_model.model.model.layers.0.mlp.experts.1.down_proj.lora_A.weight", {2, 8, 2});
  std::string m = read_error(d / "b");
  EXPECT_HAS(m, "experts.1.down_proj");
  EXPECT_HAS(m, "do not fit down [32, 16]");
}

TEST_F(LoraBadInput, RankDisagreesWithConfig) {
  test::write_per_expert(d / "a", c);
  edit(d / "a", "r", "3");
  std::string m = read_error(d / "a");
  EXPECT_HAS(m, "rank 2 disagrees with");
  EXPECT_HAS(m, "adapter_config.json");
  test::write_param_wrapper(d / "b", c, false, "0.21.0");
  edit(d / "b", "r", "4");
  EXPECT_HAS(read_error(d / "b"), "disagrees with");
}

TEST_F(LoraBadInput, AdapterForAnotherModel) {
  test::write_per_expert(d / "a", c);
  edit(d / "a", "auto_mapping", "{\"base_model_class\": \"MixtralForCausalLM\"}");
  EXPECT_HAS(read_error(d / "a"), "an adapter for another model");
  // A qwen3_moe adapter read against mixtral: its expert modules are not mixtral's.
  auto mixtral = test::lora_base_of(test::fixture("mixtral/hf"));
  try {
    test::read_adapter(test::fixture("lora/qwen3_moe/peft_per_expert"), mixtral);
    FAIL();
  } catch (const error& e) {
    EXPECT_HAS(e.what(), "another model");
  }
  // A base with fewer experts than the adapter.
  test::write_qwen3_moe_config(d / "small", 2, 32, 16, 2);
  auto small = test::lora_base_of(d / "small");
  test::write_per_expert(d / "b", c);
  try {
    test::read_adapter(d / "b", small);
    FAIL();
  } catch (const error& e) {
    EXPECT_HAS(e.what(), "expert 2 but the base has E=2");
  }
}

TEST_F(LoraBadInput, UnknownPeftTypeAndUnsupportedOptions) {
  test::write_per_expert(d / "a", c);
  edit(d / "a", "peft_type", "\"IA3\"");
  EXPECT_HAS(read_error(d / "a"), "peft_type 'IA3' is not supported");
  test::write_per_expert(d / "b", c);
  edit(d / "b", "use_dora", "true");
  EXPECT_HAS(read_error(d / "b"), "DoRA");
  test::write_per_expert(d / "c", c);
  edit(d / "c", "fan_in_fan_out", "true");
  EXPECT_HAS(read_error(d / "c"), "fan_in_fan_out");
  test::write_per_expert(d / "e", c);
  edit(d / "e", "bias", "\"lora_only\"");
  EXPECT_HAS(read_error(d / "e"), "bias 'lora_only'");
  // A DoRA magnitude tensor in the file, even with a config that hides it.
  test::write_per_expert(d / "f", c);
  {
    safetensors_file f(weights(d / "f"));
    std::map<std::string, test::f32_tensor> keep;
    for (const auto& t : f.tensors()) {
      const float* p = reinterpret_cast<const float*>(f.data(t));
      keep[t.name] = {t.shape, std::vector<float>(p, p + t.numel())};
    }
    keep["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = {{4}, {1, 1, 1, 1}};
    fs::remove(weights(d / "f"));
    test::write_f32_safetensors(weights(d / "f"), keep);
  }
  std::string m = read_error(d / "f");
  EXPECT_HAS(m, "q_proj.lora_magnitude_vector");
  EXPECT_HAS(m, "DoRA");
}

// PEFT reads its flags with Python's truth: `use_rslora: 1` was read as false here and merged
// with alpha / r where PEFT uses alpha / sqrt(r); a rank past an int was cut (2^32 + 4 as 4);
// a pattern value that is not a rank fell back to r silently.
TEST_F(LoraBadInput, FlagsRanksAndPatternsOfTheWrongTypeAreRefused) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"use_rslora", "1", "use_rslora is 1: expected true or false"},
      {"use_dora", "\"true\"", "use_dora is \"true\": expected true or false"},
      {"fan_in_fan_out", "\"True\"", "fan_in_fan_out is \"True\": expected true or false"},
      {"r", "4294967300", "r 4294967300: expected a positive integer (at most 2147483647)"},
      {"r", "2.5", "r 2.5: expected a positive integer"},
      {"rank_pattern", "{\"up_proj\": \"8\"}", "rank_pattern \"up_proj\": \"8\": expected a positive integer"},
      {"rank_pattern", "{\"up_proj\": 2147483648}", "rank_pattern \"up_proj\": 2147483648: expected a positive integer"},
      {"alpha_pattern", "{\"up_proj\": null}", "alpha_pattern \"up_proj\": null: expected a number"},
  };
  int i = 0;
  for (const auto& [key, value, message] : cases) {
    SCOPED_TRACE(key + " = " + value);
    const std::string dir = d / ("a" + std::to_string(i++));
    test::write_per_expert(dir, c);
    edit(dir, key, value);
    std::string m = read_error(dir);
    EXPECT_HAS(m, "adapter_config.json: " + message);
  }
  // false and null are what absent means.
  const std::string ok = d / "ok";
  test::write_per_expert(ok, c);
  edit(ok, "use_rslora", "false");
  edit(ok, "use_dora", "null");
  EXPECT_EQ(read_error(ok), "(no error)");
}

TEST_F(LoraBadInput, PeftVersionContradictsConfig) {
  test::write_param_wrapper(d / "a", c, false, "0.21.0");
  EXPECT_HAS(read_error(d / "a", "0.19.0"), "disagrees with --peft-version");
  // A version that says old on factors of the new orientation (I != H here).
  test::write_param_wrapper(d / "b", c, false, "0.19.0");
  EXPECT_HAS(read_error(d / "b"), "does not fit");
}

TEST(LoraConvert, TransformersV4NamesAreRead) {
  // An adapter trained on a transformers 4 Mixtral names its experts as the hf layout does
  // (block_sparse_moe.experts.N.w1); it reads as the same pairs, and is written in PEFT 0.21's names.
  auto b = test::lora_base_of(test::fixture("mixtral/hf"));
  test::temp_dir d;
  std::string src = test::fixture("lora/mixtral/peft_per_expert");
  safetensors_file f(weights(src));
  std::map<std::string, test::f32_tensor> renamed;
  for (const auto& t : f.tensors()) {
    std::string n = t.name;
    if (auto at = n.find(".mlp.experts."); at != std::string::npos) n.replace(at, 4, ".block_sparse_moe");
    const float* p = reinterpret_cast<const float*>(f.data(t));
    renamed[n] = {t.shape, std::vector<float>(p, p + t.numel())};
  }
  ASSERT_TRUE(renamed.count("base_model.model.model.layers.1.block_sparse_moe.experts.7.w3.lora_B.weight"));
  fs::create_directories(d / "v4");
  test::write_f32_safetensors(weights(d / "v4"), renamed);
  fs::copy(src + "/adapter_config.json", d / "v4/adapter_config.json");
  test::convert_adapter(d / "v4", d / "pw", lora_form::peft_param_wrapper, b);
  test::expect_same_tensors(weights(d / "pw"), weights(test::fixture("lora/mixtral/peft_param_wrapper")));
  test::convert_adapter(d / "v4", d / "pe", lora_form::peft_per_expert, b);
  test::expect_same_tensors(weights(d / "pe"), weights(src));
}

}  // namespace test_lora_convert
