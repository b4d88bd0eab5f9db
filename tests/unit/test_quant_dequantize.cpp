// SPDX-License-Identifier: Apache-2.0
// Dequantizers to bf16: every element of tiny tensors with known values, checked against
// an independent computation (exact rational rounding done differently from the library).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/quant/bf16_round.h"
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/gptq_int4.h"
#include "moereg/quant/mxfp4.h"
#include "moereg/quant/pack_quantized_int4.h"
#include "moereg/tensor/dtype.h"

using namespace moereg;

namespace {

// Reference bf16 rounding: scale |v| so its bf16 quantum is 1, round the (exact) double to
// an integer with ties to even, scale back. No float intermediate.
std::uint16_t ref_bf16(double v) {
  if (std::isnan(v)) return 0x7FC0;
  std::uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  double a = std::fabs(v);
  if (a == 0) return sign;
  int e;
  std::frexp(a, &e);                   // a = f * 2^e, f in [0.5, 1)
  int q = std::max(e - 8, -133);       // quantum: 8 significant bits, or bf16's subnormal step
  double r = std::nearbyint(std::ldexp(a, -q));
  double back = std::ldexp(r, q);
  if (back >= std::ldexp(1.0, 128)) return sign | 0x7F80;
  float f = static_cast<float>(back);  // exact: back has <= 8 significant bits
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<std::uint16_t>(sign | (bits >> 16));
}

bool same_bf16(std::uint16_t a, std::uint16_t b) {
  bool nan_a = (a & 0x7F80) == 0x7F80 && (a & 0x7F), nan_b = (b & 0x7F80) == 0x7F80 && (b & 0x7F);
  return nan_a || nan_b ? nan_a == nan_b : a == b;
}

std::string message_of(auto&& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(QuantBf16Round, RoundsOnceNotTwice) {
  // 1 + 2^-8 + 2^-30: via f32 it becomes the tie 1 + 2^-8 and then rounds to even (1.0);
  // rounded once it is above the tie and goes up.
  EXPECT_EQ(f64_to_bf16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)), 0x3F81);
  EXPECT_EQ(f64_to_bf16(1.0 + std::ldexp(1.0, -8)), 0x3F80);  // an exact tie goes to even
  EXPECT_EQ(f64_to_bf16(-0.0), 0x8000);
  EXPECT_EQ(f64_to_bf16(1e300), 0x7F80);
  EXPECT_EQ(f64_to_bf16(-1e-300), 0x8000);
  EXPECT_EQ(f64_to_bf16(std::ldexp(1.0, -133)), 0x0001);  // smallest bf16 subnormal
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mant(-2.0, 2.0);
  std::uniform_int_distribution<int> ex(-140, 130);
  for (int i = 0; i < 200000; ++i) {
    double v = std::ldexp(mant(rng), ex(rng));
    ASSERT_EQ(f64_to_bf16(v), ref_bf16(v)) << v;
  }
}

TEST(QuantFp8, DecodesEveryByteLikeTheDtypeTable) {
  for (int b = 0; b < 256; ++b) {
    std::uint8_t v = static_cast<std::uint8_t>(b);
    double expect = element_as_double(dtype::F8_E4M3, &v, 0);
    if (std::isnan(expect)) EXPECT_TRUE(std::isnan(fp8_e4m3_value(v))) << b;
    else EXPECT_EQ(fp8_e4m3_value(v), expect) << b;
  }
  EXPECT_EQ(fp8_e4m3_value(0x7E), 448.0f);
  EXPECT_EQ(fp8_e4m3_value(0x01), std::ldexp(1.0f, -9));
}

namespace {
void check_fp8(const std::vector<std::int64_t>& wshape, const std::vector<std::int64_t>& sshape, const char* name) {
  scale_grid g = classify_fp8_scale(name, wshape, sshape);
  std::mt19937 rng(11);
  std::size_t n = static_cast<std::size_t>(g.batch * g.rows * g.cols);
  std::vector<std::uint8_t> w(n);
  for (auto& b : w) b = static_cast<std::uint8_t>(rng());
  std::vector<float> s(static_cast<std::size_t>(g.batch * g.scales_per_matrix()));
  std::uniform_real_distribution<float> sd(1e-5f, 1e-2f);
  for (auto& x : s) x = sd(rng);
  std::vector<std::uint16_t> out(n);
  dequantize_fp8_e4m3(w.data(), s, g, out.data());
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t r = 0; r < g.rows; ++r)
      for (std::int64_t c = 0; c < g.cols; ++c) {
        std::size_t i = static_cast<std::size_t>((b * g.rows + r) * g.cols + c);
        // Independent scale lookup from the layout's definition.
        std::int64_t si;
        if (g.kind == scale_kind::per_tensor) si = b;
        else if (g.kind == scale_kind::per_channel) si = b * g.rows + r;
        else si = b * ((g.rows + 127) / 128) * ((g.cols + 127) / 128) + (r / 128) * ((g.cols + 127) / 128) + c / 128;
        double expect = element_as_double(dtype::F8_E4M3, w.data(), i) * static_cast<double>(s[static_cast<std::size_t>(si)]);
        ASSERT_TRUE(same_bf16(out[i], ref_bf16(expect))) << name << " element " << i;
      }
}
}  // namespace

