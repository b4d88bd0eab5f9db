// SPDX-License-Identifier: Apache-2.0
// MXFP4, symmetric GPTQ int4 and compressed-tensors int4 experts: read, stacked and fused
// into transformers_v5 and back bit-exactly, refused where packed data would be transposed,
// and dequantized to bf16 by --dtype bf16, every element checked against a computation
// made here from the formats' definitions (FORMATS.md section 5).
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "quant_support.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

namespace {

constexpr int E = 4, H = 64, I = 32, G = 32;  // group of 32 inputs per scale
const char* projs[] = {"gate_proj", "up_proj", "down_proj"};

std::uint16_t bf16_of(double v) {
  if (v == 0) return std::signbit(v) ? 0x8000 : 0;
  int e = 0;
  double m = std::frexp(v, &e);
  float f = static_cast<float>(std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8));
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<std::uint16_t>(bits >> 16);
}

double f16_value(std::uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

double e2m1_value(int nib) {
  static const double mag[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return nib & 8 ? -mag[nib & 7] : mag[nib & 7];
}

std::uint16_t bf16_at(const checkpoint::entry& t, std::int64_t i) {
  std::uint16_t v;
  std::memcpy(&v, t.data() + 2 * i, 2);
  return v;
}

// One scheme's tiny checkpoint: per expert and projection, codes q[n][k] in 0..15 and the
// stored tensors; `value(e, p, n, k)` is the exact dequantized element.
struct scheme {
  std::string name;
  json::value quantization;
  std::function<std::vector<test::tiny_tensor>(const std::string& base, int N, int K, std::mt19937& rng)> tensors;
  std::function<double(const checkpoint& ck, const std::string& base, int N, int K, int n, int k)> value;
  std::string weight_suffix;  // stored data name from base ("....gate_proj")
};

scheme gptq() {
  scheme s;
  s.name = "gptq";
  s.quantization = json::parse(
      R"({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": false, "sym": true, "checkpoint_format": "gptq"})", "q");
  s.weight_suffix = ".qweight";
  s.tensors = [](const std::string& base, int N, int K, std::mt19937& rng) {
    std::vector<std::uint32_t> qw(static_cast<std::size_t>(K / 8 * N));
    for (auto& w : qw) w = static_cast<std::uint32_t>(rng());
    std::vector<std::uint16_t> sc(static_cast<std::size_t>(K / G * N));
    for (auto& x : sc) x = static_cast<std::uint16_t>(0x2000 + rng() % 0x1800);  // positive normal f16
    std::vector<std::int32_t> g_idx(static_cast<std::size_t>(K));
    for (int k = 0; k < K; ++k) g_idx[static_cast<std::size_t>(k)] = k / G;
    std::vector<std::int32_t> zeros(static_cast<std::size_t>(K / G * N / 8), 0x77777777);
    return std::vector<test::tiny_tensor>{{base + ".qweight", dtype::I32, {K / 8, N}, test::as_bytes(qw)},
                                          {base + ".scales", dtype::F16, {K / G, N}, test::as_bytes(sc)},
                                          {base + ".g_idx", dtype::I32, {K}, test::as_bytes(g_idx)},
                                          {base + ".qzeros", dtype::I32, {K / G, N / 8}, test::as_bytes(zeros)}};
  };
  s.value = [](const checkpoint& ck, const std::string& base, int N, int, int n, int k) {
    std::uint32_t w;
    std::memcpy(&w, ck.find(base + ".qweight")->data() + 4 * ((k / 8) * N + n), 4);
    std::uint16_t sc;
    std::memcpy(&sc, ck.find(base + ".scales")->data() + 2 * ((k / G) * N + n), 2);
    return (static_cast<int>((w >> (4 * (k % 8))) & 15) - 8) * f16_value(sc);
  };
  return s;
}

scheme compressed() {
  scheme s;
  s.name = "compressed";
  s.quantization = json::parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
      "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": true,
      "strategy": "group", "group_size": 32}}}})", "q");
  s.weight_suffix = ".weight_packed";
  s.tensors = [](const std::string& base, int N, int K, std::mt19937& rng) {
    std::vector<std::uint32_t> p(static_cast<std::size_t>(N * K / 8));
    for (auto& w : p) w = static_cast<std::uint32_t>(rng());
    std::vector<std::uint16_t> sc(static_cast<std::size_t>(N * K / G));
    for (auto& x : sc) x = static_cast<std::uint16_t>(0x3A00 + rng() % 0x0400);  // positive bf16 near 1e-3
    std::vector<std::int64_t> shape{N, K};
    return std::vector<test::tiny_tensor>{{base + ".weight_packed", dtype::I32, {N, K / 8}, test::as_bytes(p)},
                                          {base + ".weight_scale", dtype::BF16, {N, K / G}, test::as_bytes(sc)},
                                          {base + ".weight_shape", dtype::I64, {2}, test::as_bytes(shape)}};
  };
  s.value = [](const checkpoint& ck, const std::string& base, int, int K, int n, int k) {
    std::uint32_t w;
    std::memcpy(&w, ck.find(base + ".weight_packed")->data() + 4 * (n * (K / 8) + k / 8), 4);
    std::uint16_t sc;
    std::memcpy(&sc, ck.find(base + ".weight_scale")->data() + 2 * (n * (K / G) + k / G), 2);
    std::uint32_t bits = static_cast<std::uint32_t>(sc) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return (static_cast<int>((w >> (4 * (k % 8))) & 15) - 8) * static_cast<double>(f);
  };
  return s;
}

