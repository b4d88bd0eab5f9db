// SPDX-License-Identifier: Apache-2.0
// `convert --dtype bf16`: quantized weights become bf16 (value x scale, rounded once to
// nearest even), scales and quantization_config are dropped. Checked element by element
// against a dequantization computed here from the format's definition (bit fields, exact
// products, frexp/nearbyint rounding), not by the library's dequantizers.
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "quant_support.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_quant_dequantize_convert {
namespace {

// e4m3fn from its fields: sign, 4 exponent bits (bias 7), 3 mantissa bits.
double e4m3(std::uint8_t b) {
  int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  double mag = exp == 0 ? std::ldexp(man, -9) : std::ldexp(8 + man, exp - 10);
  return sign ? -mag : mag;
}

// Nearest-even bf16 of a double that is exact (an fp8 x f32 product has 28 significant bits).
std::uint16_t bf16_of(double v) {
  EXPECT_EQ(std::fegetround(), FE_TONEAREST);
  if (v == 0) return std::signbit(v) ? 0x8000 : 0;
  int e = 0;
  double m = std::frexp(v, &e);                        // |m| in [0.5, 1)
  double r = std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);  // 8 significant bits, ties to even
  float f = static_cast<float>(r);                     // exact
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  EXPECT_EQ(bits & 0xFFFF, 0u);
  return static_cast<std::uint16_t>(bits >> 16);
}

float f32_at(const checkpoint::entry& t, std::int64_t i) {
  float v;
  std::memcpy(&v, t.data() + 4 * i, 4);
  return v;
}

std::uint16_t bf16_at(const checkpoint::entry& t, std::int64_t i) {
  std::uint16_t v;
  std::memcpy(&v, t.data() + 2 * i, 2);
  return v;
}

// Expected bf16 of element (r, c) of an FP8 weight with 128x128 block scales stored
// [ceil(rows/128) * ceil(cols/128)] in row-major grid order (2-D, or 1-D as transformers saves).
std::uint16_t expected(const checkpoint::entry& w, const checkpoint::entry& s, std::int64_t r, std::int64_t c) {
  std::int64_t cols = w.info->shape[1], grid_cols = (cols + 127) / 128;
  auto byte = static_cast<std::uint8_t>(w.data()[r * cols + c]);
  return bf16_of(e4m3(byte) * static_cast<double>(f32_at(s, (r / 128) * grid_cols + c / 128)));
}

const std::string fp8_hf = "deepseek_v3_fp8/hf";

}  // namespace

TEST(QuantDequantizeConvert, Fp8ExpertsBecomeBf16ElementByElement) {
  test::temp_dir d;
  plan_options o;
  o.dequantize = true;
  test::convert(test::fixture(fp8_hf), d / "v5", "transformers_v5", "", o);
  checkpoint src = checkpoint::open(test::fixture(fp8_hf)), out = checkpoint::open(d / "v5");
  std::int64_t checked = 0;
  for (int layer : {1, 2}) {
    std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    const auto* gu = out.find(p + "gate_up_proj");
    const auto* dn = out.find(p + "down_proj");
    ASSERT_TRUE(gu && dn);
    EXPECT_EQ(gu->info->type, dtype::BF16);
    EXPECT_EQ(gu->info->shape, (std::vector<std::int64_t>{16, 256, 256}));
    EXPECT_EQ(dn->info->shape, (std::vector<std::int64_t>{16, 256, 128}));
    EXPECT_EQ(out.find(p + "gate_up_proj_scale_inv"), nullptr);
    for (int e = 0; e < 16; ++e) {
      std::string x = p + std::to_string(e) + ".";
      const char* projs[] = {"gate_proj", "up_proj"};
      for (int half = 0; half < 2; ++half) {
        const auto& w = *src.find(x + projs[half] + ".weight");
        const auto& s = *src.find(x + projs[half] + ".weight_scale_inv");
        for (std::int64_t r = 0; r < 128; ++r)
          for (std::int64_t c = 0; c < 256; ++c, ++checked)
            ASSERT_EQ(bf16_at(*gu, (e * 256 + half * 128 + r) * 256 + c), expected(w, s, r, c))
                << x << projs[half] << " [" << r << ", " << c << "]";
      }
      const auto& w = *src.find(x + "down_proj.weight");
      const auto& s = *src.find(x + "down_proj.weight_scale_inv");
      for (std::int64_t r = 0; r < 256; ++r)
        for (std::int64_t c = 0; c < 128; ++c, ++checked)
          ASSERT_EQ(bf16_at(*dn, (e * 256 + r) * 128 + c), expected(w, s, r, c)) << x << "down_proj [" << r << ", " << c << "]";
    }
  }
  EXPECT_EQ(checked, 2 * 16 * (2 * 128 * 256 + 256 * 128));
}