TEST(QuantFp8, DequantizesBlockScalesWithPartialBlocks) { check_fp8({130, 260}, {2, 3}, "w.weight_scale_inv"); }
TEST(QuantFp8, DequantizesOneDimensionalBlockScales) { check_fp8({256, 128}, {2}, "e.down_proj.weight_scale_inv"); }
TEST(QuantFp8, DequantizesPerChannelScales) { check_fp8({40, 24}, {40, 1}, "w.weight_scale"); }
TEST(QuantFp8, DequantizesPerTensorScales) { check_fp8({40, 24}, {}, "w.weight_scale"); }
TEST(QuantFp8, DequantizesStackedExperts) { check_fp8({3, 200, 136}, {3, 2, 2}, "experts.gate_up_proj_scale_inv"); }
TEST(QuantFp8, DequantizesPerExpertPerTensorScales) { check_fp8({3, 20, 8}, {3, 1, 1}, "experts.down_proj_scale_inv"); }
// Scales covering >= 1024 elements go through per-scale tables (fp8_e4m3.cpp); the cases
// above with small groups do not. Both must give the same single rounding.
TEST(QuantFp8, DequantizesWidePerChannelAndPerTensorScalesThroughTables) {
  check_fp8({5, 1100}, {5, 1}, "w.weight_scale");
  check_fp8({40, 40}, {}, "w.weight_scale");
}

TEST(QuantFp8, RefusesAWrongScaleCount) {
  scale_grid g = classify_fp8_scale("s", std::vector<std::int64_t>{128, 128}, std::vector<std::int64_t>{1, 1});
  std::vector<std::uint8_t> w(128 * 128);
  std::vector<std::uint16_t> out(w.size());
  std::vector<float> s(2);
  EXPECT_NE(message_of([&] { dequantize_fp8_e4m3(w.data(), s, g, out.data()); }).find("2 scales given, expected 1"),
            std::string::npos);
}

TEST(QuantMxfp4, Ue8m0ToBf16IsAnExactShift) {
  for (int u = 1; u <= 254; ++u)
    EXPECT_EQ(bf16_to_f32(ue8m0_to_bf16(static_cast<std::uint8_t>(u))), std::ldexp(1.0f, u - 127)) << u;
  EXPECT_EQ(ue8m0_to_bf16(0), 0x0000);
  EXPECT_EQ(ue8m0_to_bf16(255), 0x7F80);
}

TEST(QuantMxfp4, DequantizesEveryElement) {
  const std::int64_t rows = 3, cols = 96;
  std::vector<std::int64_t> wshape{rows, cols / 2}, sshape{rows, 3};
  mxfp4_shape s = check_mxfp4_shapes("w1.weight", wshape, sshape);
  EXPECT_EQ(s.cols, cols);
  // Known codes: element (r, c) holds code (r * 7 + c) % 16; scales cover extremes.
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(rows * cols / 2), 0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      auto code = static_cast<std::uint8_t>((r * 7 + c) % 16);
      packed[static_cast<std::size_t>(r * cols / 2 + c / 2)] |= static_cast<std::uint8_t>(c % 2 ? code << 4 : code);
    }
  std::vector<std::uint8_t> scales = {127, 120, 134, 0, 255, 254, 1, 140, 100};
  std::vector<std::uint16_t> out(static_cast<std::size_t>(rows * cols));
  dequantize_mxfp4(packed.data(), scales.data(), s, out.data());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      int code = static_cast<int>((r * 7 + c) % 16);
      int e = (code >> 1) & 3, m = code & 1;  // E2M1: 2 exponent bits (bias 1), 1 mantissa bit
      double mag = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::ldexp(1.0, e - 1);
      double val = (code & 8) ? -mag : mag;
      int u = scales[static_cast<std::size_t>(r * 3 + c / 32)];
      double expect = u == 255 ? NAN : val * std::ldexp(1.0, u - 127);
      ASSERT_TRUE(same_bf16(out[static_cast<std::size_t>(r * cols + c)], ref_bf16(expect))) << r << "," << c;
    }
  EXPECT_EQ(out[0], 0x0000);  // code 0 with scale 2^0
  EXPECT_EQ(out[1], 0x3F00);  // code 1 = 0.5
}

