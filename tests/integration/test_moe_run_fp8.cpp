// SPDX-License-Identifier: Apache-2.0
// `moereg moe run` on FP8 experts (deepseek_v3_fp8 fixture, layer 1): the CPU backend reads
// the F8_E4M3 bytes and their 128x128 block scales as stored and dequantizes on the fly. It
// must agree with running the same layer after `convert --dtype bf16` (experts dequantized
// once by core/quant, value x scale rounded to bf16), which shares none of the backend's
// FP8 code. The fixture has no moe_block.safetensors: the input is random.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "abi_plugins.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "quant_support.h"
#include "moe_run_support.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_moe_run_fp8 {
namespace {

// A tiny deepseek_v3 FP8 checkpoint of layer 1 (split per expert, as hf stores it, with a
// quantized shared expert) and a random router; scales of shape scale_shape(rows, cols).
void write_fp8_layer(const std::string& dir, int E, int H, int I, const std::string& suffix,
                     std::vector<std::int64_t> (*scale_shape)(std::int64_t, std::int64_t)) {
  std::mt19937 rng(3);
  std::vector<test::tiny_tensor> ts;
  const char* projs[] = {"gate_proj", "up_proj", "down_proj"};
  for (int e = 0; e <= E; ++e)  // e == E: the shared expert (quantized too, width I)
    for (int p = 0; p < 3; ++p) {
      const std::int64_t rows = p == 2 ? H : I, cols = p == 2 ? I : H;
      const std::string base = (e == E ? std::string("model.layers.1.mlp.shared_experts.")
                                       : "model.layers.1.mlp.experts." + std::to_string(e) + ".") +
                               projs[p] + ".weight";
      ts.push_back({base, dtype::F8_E4M3, {rows, cols}, test::as_bytes(test::random_fp8(static_cast<std::size_t>(rows * cols), rng))});
      std::vector<std::int64_t> ss = scale_shape(rows, cols);
      std::int64_t n = 1;
      for (auto d : ss) n *= d;
      std::vector<float> s(static_cast<std::size_t>(n));
      for (auto& v : s) v = std::ldexp(1.0f + static_cast<float>(rng() % 100) / 100.0f, -10 - static_cast<int>(rng() % 4));
      ts.push_back({base + suffix, dtype::F32, ss, test::as_bytes(s)});
    }
  std::vector<std::uint16_t> router(static_cast<std::size_t>(E * H));
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (auto& v : router) v = f32_to_bf16(normal(rng));
  ts.push_back({"model.layers.1.mlp.gate.weight", dtype::BF16, {E, H}, test::as_bytes(router)});
  std::vector<float> bias(static_cast<std::size_t>(E));
  for (auto& v : bias) v = normal(rng);
  ts.push_back({"model.layers.1.mlp.gate.e_score_correction_bias", dtype::F32, {E}, test::as_bytes(bias)});
  json::value q(json::object{{"quant_method", json::value("fp8")},
                             {"weight_block_size", json::value(json::array{json::value(128), json::value(128)})}});
  test::write_checkpoint(dir, test::deepseek_config(E, H, I, q), ts);
}

std::vector<std::int64_t> block_scales(std::int64_t r, std::int64_t c) { return {(r + 127) / 128, (c + 127) / 128}; }
std::vector<std::int64_t> channel_scales(std::int64_t r, std::int64_t) { return {r}; }

}  // namespace