scheme mxfp4() {
  scheme s;
  s.name = "mxfp4";
  s.quantization = json::parse(R"({"quant_method": "mxfp4"})", "q");
  s.weight_suffix = ".weight";
  s.tensors = [](const std::string& base, int N, int K, std::mt19937& rng) {
    std::vector<std::uint8_t> p(static_cast<std::size_t>(N * K / 2)), sc(static_cast<std::size_t>(N * K / 32));
    for (auto& b : p) b = static_cast<std::uint8_t>(rng());
    for (auto& u : sc) u = static_cast<std::uint8_t>(110 + rng() % 30);
    return std::vector<test::tiny_tensor>{{base + ".weight", dtype::U8, {N, K / 2}, test::as_bytes(p)},
                                          {base + ".scale", dtype::F8_E8M0, {N, K / 32}, test::as_bytes(sc)}};
  };
  s.value = [](const checkpoint& ck, const std::string& base, int, int K, int n, int k) {
    auto byte = static_cast<std::uint8_t>(ck.find(base + ".weight")->data()[n * (K / 2) + k / 2]);
    auto u = static_cast<std::uint8_t>(ck.find(base + ".scale")->data()[n * (K / 32) + k / 32]);
    return e2m1_value(k % 2 ? byte >> 4 : byte & 15) * std::ldexp(1.0, u - 127);
  };
  return s;
}

std::string base_of(int e, int p) { return "model.layers.1.mlp.experts." + std::to_string(e) + "." + projs[p]; }