TEST(QuantMxfp4, RefusesMismatchedShapes) {
  std::vector<std::int64_t> w{4, 16}, s{4, 2};
  EXPECT_NE(message_of([&] { check_mxfp4_shapes("layers.0.ffn.experts.1.w2.weight", w, s); })
                .find("layers.0.ffn.experts.1.w2.weight: MXFP4 scale shape [4, 2], expected [4, 1]"),
            std::string::npos);
}

namespace {
// q[k][n] known, packed GPTQ-style: qweight[k/8][n] holds k%8 at bits 4*(k%8).
std::vector<std::int32_t> pack_along_k(const std::vector<std::vector<int>>& q, std::int64_t k, std::int64_t n) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(k / 8 * n), 0);
  for (std::int64_t kk = 0; kk < k; ++kk)
    for (std::int64_t nn = 0; nn < n; ++nn) {
      auto& w = out[static_cast<std::size_t>(kk / 8 * n + nn)];
      w = static_cast<std::int32_t>(static_cast<std::uint32_t>(w) |
                                    (static_cast<std::uint32_t>(q[static_cast<std::size_t>(kk)][static_cast<std::size_t>(nn)]) << (4 * (kk % 8))));
    }
  return out;
}
}  // namespace

// Groups of 32 and 64 (whole words: per-group tables) and of 12 (words straddle groups:
// the per-element path).
TEST(QuantGptq, DequantizesEveryElementToOutInOrder) {
  for (const std::int64_t group : {32, 64, 12}) {
    SCOPED_TRACE("group " + std::to_string(group));
    const std::int64_t k = 64, n = 5, groups = (k + group - 1) / group;
    std::mt19937 rng(3);
    std::vector<std::vector<int>> q(k, std::vector<int>(n));
    for (auto& row : q)
      for (auto& v : row) v = static_cast<int>(rng() % 16);
    std::vector<std::int32_t> qweight = pack_along_k(q, k, n);
    std::vector<std::uint16_t> scales_f16(static_cast<std::size_t>(groups * n));
    for (std::size_t i = 0; i < scales_f16.size(); ++i) scales_f16[i] = static_cast<std::uint16_t>(0x1C00 + rng() % 0x1000);
    gptq_shape s = check_gptq_shapes("mlp.experts.0.down_proj", std::vector<std::int64_t>{k / 8, n},
                                     std::vector<std::int64_t>{groups, n}, group);
    std::vector<float> scales = scales_as_f32("scales", dtype::F16, scales_f16.data(), scales_f16.size());
    std::vector<std::uint16_t> out(static_cast<std::size_t>(k * n));
    dequantize_gptq_int4(qweight.data(), scales, s, out.data());
    for (std::int64_t nn = 0; nn < n; ++nn)
      for (std::int64_t kk = 0; kk < k; ++kk) {
        double scale = f16_to_f32(scales_f16[static_cast<std::size_t>(kk / group * n + nn)]);
        double expect = (q[static_cast<std::size_t>(kk)][static_cast<std::size_t>(nn)] - 8) * scale;
        ASSERT_EQ(out[static_cast<std::size_t>(nn * k + kk)], ref_bf16(expect)) << nn << "," << kk;
      }
  }
}

TEST(QuantGptq, ReadsTheConfigAndRefusesUnsupportedSchemes) {
  auto cfg = [](const char* text) { return json::parse(text, "config.json"); };
  EXPECT_EQ(read_gptq_config(cfg(R"({"quant_method":"gptq","bits":4,"group_size":128,"sym":true,"desc_act":false})"),
                             "config.json")
                .group_size,
            128);
  EXPECT_EQ(read_gptq_config(cfg(R"({"quant_method":"gptq","bits":4})"), "c").group_size, -1);
  std::string sym = message_of([&] {
    read_gptq_config(cfg(R"({"quant_method":"gptq","bits":4,"group_size":128,"sym":false})"), "ckpt/config.json");
  });
  EXPECT_NE(sym.find("ckpt/config.json: quantization_config.sym is false: asymmetric GPTQ"), std::string::npos) << sym;
  std::string act = message_of([&] {
    read_gptq_config(cfg(R"({"quant_method":"gptq","bits":4,"desc_act":true})"), "ckpt/config.json");
  });
  EXPECT_NE(act.find("ckpt/config.json: quantization_config.desc_act is true: act-order GPTQ"), std::string::npos) << act;
  EXPECT_NE(message_of([&] { read_gptq_config(cfg(R"({"quant_method":"gptq","bits":8})"), "c"); })
                .find("quantization_config.bits is 8, expected 4"),
            std::string::npos);
  EXPECT_NE(message_of([&] { read_gptq_config(cfg(R"({"quant_method":"awq","bits":4})"), "c"); })
                .find("quant_method is \"awq\", expected \"gptq\""),
            std::string::npos);
}