// Per-channel scales (one per output row), and 128x128 blocks with I = 192: gate and up
// each end inside a block, so their scales stay on grids of their own (2 + 2 scale rows for
// the 384 fused rows, not ceil(384 / 128) = 3). Both against convert --dtype bf16.
TEST(MoeRunFp8, PerChannelScalesAndBlocksCutByI) {
  struct variant {
    const char* name;
    int I;
    const char* suffix;
    std::vector<std::int64_t> (*shape)(std::int64_t, std::int64_t);
    const char* log;
  };
  for (const variant& v : {variant{"per-channel", 128, "_scale", channel_scales, "FP8 with 1x256 block scales"},
                           variant{"blocks, I=192", 192, "_scale_inv", block_scales, "FP8 with 128x128 block scales"}}) {
    SCOPED_TRACE(v.name);
    test::temp_dir d;
    write_fp8_layer(d / "fp8", 4, 256, v.I, v.suffix, v.shape);
    auto conv = test::run_moereg("convert " + (d / "fp8") + " " + (d / "bf16") + " --to hf --dtype bf16");
    ASSERT_EQ(conv.exit_code, 0) << conv.output;
    const std::string in = d / "in.safetensors";
    test::write_random_input(in, 19, 256, true, 5);
    test::moe_run_output q = test::moe_run_cpu(d / "fp8", in, d / "out_fp8.safetensors");
    test::moe_run_output b = test::moe_run_cpu(d / "bf16", in, d / "out_bf16.safetensors");
    EXPECT_NE(q.log.find(v.log), std::string::npos) << q.log;
    EXPECT_NE(q.log.find("shared expert F8_E4M3 as stored"), std::string::npos) << q.log;
    ASSERT_EQ(q.out.size(), static_cast<std::size_t>(19 * 256));
    ASSERT_EQ(b.out.size(), q.out.size());
    EXPECT_EQ(q.ids, b.ids);
    EXPECT_LE(test::rel_l2(q.out, b.out), 1e-2);
  }
}

TEST(MoeRunFp8, Fp8ExpertsMatchTheBf16DequantizedLayer) {
  test::temp_dir d;
  const std::string fp8 = test::fixture("deepseek_v3_fp8/hf");
  auto conv = test::run_moereg("convert " + fp8 + " " + (d / "bf16") + " --to hf --dtype bf16");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  {
    safetensors_file check(d / "bf16/model.safetensors");
    const tensor_info* e = check.find("model.layers.1.mlp.experts.0.gate_proj.weight");
    ASSERT_TRUE(e);
    ASSERT_EQ(e->type, dtype::BF16);  // the reference really is dequantized
  }
  const std::int64_t H = 256;
  for (std::int64_t T : {std::int64_t{37}, std::int64_t{1}})
    for (bool bf16 : {false, true}) {
      SCOPED_TRACE("T=" + std::to_string(T) + (bf16 ? " bf16" : " f32"));
      const std::string in = d / ("in" + std::to_string(T) + (bf16 ? "b" : "f") + ".safetensors");
      test::write_random_input(in, T, H, bf16, 7 + static_cast<unsigned>(T));
      test::moe_run_output q = test::moe_run_cpu(fp8, in, d / "out_fp8.safetensors");
      test::moe_run_output b = test::moe_run_cpu(d / "bf16", in, d / "out_bf16.safetensors");
      EXPECT_NE(q.log.find("FP8 with 128x128 block scales"), std::string::npos) << q.log;
      EXPECT_NE(q.log.find("shared expert F8_E4M3 as stored"), std::string::npos) << q.log;
      EXPECT_EQ(b.log.find("FP8"), std::string::npos) << b.log;
      ASSERT_EQ(q.out.size(), static_cast<std::size_t>(T * H));
      ASSERT_EQ(b.out.size(), q.out.size());
      EXPECT_EQ(q.ids, b.ids);  // the router is not quantized: same experts
      EXPECT_LE(test::rel_l2(q.out, b.out), 1e-2);
    }
}

// The shared expert goes to the backend in F8 with its scales (plugin API 3); a backend whose
// table is older cannot read those, and gets the same expert widened to BF16 by the host.
TEST(MoeRunFp8, OlderBackendTablesGetTheSharedExpertInBf16) {
  test::temp_dir d;
  const std::string plugins = d / "plugins";
  std::filesystem::create_directories(plugins);
  std::filesystem::copy_file(test::abi_lib("libmoereg_backend_abitest-api2.so"), plugins + "/libmoereg_backend_abitest-api2.so");
  const std::string in = d / "in.safetensors";
  test::write_random_input(in, 3, 256, true, 5);
  auto r = test::run_command("MOEREG_PLUGIN_PATH=" + plugins + " " + MOEREG_BUILD_DIR + "/bin/moereg moe run " +
                             test::fixture("deepseek_v3_fp8/hf") + " --layer 1 --input " + in + " --output " +
                             (d / "out.safetensors") + " --backend abitest");
  EXPECT_NE(r.exit_code, 0) << r.output;  // abitest computes nothing
  EXPECT_NE(r.output.find("shared expert given: BF16"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gets the F8_E4M3 shared expert as BF16"), std::string::npos) << r.output;
}

}  // namespace test_moe_run_fp8
