// SPDX-License-Identifier: Apache-2.0
// `moereg moe run` on 4-bit experts: symmetric GPTQ int4, compressed-tensors pack-quantized
// int4 and MXFP4, each a tiny deepseek_v3 checkpoint written here (routed experts and the
// shared expert quantized). The cpu backend reads the codes as stored and dequantizes them
// per K pass into its tiles; the result must agree with running the same layer after
// `convert --dtype bf16` (core/quant's dequantization, each weight rounded once to bf16),
// which shares none of the backend's code, on every kernel set this machine runs and on the
// emulated AMX unit. The bound: relative L2 <= 5e-3 with F32 input (the reference's weights
// are rounded to bf16, ~2^-9 each) and <= 1e-2 with BF16 input (bf16 intermediate too).
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "quant_support.h"
#include "moe_run_support.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_moe_run_quant4 {
namespace {

constexpr int E = 4, H = 256, I = 128, G = 32;
const char* projs[] = {"gate_proj", "up_proj", "down_proj"};

struct scheme {
  std::string name;
  json::value quantization;
  std::string log;  // how moe run describes the experts
  std::function<std::vector<test::tiny_tensor>(const std::string& base, int N, int K, std::mt19937& rng)> tensors;
};

scheme gptq() {
  return {"gptq",
          json::parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": false, "sym": true})", "q"),
          "gptq int4 (symmetric, group 32) read as stored",
          [](const std::string& base, int N, int K, std::mt19937& rng) {
            std::vector<std::uint32_t> qw(static_cast<std::size_t>(K / 8 * N));
            for (auto& w : qw) w = static_cast<std::uint32_t>(rng());
            std::vector<std::uint16_t> sc(static_cast<std::size_t>(K / G * N));
            for (auto& x : sc) x = static_cast<std::uint16_t>(0x1C00 + rng() % 0x0800);  // f16 2^-8 .. 2^-6
            std::vector<std::int32_t> g_idx(static_cast<std::size_t>(K));
            for (int k = 0; k < K; ++k) g_idx[static_cast<std::size_t>(k)] = k / G;
            std::vector<std::int32_t> zeros(static_cast<std::size_t>(K / G * N / 8), 0x77777777);
            return std::vector<test::tiny_tensor>{{base + ".qweight", dtype::I32, {K / 8, N}, test::as_bytes(qw)},
                                                  {base + ".scales", dtype::F16, {K / G, N}, test::as_bytes(sc)},
                                                  {base + ".g_idx", dtype::I32, {K}, test::as_bytes(g_idx)},
                                                  {base + ".qzeros", dtype::I32, {K / G, N / 8}, test::as_bytes(zeros)}};
          }};
}

scheme compressed() {
  return {"compressed",
          json::parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
              "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
              "symmetric": true, "strategy": "group", "group_size": 32}}}})", "q"),
          "compressed-tensors int4 (pack-quantized, symmetric, group 32) read as stored",
          [](const std::string& base, int N, int K, std::mt19937& rng) {
            std::vector<std::uint32_t> p(static_cast<std::size_t>(N * K / 8));
            for (auto& w : p) w = static_cast<std::uint32_t>(rng());
            std::vector<std::uint16_t> sc(static_cast<std::size_t>(N * K / G));
            for (auto& x : sc) x = static_cast<std::uint16_t>(0x3B80 + rng() % 0x0100);  // bf16 ~2^-8 .. 2^-6
            std::vector<std::int64_t> shape{N, K};
            return std::vector<test::tiny_tensor>{{base + ".weight_packed", dtype::I32, {N, K / 8}, test::as_bytes(p)},
                                                  {base + ".weight_scale", dtype::BF16, {N, K / G}, test::as_bytes(sc)},
                                                  {base + ".weight_shape", dtype::I64, {2}, test::as_bytes(shape)}};
          }};
}

