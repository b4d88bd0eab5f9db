// SPDX-License-Identifier: Apache-2.0
// Factors on modules or layers that the adapter's own adapter_config.json does not target:
// PEFT builds no LoRA layer there and skips them as unexpected keys, so `lora merge` and
// `lora convert` refuse them (one error naming the file, the tensor and the config field), while
// every form PEFT does apply, and every config form that cannot be decided, still reads.
// Adapters here are fixture adapters with an edited adapter_config.json or an added pair.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "lora_support.h"
#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_lora_targets {
namespace {

std::string weights(const std::string& dir) { return dir + "/adapter_model.safetensors"; }

// A copy of a fixture adapter (its relative base_model_name_or_path no longer resolves: give the base).
void copy_adapter(const std::string& fixture_adapter, const std::string& dir) {
  fs::create_directories(dir);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
    fs::copy(test::fixture(fixture_adapter) + "/" + f, dir + "/" + f);
}

void edit(const std::string& dir, const std::string& key, const std::string& json_value) {
  json::value v = json::parse_file(dir + "/adapter_config.json");
  v.set(key, json::parse(json_value, "test"));
  std::ofstream(dir + "/adapter_config.json") << json::dump(v, 2);
}

// Adds a pair A [r, in], B [out, r] on `module` (F32, small values) to the adapter's file.
void add_pair(const std::string& dir, const std::string& module, std::int64_t r, std::int64_t in, std::int64_t out) {
  std::map<std::string, test::f32_tensor> keep;
  {
    safetensors_file f(weights(dir));
    for (const auto& t : f.tensors()) {
      const float* p = reinterpret_cast<const float*>(f.data(t));
      keep[t.name] = {t.shape, std::vector<float>(p, p + t.numel())};
    }
  }
  auto fill = [](std::size_t n, float s) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = s * static_cast<float>(static_cast<int>(i % 7) - 3);
    return v;
  };
  keep["base_model.model." + module + ".lora_A.weight"] = {{r, in}, fill(static_cast<std::size_t>(r * in), 0.5f)};
  keep["base_model.model." + module + ".lora_B.weight"] = {{out, r}, fill(static_cast<std::size_t>(out * r), 0.25f)};
  fs::remove(weights(dir));
  test::write_f32_safetensors(weights(dir), keep);
}