TEST(QuantGptq, RefusesNonTrivialGIdx) {
  gptq_shape s{16, 2, 8};
  std::vector<std::int32_t> ok = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_NO_THROW(check_gptq_g_idx("t", ok.data(), s));
  std::vector<std::int32_t> perm = ok;
  std::swap(perm[3], perm[12]);
  std::string m = message_of([&] { check_gptq_g_idx("model.layers.0.mlp.experts.2.up_proj.g_idx", perm.data(), s); });
  EXPECT_NE(m.find("model.layers.0.mlp.experts.2.up_proj.g_idx: g_idx[3] = 1, expected 0"), std::string::npos) << m;
  EXPECT_NE(m.find("act-order"), std::string::npos);
}

TEST(QuantGptq, RefusesMismatchedShapes) {
  EXPECT_NE(message_of([] {
              check_gptq_shapes("x.qweight", std::vector<std::int64_t>{8, 4}, std::vector<std::int64_t>{3, 4}, 32);
            }).find("x.qweight: GPTQ scales shape [3, 4], expected [2, 4] for K = 64 in groups of 32"),
            std::string::npos);
}

TEST(QuantPackQuantized, DequantizesEveryElementWithARaggedLastWord) {
  const std::int64_t n = 3, k = 20, group = 8;  // K not a multiple of 8: the last int32 is half used
  std::mt19937 rng(5);
  std::vector<std::vector<int>> q(n, std::vector<int>(k));
  for (auto& row : q)
    for (auto& v : row) v = static_cast<int>(rng() % 16);
  std::vector<std::int32_t> packed(static_cast<std::size_t>(n * 3), 0);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < k; ++c) {
      auto& w = packed[static_cast<std::size_t>(r * 3 + c / 8)];
      w = static_cast<std::int32_t>(static_cast<std::uint32_t>(w) |
                                    (static_cast<std::uint32_t>(q[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)]) << (4 * (c % 8))));
    }
  std::vector<std::uint16_t> scales_bf16(static_cast<std::size_t>(n * 3));
  for (auto& s : scales_bf16) s = static_cast<std::uint16_t>(0x3B00 + rng() % 0x200);
  pack_quantized_shape s = check_pack_quantized_shapes("experts.0.gate_proj.weight_packed", std::vector<std::int64_t>{n, 3},
                                                       std::vector<std::int64_t>{n, 3}, n, k, group);
  std::vector<float> scales = scales_as_f32("s", dtype::BF16, scales_bf16.data(), scales_bf16.size());
  std::vector<std::uint16_t> out(static_cast<std::size_t>(n * k));
  dequantize_pack_quantized_int4(packed.data(), scales, s, out.data());
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < k; ++c) {
      double expect = (q[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] - 8) *
                      static_cast<double>(bf16_to_f32(scales_bf16[static_cast<std::size_t>(r * 3 + c / group)]));
      ASSERT_EQ(out[static_cast<std::size_t>(r * k + c)], ref_bf16(expect)) << r << "," << c;
    }
}

TEST(QuantPackQuantized, ReadsTheConfigAndRefusesAsymmetric) {
  auto cfg = [](const std::string& weights) {
    return json::parse(R"({"quant_method":"compressed-tensors","format":"pack-quantized","config_groups":{"group_0":{"targets":["Linear"],"weights":)" +
                           weights + "}}}",
                       "config.json");
  };
  EXPECT_EQ(read_pack_quantized_config(
                cfg(R"({"num_bits":4,"type":"int","symmetric":true,"strategy":"group","group_size":32,"actorder":null})"), "c")
                .group_size,
            32);
  EXPECT_EQ(read_pack_quantized_config(cfg(R"({"num_bits":4,"type":"int","symmetric":true,"strategy":"channel"})"), "c")
                .group_size,
            0);
  std::string m = message_of([&] {
    read_pack_quantized_config(cfg(R"({"num_bits":4,"type":"int","symmetric":false,"strategy":"group","group_size":32})"),
                               "ckpt/config.json");
  });
  EXPECT_NE(m.find("ckpt/config.json: quantization_config.config_groups.group_0.weights.symmetric is false"),
            std::string::npos)
      << m;
  EXPECT_NE(message_of([&] {
              read_pack_quantized_config(
                  cfg(R"({"num_bits":4,"type":"int","symmetric":true,"strategy":"group","group_size":32,"actorder":"group"})"),
                  "c");
            }).find("actorder is \"group\""),
            std::string::npos);
}