void write_scheme(const scheme& s, const std::string& dir) {
  std::mt19937 rng(11);
  std::vector<test::tiny_tensor> ts;
  for (int e = 0; e < E; ++e)
    for (int p = 0; p < 3; ++p)
      for (auto& t : s.tensors(base_of(e, p), p == 2 ? H : I, p == 2 ? I : H, rng)) ts.push_back(std::move(t));
  ts.push_back({"model.layers.1.mlp.gate.weight", dtype::BF16, {E, H}, std::vector<std::byte>(E * H * 2)});
  test::write_checkpoint(dir, test::deepseek_config(E, H, I, s.quantization), ts);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(QuantPackedConversions, StackAndFuseIntoTransformersV5AndBackBitExact) {
  for (const scheme& s : {gptq(), compressed(), mxfp4()}) {
    SCOPED_TRACE(s.name);
    test::temp_dir d;
    write_scheme(s, d / "hf");
    test::convert(d / "hf", d / "v5", "transformers_v5");
    checkpoint v5 = checkpoint::open(d / "v5"), hf = checkpoint::open(d / "hf");
    const std::string fused = "model.layers.1.mlp.experts.gate_up_proj";
    const std::string data = s.name == "mxfp4" ? fused : fused + s.weight_suffix;
    const auto* t = v5.find(data);
    ASSERT_NE(t, nullptr) << data;
    // Expert 2's up projection inside the fused tensor, as stored units.
    const auto& up = *hf.find(base_of(2, 1) + s.weight_suffix);
    if (s.name == "gptq") {
      EXPECT_EQ(t->info->shape, (std::vector<std::int64_t>{E, H / 8, 2 * I}));  // [K/8, N]: fused along N
      for (int kw = 0; kw < H / 8; ++kw)
        EXPECT_EQ(std::memcmp(t->data() + 4 * ((2 * (H / 8) + kw) * 2 * I + I), up.data() + 4 * kw * I, 4 * I), 0);
      EXPECT_EQ(v5.find(fused + ".g_idx")->info->shape, (std::vector<std::int64_t>{E, H}));
      EXPECT_EQ(v5.find(fused + ".qzeros")->info->shape, (std::vector<std::int64_t>{E, H / G, 2 * I / 8}));
      EXPECT_EQ(v5.find(fused + ".scales")->info->shape, (std::vector<std::int64_t>{E, H / G, 2 * I}));
    } else {
      std::int64_t units = s.name == "mxfp4" ? H / 2 : H / 8, es = s.name == "mxfp4" ? 1 : 4;
      EXPECT_EQ(t->info->shape, (std::vector<std::int64_t>{E, 2 * I, units}));
      EXPECT_EQ(std::memcmp(t->data() + es * (2 * 2 * I + I) * units, up.data(), up.info->nbytes()), 0);
    }
    test::convert(d / "v5", d / "back", "hf");
    test::expect_same_tensors(d / "back/model.safetensors", d / "hf/model.safetensors");
    // Expert slices keep whole packed units and their scales.
    plan_options o;
    o.experts = {{1, 3}};
    test::convert(d / "v5", d / "part", "hf", "", o);
    checkpoint part = checkpoint::open(d / "part");
    for (const auto& x : part.tensors()) {
      if (x.info->name.find("experts.") == std::string::npos) continue;
      EXPECT_EQ(std::memcmp(x.data(), hf.find(x.info->name)->data(), x.info->nbytes()), 0) << x.info->name;
    }
    EXPECT_NE(part.find(base_of(2, 0) + s.weight_suffix), nullptr);
    EXPECT_EQ(part.find(base_of(3, 0) + s.weight_suffix), nullptr);
  }
}

TEST(QuantPackedConversions, TransposingPackedWeightsIsRefused) {
  for (const scheme& s : {gptq(), compressed(), mxfp4()}) {
    test::temp_dir d;
    write_scheme(s, d / "hf");
    std::string msg = error_of([&] { test::convert(d / "hf", d / "g", "grouped"); });
    EXPECT_NE(msg.find("layout 'grouped' entry 'gate_up' stores its matrices transposed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("packed along the input axis and cannot be transposed"), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(d / "g/model.safetensors"));
  }
}

TEST(QuantPackedConversions, DequantizedToBf16ElementByElement) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  for (const scheme& s : {gptq(), compressed(), mxfp4()}) {
    SCOPED_TRACE(s.name);
    test::temp_dir d;
    write_scheme(s, d / "hf");
    plan_options o;
    o.dequantize = true;
    // Dequantized data has no packing axis left, so even the transposed layout is fine.
    for (const char* to : {"transformers_v5", "grouped"}) {
      test::convert(d / "hf", d / to, to, "", o);
      checkpoint hf = checkpoint::open(d / "hf"), out = checkpoint::open(d / to);
      bool grouped = std::string(to) == "grouped";
      const auto* gu = out.find(grouped ? "model.layers.1.mlp.experts.gate_and_up_projs" : "model.layers.1.mlp.experts.gate_up_proj");
      const auto* dn = out.find(grouped ? "model.layers.1.mlp.experts.down_projs" : "model.layers.1.mlp.experts.down_proj");
      ASSERT_TRUE(gu && dn);
      EXPECT_EQ(gu->info->type, dtype::BF16);
      EXPECT_EQ(out.tensors().size(), 3u) << "only gate_up, down and the router: every companion dropped";
      std::int64_t checked = 0;
      for (int e = 0; e < E; ++e)
        for (int p = 0; p < 3; ++p) {
          int N = p == 2 ? H : I, K = p == 2 ? I : H;
          for (int n = 0; n < N; ++n)
            for (int k = 0; k < K; ++k, ++checked) {
              std::int64_t at;
              if (p < 2) at = grouped ? (e * H + k) * 2 * I + p * I + n : (e * 2 * I + p * I + n) * H + k;
              else at = grouped ? (e * I + k) * H + n : (e * H + n) * I + k;
              ASSERT_EQ(bf16_at(p < 2 ? *gu : *dn, at), bf16_of(s.value(hf, base_of(e, p), N, K, n, k)))
                  << to << " expert " << e << " " << projs[p] << " [" << n << ", " << k << "]";
            }
        }
      EXPECT_EQ(checked, E * 3 * I * H);
    }
  }
}

TEST(QuantPackedConversions, UnsupportedGptqIsRefusedNamingConfigAndField) {
  test::temp_dir d;
  scheme s = gptq();
  s.quantization.set("desc_act", json::value(true));
  write_scheme(s, d / "act");
  auto r = test::run_moereg("convert " + d / "act" + " " + d / "out" + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(d / "act/config.json: quantization_config.desc_act is true: act-order GPTQ"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));

  s = gptq();
  s.quantization.set("sym", json::value(false));
  write_scheme(s, d / "asym");
  r = test::run_moereg("convert " + d / "asym" + " " + d / "out" + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(d / "asym/config.json: quantization_config.sym is false"), std::string::npos) << r.output;

  // Zero points that are not the symmetric 8: refused by value, naming the tensor.
  write_scheme(gptq(), d / "zeros");
  checkpoint ok = checkpoint::open(d / "zeros");
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : ok.tensors()) {
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    if (x.name == base_of(3, 2) + ".qzeros") x.bytes[4] = std::byte{0x76};
    ts.push_back(std::move(x));
  }
  test::write_checkpoint(d / "zeros2", ok.config(), ts);
  std::string msg = error_of([&] { test::convert(d / "zeros2", d / "out2", "transformers_v5"); });
  EXPECT_NE(msg.find(base_of(3, 2) + ".qzeros: element 1 is 0x77777776, expected 0x77777777 (the symmetric zero point 8)"),
            std::string::npos) << msg;
}