std::string read_error(const std::string& dir, const test::lora_base& b) {
  try {
    test::read_adapter(dir, b);
  } catch (const error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// The tester's case (a): layers_to_transform [1] with layer-0 factors in the file.
TEST(LoraTargets, MergeAndConvertRefuseALayerLeftOutByLayersToTransform) {
  test::temp_dir d;
  const std::string base = test::fixture("qwen3_moe/hf");
  copy_adapter("lora/qwen3_moe/peft_param_wrapper", d / "a");
  edit(d / "a", "layers_to_transform", "[1]");
  auto r = test::run_moereg("lora merge " + base + " " + (d / "a") + " " + (d / "out"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "a/adapter_model.safetensors") + ": base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_HAS(r.output, (d / "a/adapter_config.json") + ": layers_to_transform [1] leaves out layer 0");
  EXPECT_HAS(r.output, "not applied by PEFT");
  EXPECT_FALSE(fs::exists(d / "out"));
  r = test::run_moereg("lora convert " + (d / "a") + " " + (d / "conv") + " --to peft_per_expert --base " + base);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_HAS(r.output, "layers_to_transform");
  EXPECT_FALSE(fs::exists(d / "conv"));
  // The same adapter with every layer it holds targeted merges.
  edit(d / "a", "layers_to_transform", "[0, 1]");
  r = test::run_moereg("lora merge " + base + " " + (d / "a") + " " + (d / "out2"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// The tester's case (b): an lm_head pair with target_modules [q_proj, v_proj].
TEST(LoraTargets, MergeAndConvertRefuseAModuleTargetModulesDoesNotName) {
  test::temp_dir d;
  const std::string base = test::fixture("qwen3_moe/hf");
  copy_adapter("lora/qwen3_moe/peft_param_wrapper", d / "a");
  add_pair(d / "a", "lm_head", 4, 64, 128);
  auto r = test::run_moereg("lora merge " + base + " " + (d / "a") + " " + (d / "out"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "a/adapter_model.safetensors") + ": base_model.model.lm_head.lora_A.weight");
  EXPECT_HAS(r.output, (d / "a/adapter_config.json") + ": target_modules");
  EXPECT_HAS(r.output, "does not name lm_head");
  EXPECT_FALSE(fs::exists(d / "out"));
  r = test::run_moereg("lora convert " + (d / "a") + " " + (d / "conv") + " --to nemo_grouped --base " + base);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "base_model.model.lm_head.lora_A.weight");
  EXPECT_FALSE(fs::exists(d / "conv"));
  // inspect describes the adapter and lists the pair PEFT skips.
  r = test::run_moereg("lora inspect " + (d / "a") + " --base " + base);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "not applied by PEFT");
  EXPECT_HAS(r.output, "base_model.model.lm_head.lora_A.weight: target_modules");
  // "all-linear" leaves out the output layer too.
  edit(d / "a", "target_modules", "\"all-linear\"");
  r = test::run_moereg("lora merge " + base + " " + (d / "a") + " " + (d / "out"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "leaves out the output layer lm_head");
  // Targeted, by name or as a parameter, it is merged.
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"target_modules", "[\"q_proj\", \"v_proj\", \"lm_head\"]"},
                                   {"target_parameters", "[\"mlp.experts.gate_up_proj\", \"mlp.experts.down_proj\", \"lm_head.weight\"]"}}) {
    SCOPED_TRACE(key);
    test::temp_dir o;
    edit(d / "a", "target_modules", "[\"q_proj\", \"v_proj\"]");
    edit(d / "a", key, value);
    r = test::run_moereg("lora merge " + base + " " + (d / "a") + " " + (o / "out"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    checkpoint in = checkpoint::open(base, {false}), out = checkpoint::open(o / "out", {false});
    const auto* a = in.find("lm_head.weight");
    const auto* b = out.find("lm_head.weight");
    ASSERT_TRUE(a && b);
    EXPECT_NE(0, std::memcmp(a->data(), b->data(), a->info->nbytes()));
  }
}

// PEFT's matching rules (check_target_module_exists, _inject_parameters), read by the reader.
TEST(LoraTargets, PeftMatchingRules) {
  test::temp_dir d;
  const auto b = test::lora_base_of(test::fixture("qwen3_moe/hf"));
  int n = 0;
  auto variant = [&](const std::vector<std::pair<std::string, std::string>>& edits) {
    std::string dir = d / ("v" + std::to_string(n++));
    copy_adapter("lora/qwen3_moe/peft_param_wrapper", dir);
    for (const auto& [k, v] : edits) edit(dir, k, v);
    return dir;
  };
  // exclude_modules: a list entry equal to the name or ending it after a dot; a string full-matched.
  std::string m = read_error(variant({{"exclude_modules", "[\"v_proj\"]"}}), b);
  EXPECT_HAS(m, "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight");
  EXPECT_HAS(m, "exclude_modules [\"v_proj\"] names model.layers.0.self_attn.v_proj");
  m = read_error(variant({{"exclude_modules", "\"model\\\\.layers\\\\.1\\\\.self_attn\\\\.q_proj\""}}), b);
  EXPECT_HAS(m, "layers.1.self_attn.q_proj.lora_A.weight");
  EXPECT_HAS(m, "exclude_modules");
  EXPECT_EQ(m.find("layers.0.self_attn"), std::string::npos) << m;
  EXPECT_EQ(read_error(variant({{"exclude_modules", "[\"self_attn.q\"]"}}), b), "(no error)");  // not at a dot boundary
  // target_modules as a string: a regular expression matched against the whole name.
  EXPECT_EQ(read_error(variant({{"target_modules", "\".*\\\\.(q_proj|v_proj)\""}}), b), "(no error)");
  m = read_error(variant({{"target_modules", "\".*\\\\.q_proj\""}}), b);
  EXPECT_HAS(m, "self_attn.v_proj.lora_A.weight");
  EXPECT_HAS(m, "does not match model.layers.0.self_attn.v_proj");
  EXPECT_HAS(read_error(variant({{"target_modules", "\"q_proj|v_proj\""}}), b), "does not match");  // a full match
  EXPECT_EQ(read_error(variant({{"target_modules", "\"all-linear\""}}), b), "(no error)");
  EXPECT_EQ(read_error(variant({{"target_modules", "\"ALL-LINEAR\""}}), b), "(no error)");
  // Undecidable from the config: a default per model_type, a regex std::regex does not take.
  EXPECT_EQ(read_error(variant({{"target_modules", "null"}}), b), "(no error)");
  EXPECT_EQ(read_error(variant({{"target_modules", "\"(?P<m>.*_proj)\""}}), b), "(no error)");
  // A list names no module: an empty list targets nothing.
  m = read_error(variant({{"target_modules", "[]"}}), b);
  EXPECT_HAS(m, "target_modules [] does not name");
  EXPECT_HAS(m, "3 more pair(s) not applied by PEFT");
  EXPECT_EQ(read_error(variant({{"target_modules", "[\"self_attn.q_proj\", \"v_proj\"]"}}), b), "(no error)");
  // layers_to_transform: an int or a list; layers_pattern names the segment before the index.
  m = read_error(variant({{"layers_to_transform", "0"}}), b);
  EXPECT_HAS(m, "layers.1.self_attn.q_proj.lora_A.weight");
  EXPECT_HAS(m, "layers_to_transform 0 leaves out layer 1");
  m = read_error(variant({{"layers_to_transform", "[1]"}, {"layers_pattern", "\"layers\""}}), b);
  EXPECT_HAS(m, "layers_to_transform [1] with layers_pattern \"layers\" leaves out layer 0");
  m = read_error(variant({{"layers_to_transform", "[0, 1]"}, {"layers_pattern", "[\"blocks\"]"}}), b);
  EXPECT_HAS(m, "has no layer index");
  EXPECT_EQ(read_error(variant({{"layers_to_transform", "[]"}}), b), "(no error)");  // empty: every layer
}

// Expert pairs: ParamWrapper pairs are target_parameters, to which neither layers_to_transform
// nor exclude_modules applies; per-expert pairs load into a transformers 5 model's fused
// parameter (PEFT turns their target_modules entries into target_parameters), so only a leaf
// that no entry names is refused.
TEST(LoraTargets, ExpertPairs) {
  test::temp_dir d;
  test::write_qwen3_moe_config(d / "base", 4, 32, 16, 2);
  const auto b = test::lora_base_of(d / "base");
  const auto c = test::random_lora(4, 32, 16, 2, {0, 1}, 5);
  test::write_param_wrapper(d / "pw", c, false, "0.21.0");
  test::write_per_expert(d / "pe", c);
  auto with = [&](const std::string& src, const std::string& name, const std::vector<std::pair<std::string, std::string>>& edits) {
    std::string dir = d / name;
    fs::create_directories(dir);
    for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) fs::copy(src + "/" + f, dir + "/" + f);
    for (const auto& [k, v] : edits) edit(dir, k, v);
    return dir;
  };
  EXPECT_EQ(read_error(with(d / "pw", "pw_layers", {{"layers_to_transform", "[1]"}}), b), "(no error)");
  EXPECT_EQ(read_error(with(d / "pw", "pw_exclude", {{"exclude_modules", "[\"experts\"]"}}), b), "(no error)");
  EXPECT_HAS(read_error(with(d / "pw", "pw_params", {{"target_parameters", "[]"}}), b),
             "target_parameters names no parameter");  // the ParamWrapper check the reader already made
  EXPECT_EQ(read_error(with(d / "pe", "pe_layers", {{"layers_to_transform", "[1]"}}), b), "(no error)");
  EXPECT_EQ(read_error(with(d / "pe", "pe_exclude", {{"exclude_modules", "[\"down_proj\"]"}}), b), "(no error)");
  std::string m = read_error(with(d / "pe", "pe_no_down", {{"target_modules", "[\"gate_proj\", \"up_proj\"]"}}), b);
  EXPECT_HAS(m, (d / "pe_no_down/adapter_model.safetensors") + ": base_model.model.model.layers.0.mlp.experts.0.down_proj.lora_A.weight");
  EXPECT_HAS(m, "target_modules [\"gate_proj\",\"up_proj\"] does not name model.layers.0.mlp.experts.0.down_proj");
  EXPECT_HAS(m, "7 more pair(s)");
  EXPECT_EQ(read_error(with(d / "pe", "pe_no_down_param",
                            {{"target_modules", "[\"gate_proj\", \"up_proj\"]"}, {"target_parameters", "[\"mlp.experts.down_proj\"]"}}),
                       b),
            "(no error)");
  // A regex probed as PEFT probes it for a fused model: "<experts module>.<leaf>" matches.
  EXPECT_EQ(read_error(with(d / "pe", "pe_regex", {{"target_modules", "\".*\\\\.experts\\\\.(gate|up|down)_proj\""}}), b), "(no error)");
  EXPECT_HAS(read_error(with(d / "pe", "pe_regex_no", {{"target_modules", "\".*\\\\.(gate|up)_proj\""}}), b), "does not match");
}

// Which number is the layer: the first since PEFT 0.20.0, the last before; unknown without a
// peft_version where they differ, and then not refused.
TEST(LoraTargets, LayerIndexFollowsPeftVersion) {
  test::temp_dir d;
  const auto b = test::lora_base_of(test::fixture("qwen3_moe/hf"));
  auto adapter = [&](const std::string& name, const std::string& peft_version) {
    std::string dir = d / name;
    fs::create_directories(dir);
    test::write_f32_safetensors(weights(dir), {{"base_model.model.model.layers.1.mlp.shared.0.proj.lora_A.weight", {{4, 64}, std::vector<float>(256, 0.5f)}},
                                               {"base_model.model.model.layers.1.mlp.shared.0.proj.lora_B.weight", {{64, 4}, std::vector<float>(256, 0.5f)}}});
    std::ofstream(dir + "/adapter_config.json") << "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"proj\"], "
                                                   "\"layers_to_transform\": [1]"
                                                << (peft_version.empty() ? "" : ", \"peft_version\": \"" + peft_version + "\"") << "}";
    return dir;
  };
  EXPECT_EQ(read_error(adapter("new", "0.21.0"), b), "(no error)");
  EXPECT_HAS(read_error(adapter("old", "0.19.0"), b), "layers_to_transform [1] leaves out layer 0 of model.layers.1.mlp.shared.0.proj");
  EXPECT_EQ(read_error(adapter("unknown", ""), b), "(no error)");
}

// Every fixture adapter is targeted by its own config, as are the forms moereg writes from it.
TEST(LoraTargets, FixtureAdaptersAndTheirConversionsAreTargeted) {
  for (const char* f : {"qwen3_moe", "mixtral", "deepseek_v3"})
    for (const char* form : {"peft_param_wrapper", "peft_per_expert"}) {
      SCOPED_TRACE(std::string(f) + " " + form);
      const auto b = test::lora_base_of(test::fixture(std::string(f) + "/hf"));
      const std::string src = test::fixture(std::string("lora/") + f + "/" + form);
      EXPECT_EQ(read_error(src, b), "(no error)");
      for (lora_form to : {lora_form::peft_param_wrapper, lora_form::peft_per_expert, lora_form::nemo_grouped}) {
        test::temp_dir o;
        test::convert_adapter(src, o / "x", to, b);
        EXPECT_EQ(read_error(o / "x", b), "(no error)") << lora_form_name(to);
      }
    }
}

// lora convert has no --resume: its refusal of a non-empty OUT does not suggest one.
TEST(LoraCli, ConvertIntoNonEmptyOutSuggestsNoResume) {
  test::temp_dir d;
  fs::create_directories(d / "out");
  test::write_bytes(d / "out/keep", "x");
  auto r = test::run_moereg("lora convert " + test::fixture("lora/qwen3_moe/peft_param_wrapper") + " " + (d / "out") + " --to peft_per_expert");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "out") + ": exists and is not an empty directory");
  EXPECT_EQ(r.output.find("--resume"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(d / "out/keep"));
}

}  // namespace test_lora_targets