scheme mxfp4() {
  return {"mxfp4", json::parse(R"({"quant_method": "mxfp4"})", "q"), "mxfp4 (e2m1, ue8m0 scales, group 32) read as stored",
          [](const std::string& base, int N, int K, std::mt19937& rng) {
            std::vector<std::uint8_t> p(static_cast<std::size_t>(N * K / 2)), sc(static_cast<std::size_t>(N * K / 32));
            for (auto& b : p) b = static_cast<std::uint8_t>(rng());
            for (auto& u : sc) u = static_cast<std::uint8_t>(118 + rng() % 4);  // 2^-9 .. 2^-6
            return std::vector<test::tiny_tensor>{{base + ".weight", dtype::U8, {N, K / 2}, test::as_bytes(p)},
                                                  {base + ".scale", dtype::F8_E8M0, {N, K / 32}, test::as_bytes(sc)}};
          }};
}

// Layer 1: E routed experts and the shared expert (width I), all quantized; a bf16 router
// and an f32 score-correction bias.
void write_layer(const scheme& s, const std::string& dir) {
  std::mt19937 rng(5);
  std::vector<test::tiny_tensor> ts;
  for (int e = 0; e <= E; ++e)
    for (int p = 0; p < 3; ++p) {
      const std::string base = (e == E ? std::string("model.layers.1.mlp.shared_experts.")
                                       : "model.layers.1.mlp.experts." + std::to_string(e) + ".") +
                               projs[p];
      for (auto& t : s.tensors(base, p == 2 ? H : I, p == 2 ? I : H, rng)) ts.push_back(std::move(t));
    }
  std::vector<std::uint16_t> router(static_cast<std::size_t>(E * H));
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (auto& v : router) v = f32_to_bf16(normal(rng));
  ts.push_back({"model.layers.1.mlp.gate.weight", dtype::BF16, {E, H}, test::as_bytes(router)});
  std::vector<float> bias(static_cast<std::size_t>(E));
  for (auto& v : bias) v = normal(rng);
  ts.push_back({"model.layers.1.mlp.gate.e_score_correction_bias", dtype::F32, {E}, test::as_bytes(bias)});
  test::write_checkpoint(dir, test::deepseek_config(E, H, I, s.quantization), ts);
}

}  // namespace

TEST(MoeRunQuant4, FourBitExpertsMatchTheBf16DequantizedLayerOnEveryIsa) {
  for (const scheme& s : {gptq(), compressed(), mxfp4()}) {
    SCOPED_TRACE(s.name);
    test::temp_dir d;
    write_layer(s, d / "q");
    auto conv = test::run_moereg("convert " + (d / "q") + " " + (d / "bf16") + " --to hf --dtype bf16");
    ASSERT_EQ(conv.exit_code, 0) << conv.output;
    for (bool bf16 : {false, true}) {
      const std::int64_t T = bf16 ? 1 : 19;
      const std::string in = d / (bf16 ? "in_b.safetensors" : "in_f.safetensors");
      test::write_random_input(in, T, H, bf16, 9);
      test::moe_run_output b = test::moe_run_cpu(d / "bf16", in, d / "out_bf16.safetensors", "");
      EXPECT_EQ(b.log.find("read as stored"), std::string::npos) << b.log;
      for (const char* isa : {"", "avx2", "scalar", "amx_emulated"}) {
        SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + " input, isa=" + isa);
        std::string opts = std::string("--backend-option isa=") + isa;
        if (std::string(isa) == "amx_emulated") opts += " --backend-option unit_min_rows=1";
        test::moe_run_output q = test::moe_run_cpu(d / "q", in, d / "out_q.safetensors", opts);
        EXPECT_NE(q.log.find(s.log), std::string::npos) << q.log;
        ASSERT_EQ(q.out.size(), static_cast<std::size_t>(T * H));
        ASSERT_EQ(b.out.size(), q.out.size());
        EXPECT_EQ(q.ids, b.ids);  // the router is not quantized: same experts
        EXPECT_LE(test::rel_l2(q.out, b.out), bf16 ? 1e-2 : 5e-3);
      }
    }
  }
}

}  // namespace test_moe_run_quant4
