// SPDX-License-Identifier: Apache-2.0
// Companion naming of quantized weights: the defaults, a plugin.yaml override, the checks.
#include <gtest/gtest.h>

#include "moereg/base/error.h"
#include "moereg/layout/family_spec.h"
#include "moereg/plan/quant_format.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_quant_naming {
namespace {

const char* manifest = R"(
name: tiny
version: "1"
api_version: 1
model_types: [tiny]
dims: {E: num_experts, H: hidden_size, I: moe_intermediate_size}
moe_layers: {count: num_hidden_layers}
passthrough: ["lm_head.weight"]
layouts:
  hf:
    experts:
      gate: {key: "layers.{layer}.experts.{expert}.w1.weight"}
      up:   {key: "layers.{layer}.experts.{expert}.w3.weight"}
      down: {key: "layers.{layer}.experts.{expert}.w2.weight"}
)";

family_spec parse(const std::string& extra) { return parse_family_spec(YAML::Load(std::string(manifest) + extra), "p.yaml", "tiny"); }

}  // namespace

TEST(QuantNaming, AppliesAndReverses) {
  EXPECT_EQ(apply_naming("{key}_scale_inv", "a.b.weight"), "a.b.weight_scale_inv");
  EXPECT_EQ(apply_naming("{stem}.qweight", "a.b.weight"), "a.b.qweight");
  EXPECT_EQ(apply_naming("{stem}.scale", "a.gate_up_proj"), "a.gate_up_proj.scale");  // no .weight: its own stem
  EXPECT_EQ(unapply_naming("{key}_scale_inv", "a.b.weight_scale_inv"), "a.b.weight");
  EXPECT_EQ(unapply_naming("{stem}.scales", "a.b.scales"), "a.b.weight");
  EXPECT_EQ(unapply_naming("{key}_scale", "a.b.weight_scale_inv"), std::nullopt);
  EXPECT_EQ(unapply_naming("{key}", "x"), "x");
}

TEST(QuantNaming, DefaultsAreTheQuantizersConventions) {
  family_spec f = parse("");
  EXPECT_EQ(f.quantization.at("fp8").scale, (std::vector<std::string>{"{key}_scale_inv", "{key}_scale"}));
  EXPECT_EQ(f.quantization.at("gptq").weight, "{stem}.qweight");
  EXPECT_EQ(f.quantization.at("gptq").zeros, "{stem}.qzeros");
  EXPECT_EQ(f.quantization.at("compressed").weight, "{stem}.weight_packed");
  EXPECT_EQ(f.quantization.at("mxfp4").scale, (std::vector<std::string>{"{stem}.scale"}));
}

TEST(QuantNaming, PluginYamlReplacesASchemesNaming) {
  family_spec f = parse("quantization:\n  fp8: {scale: \"{stem}.qscale_weight\"}\n");
  EXPECT_EQ(f.quantization.at("fp8").weight, "{key}");
  EXPECT_EQ(f.quantization.at("fp8").scale, (std::vector<std::string>{"{stem}.qscale_weight"}));
  EXPECT_EQ(f.quantization.at("gptq").weight, "{stem}.qweight") << "other schemes keep their defaults";
  json::value cfg = json::parse(R"({"quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}})", "c");
  quant_format q = read_quant_format(f, cfg, "config.json");
  EXPECT_EQ(q.block, 64);
  EXPECT_EQ(q.names.scale.front(), "{stem}.qscale_weight");
}

TEST(QuantNaming, BadNamingAndConfigsAreRefusedWithTheirPlace) {
  try {
    parse("quantization:\n  fp8: {scale: \"{key}.{x}\"}\n  awq: {scale: \"{key}_s\"}\n");
    FAIL() << "accepted";
  } catch (const error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("p.yaml:16:16: quantization.fp8.scale '{key}.{x}': expected {key} or {stem} followed by literal text"), std::string::npos) << m;
    EXPECT_NE(m.find("p.yaml:17:3: unknown key 'awq' in quantization"), std::string::npos) << m;
  }
  family_spec f = parse("");
  auto refused = [&](const char* qc) {
    try {
      read_quant_format(f, json::parse(std::string(R"({"quantization_config": )") + qc + "}", "c"), "m/config.json");
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(refused(R"({"quant_method": "awq"})"),
            "m/config.json: quantization_config.quant_method is \"awq\": not supported, expected \"fp8\", \"gptq\", "
            "\"compressed-tensors\" or \"mxfp4\"");
  EXPECT_EQ(refused(R"({"quant_method": "fp8", "weight_block_size": [128, 64]})"),
            "m/config.json: quantization_config.weight_block_size is [128,64], expected [N, N] with N > 0 (square blocks)");
  EXPECT_NE(refused(R"({"quant_method": "gptq", "bits": 4, "desc_act": true})").find("m/config.json: quantization_config.desc_act is true"),
            std::string::npos);
  EXPECT_NE(refused(R"({"quant_method": "gptq", "bits": 4, "sym": false})").find("m/config.json: quantization_config.sym is false"),
            std::string::npos);
}

}  // namespace test_quant_naming