TEST(QuantDequantizeConvert, QuantizedPassThroughWeightsAreDequantizedToo) {
  test::temp_dir d;
  plan_options o;
  o.dequantize = true;
  test::convert(test::fixture(fp8_hf), d / "grouped", "grouped", "", o);  // a transposed target, too
  checkpoint src = checkpoint::open(test::fixture(fp8_hf)), out = checkpoint::open(d / "grouped");
  for (const auto& t : out.tensors()) {
    EXPECT_EQ(t.info->name.find("scale"), std::string::npos) << t.info->name << ": scales must be dropped";
    EXPECT_NE(t.info->type, dtype::F8_E4M3) << t.info->name;
  }
  for (const char* name : {"model.layers.0.self_attn.o_proj.weight", "model.layers.2.self_attn.q_b_proj.weight",
                           "model.layers.1.mlp.shared_experts.down_proj.weight", "model.layers.0.mlp.gate_proj.weight"}) {
    const auto& w = *src.find(name);
    const auto& s = *src.find(std::string(name) + "_scale_inv");
    const auto* b = out.find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(b->info->type, dtype::BF16);
    ASSERT_EQ(b->info->shape, w.info->shape);
    for (std::int64_t r = 0; r < w.info->shape[0]; ++r)
      for (std::int64_t c = 0; c < w.info->shape[1]; ++c)
        ASSERT_EQ(bf16_at(*b, r * w.info->shape[1] + c), expected(w, s, r, c)) << name << " [" << r << ", " << c << "]";
  }
  // kv_a_proj_with_mqa's scales are uninitialised memory in the fixture: only its form is checked.
  EXPECT_EQ(out.find("model.layers.1.self_attn.kv_a_proj_with_mqa.weight")->info->shape, (std::vector<std::int64_t>{160, 256}));
  // Transposed experts: grouped gate_and_up_projs [E, H, 2I] holds the transpose.
  const auto* gu = out.find("model.layers.1.mlp.experts.gate_and_up_projs");
  ASSERT_NE(gu, nullptr);
  EXPECT_EQ(gu->info->shape, (std::vector<std::int64_t>{16, 256, 256}));
  const auto& w = *src.find("model.layers.1.mlp.experts.7.up_proj.weight");
  const auto& s = *src.find("model.layers.1.mlp.experts.7.up_proj.weight_scale_inv");
  for (std::int64_t r = 0; r < 128; ++r)
    for (std::int64_t c = 0; c < 256; ++c) ASSERT_EQ(bf16_at(*gu, (7 * 256 + c) * 256 + 128 + r), expected(w, s, r, c));
}

TEST(QuantDequantizeConvert, CommandLineDropsQuantizationConfig) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture(fp8_hf) + " " + d / "out" + " --to hf --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value cfg = json::parse_file(d / "out/config.json");
  EXPECT_EQ(cfg.find("quantization_config"), nullptr);
  EXPECT_EQ(cfg.find("model_type")->as_string(), "deepseek_v3");
  checkpoint out = checkpoint::open(d / "out");
  EXPECT_EQ(out.find("model.layers.1.mlp.experts.3.down_proj.weight")->info->type, dtype::BF16);
  EXPECT_EQ(out.find("model.layers.1.mlp.experts.3.down_proj.weight_scale_inv"), nullptr);
  // What was written reads back as a plain bf16 checkpoint of the family.
  auto back = test::run_moereg("convert " + d / "out" + " " + d / "v5" + " --to transformers_v5");
  EXPECT_EQ(back.exit_code, 0) << back.output;

  auto bad = test::run_moereg("convert " + test::fixture(fp8_hf) + " " + d / "x" + " --to hf --dtype fp16");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("--dtype 'fp16': expected bf16"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(d / "x"));
}

// A NaN block scale would make 128 x 128 weights NaN in a checkpoint that otherwise looks
// complete: the conversion is refused naming the scale tensor and its element, and nothing is
// left at the output path.
// The FP8 fixture with the last block scale of `scale_tensor` set to `value`, written to dir.
void plant_scale(const std::string& dir, const std::string& scale_tensor, float value) {
  checkpoint hf = checkpoint::open(test::fixture(fp8_hf));
  std::vector<test::tiny_tensor> ts;
  bool planted = false;
  for (const auto& t : hf.tensors()) {
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    if (x.name == scale_tensor) {
      ASSERT_EQ(x.type, dtype::F32);
      ASSERT_GE(x.bytes.size(), 8u);
      std::memcpy(x.bytes.data() + x.bytes.size() - 4, &value, 4);  // the last block's scale
      planted = true;
    }
    ts.push_back(std::move(x));
  }
  ASSERT_TRUE(planted);
  test::write_checkpoint(dir, hf.config(), ts);
}

TEST(QuantDequantizeConvert, NonFiniteScaleIsRefusedAndLeavesNothing) {
  test::temp_dir d;
  const std::string bad = "model.layers.1.mlp.experts.2.up_proj.weight_scale_inv";
  ASSERT_NO_FATAL_FAILURE(plant_scale(d / "nan", bad, NAN));
  auto r = test::run_moereg("convert " + d / "nan" + " " + d / "out" + " --to hf --dtype bf16");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("model.safetensors: " + bad + ": scale ["), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is NaN; expected a finite scale"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));
  // Kept as FP8, the bytes are copied as stored (a conversion between layouts is bit-exact).
  auto copy = test::run_moereg("convert " + d / "nan" + " " + d / "v5" + " --to transformers_v5");
  EXPECT_EQ(copy.exit_code, 0) << copy.output;
}

// A finite scale whose products overflow bf16 wrote infinite weights with exit 0.
TEST(QuantDequantizeConvert, ScaleThatOverflowsBf16IsRefusedAndLeavesNothing) {
  test::temp_dir d;
  const std::string scale = "model.layers.1.mlp.experts.2.up_proj.weight_scale_inv";
  ASSERT_NO_FATAL_FAILURE(plant_scale(d / "huge", scale, 3e38f));
  auto r = test::run_moereg("convert " + d / "huge" + " " + d / "out" + " --to hf --dtype bf16");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("model.safetensors: model.layers.1.mlp.experts.2.up_proj.weight: dequantized element ["),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("overflows bf16 (the stored value times its scale in " + scale), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));
}

}  // namespace test_quant_dequantize_convert
