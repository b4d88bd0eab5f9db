// SPDX-License-Identifier: Apache-2.0
// FP8 experts through layout conversions: each expert matrix and its scales are one piece,
// moved together at block granularity. The DeepSeek-V3 FP8 fixture converts bit-exactly
// both ways; tiny checkpoints built here cover per-channel scales and the refusals.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/plan/compare_decoded.h"
#include "quant_support.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_quant_fp8_conversions {
namespace {

void expect_tensor(const checkpoint& c, const std::string& name, dtype t, std::vector<std::int64_t> shape,
                   const std::byte* bytes) {
  const auto* e = c.find(name);
  ASSERT_NE(e, nullptr) << name;
  EXPECT_EQ(e->info->type, t) << name;
  EXPECT_EQ(e->info->shape, shape) << name;
  if (e->info->type == t && e->info->shape == shape) {
    EXPECT_EQ(std::memcmp(e->data(), bytes, e->info->nbytes()), 0) << name;
  }
}

const std::string fp8_hf = "deepseek_v3_fp8/hf";


std::string convert_error(const std::string& in, const std::string& out, const std::string& to) {
  try {
    test::convert(in, out, to);
  } catch (const error& e) {
    return e.what();
  }
  return "(no error)";
}

// A tiny deepseek_v3 FP8 checkpoint: E experts of layer 1, per-expert weights with scales
// named `suffix` of the shape `scale_shape(rows, cols)` and values 1 + expert + piece/4.
using shape_fn = std::vector<std::int64_t> (*)(std::int64_t rows, std::int64_t cols);
void write_fp8_experts(const std::string& dir, int E, int H, int I, const std::string& suffix, shape_fn scale_shape,
                       unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::vector<test::tiny_tensor> ts;
  const char* projs[] = {"gate_proj", "up_proj", "down_proj"};
  for (int e = 0; e < E; ++e)
    for (int p = 0; p < 3; ++p) {
      std::int64_t rows = p == 2 ? H : I, cols = p == 2 ? I : H;
      std::string base = "model.layers.1.mlp.experts." + std::to_string(e) + "." + projs[p] + ".weight";  // scale: base + suffix
      ts.push_back({base, dtype::F8_E4M3, {rows, cols}, test::as_bytes(test::random_fp8(static_cast<std::size_t>(rows * cols), rng))});
      std::vector<std::int64_t> ss = scale_shape(rows, cols);
      std::int64_t n = 1;
      for (auto d : ss) n *= d;
      std::vector<float> s(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < s.size(); ++i) s[i] = 1.0f + static_cast<float>(e) + static_cast<float>(p) / 4 + static_cast<float>(i) / 64;
      ts.push_back({base + suffix, dtype::F32, ss, test::as_bytes(s)});
    }
  ts.push_back({"model.layers.1.mlp.gate.weight", dtype::BF16, {E, H}, std::vector<std::byte>(static_cast<std::size_t>(E * H * 2))});
  json::value q(json::object{{"quant_method", json::value("fp8")},
                             {"weight_block_size", json::value(json::array{json::value(128), json::value(128)})}});
  test::write_checkpoint(dir, test::deepseek_config(E, H, I, q), ts);
}

std::vector<std::int64_t> block_scales(std::int64_t r, std::int64_t c) { return {(r + 127) / 128, (c + 127) / 128}; }
std::vector<std::int64_t> channel_scales(std::int64_t r, std::int64_t) { return {r}; }

}  // namespace

TEST(QuantFp8Conversions, HfToTransformersV5GivesTheInMemoryLayer1Experts) {
  test::temp_dir d;
  test::convert(test::fixture(fp8_hf), d / "v5", "transformers_v5");
  checkpoint out = checkpoint::open(d / "v5");
  checkpoint want = checkpoint::open(test::fixture("deepseek_v3_fp8/transformers_v5_layer1_experts.safetensors"));
  ASSERT_EQ(want.tensors().size(), 4u);
  for (const auto& t : want.tensors()) expect_tensor(out, t.info->name, t.info->type, t.info->shape, t.data());
  for (const auto& t : out.tensors())
    EXPECT_EQ(t.info->name.find("mlp.experts.0."), std::string::npos) << t.info->name << " left split";
}

TEST(QuantFp8Conversions, TransformersV5BackToHfReproducesTheFixture) {
  test::temp_dir d;
  test::convert(test::fixture(fp8_hf), d / "v5", "transformers_v5");
  test::convert(d / "v5", d / "back", "hf", "transformers_v5");
  test::expect_same_tensors(d / "back/model.safetensors", test::fixture(fp8_hf + "/model.safetensors"));
  // The per-expert scales come back 1-D, as transformers 5.17 saved them (squeeze_expert_scales).
  checkpoint back = checkpoint::open(d / "back");
  EXPECT_EQ(back.find("model.layers.1.mlp.experts.3.down_proj.weight_scale_inv")->info->shape, (std::vector<std::int64_t>{2}));
}

// DeepSeek's hub files keep per-expert block scales 2-D ([ceil(out/128), ceil(in/128)]); where
// one of those is 1, an hf -> hf copy squeezed them to 1-D (not bit for bit). A one-expert 2-D
// source scale keeps its shape now; through a stacked layout it comes back 1-D (documented).
TEST(QuantFp8Conversions, TwoDimensionalPerExpertScalesKeepTheirShapeInAPerExpertCopy) {
  test::temp_dir d;
  checkpoint hf = checkpoint::open(test::fixture(fp8_hf));
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : hf.tensors()) {
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    const std::string tail = "_scale_inv";
    if (x.name.find(".mlp.experts.") != std::string::npos && x.name.size() > tail.size() &&
        x.name.compare(x.name.size() - tail.size(), tail.size(), tail) == 0) {
      const auto& w = hf.find(x.name.substr(0, x.name.size() - tail.size()))->info->shape;
      x.shape = {(w[0] + 127) / 128, (w[1] + 127) / 128};  // as the hub writes them: [1, 2] or [2, 1]
    }
    ts.push_back(std::move(x));
  }
  test::write_checkpoint(d / "src", hf.config(), ts);
  auto r = test::run_moereg("convert " + (d / "src") + " " + (d / "copy") + " --to hf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("verify " + (d / "src") + " " + (d / "copy"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  checkpoint copy = checkpoint::open(d / "copy");
  EXPECT_EQ(copy.find("model.layers.1.mlp.experts.3.down_proj.weight_scale_inv")->info->shape, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(copy.find("model.layers.1.mlp.experts.3.gate_proj.weight_scale_inv")->info->shape, (std::vector<std::int64_t>{1, 2}));
}

TEST(QuantFp8Conversions, EveryLayoutRoundTripsBitExact) {
  checkpoint hf = checkpoint::open(test::fixture(fp8_hf));
  family_spec spec = test::spec_for(hf);
  test::temp_dir d;
  std::vector<std::string> layouts;
  for (const auto& l : spec.layouts)
    // mistral: params.json native, written by a hook library; a .gguf holds no FP8 (GgufCheckpoint tests the refusal).
    if (l.name != "mistral" && l.container != "gguf") layouts.push_back(l.name);
  ASSERT_GE(layouts.size(), 4u);
  for (const auto& a : layouts) {
    test::convert(test::fixture(fp8_hf), d / a, a, "hf");
    test::convert(d / a, d / (a + "_back"), "hf", a);
    test::expect_same_tensors(d / (a + "_back/model.safetensors"), test::fixture(fp8_hf + "/model.safetensors"));
  }
  for (const auto& a : layouts)
    for (const auto& b : layouts) {
      if (a == b) continue;
      test::convert(d / a, d / (a + "_to_" + b), b, a);
      test::expect_same_tensors(d / (a + "_to_" + b + "/model.safetensors"), d / (b + "/model.safetensors"));
    }
}

TEST(QuantFp8Conversions, QuantizedNonExpertTensorsFollowTheirRenames) {
  test::temp_dir d;
  test::convert(test::fixture(fp8_hf), d / "gguf", "gguf_names");
  checkpoint src = checkpoint::open(test::fixture(fp8_hf)), out = checkpoint::open(d / "gguf");
  const std::pair<const char*, const char*> renamed[] = {
      {"model.layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"},
      {"model.layers.1.self_attn.o_proj.weight_scale_inv", "blk.1.attn_output.weight_scale_inv"},
      // The fixture's garbage scales: opaque bytes, carried as they are.
      {"model.layers.2.self_attn.kv_a_proj_with_mqa.weight_scale_inv", "blk.2.attn_kv_a_mqa.weight_scale_inv"},
      {"model.layers.1.mlp.shared_experts.down_proj.weight_scale_inv", "blk.1.ffn_down_shexp.weight_scale_inv"},
      {"model.layers.0.mlp.gate_proj.weight_scale_inv", "blk.0.ffn_gate.weight_scale_inv"}};
  for (const auto& [from, to] : renamed) {
    const auto* a = src.find(from);
    ASSERT_NE(a, nullptr) << from;
    expect_tensor(out, to, a->info->type, a->info->shape, a->data());
    EXPECT_EQ(out.find(from), nullptr) << from << " kept its old name";
  }
  // Stacked expert scales under llama.cpp names.
  const auto* gate = out.find("blk.1.ffn_gate_exps.weight_scale_inv");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->info->shape, (std::vector<std::int64_t>{16, 1, 2}));
}

TEST(QuantFp8Conversions, ExpertRangeTakesTheScalesOfThoseExperts) {
  test::temp_dir d;
  plan_options o;
  o.experts = {{5, 9}};
  test::convert(test::fixture(fp8_hf), d / "v5", "transformers_v5", "", o);
  checkpoint part = checkpoint::open(d / "v5");
  checkpoint full = checkpoint::open(test::fixture("deepseek_v3_fp8/transformers_v5_layer1_experts.safetensors"));
  for (const char* name : {"model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.gate_up_proj_scale_inv",
                           "model.layers.1.mlp.experts.down_proj", "model.layers.1.mlp.experts.down_proj_scale_inv"}) {
    const auto* all = full.find(name);
    std::vector<std::int64_t> shape = all->info->shape;
    std::uint64_t per = all->info->nbytes() / static_cast<std::uint64_t>(shape[0]);
    shape[0] = 4;
    expect_tensor(part, name, all->info->type, shape, all->data() + 5 * per);
  }
}

TEST(QuantFp8Conversions, DecodedPiecesCarryTheirScales) {
  checkpoint ck = checkpoint::open(test::fixture(fp8_hf));
  family_spec spec = test::spec_for(ck);
  model_dims dims = read_dims(spec, ck.config(), ck.config_path());
  decoded_checkpoint dec = decode_checkpoint(ck, spec, detect_layout(ck, spec, dims), dims);
  EXPECT_EQ(dec.quant.scheme, quant_scheme::fp8);
  EXPECT_EQ(dec.expert_dtype, dtype::F8_E4M3);
  EXPECT_EQ(dec.scale_dtype, dtype::F32);
  checkpoint fused = checkpoint::open(test::fixture("deepseek_v3_fp8/transformers_v5_layer1_experts.safetensors"));
  const float* gu = reinterpret_cast<const float*>(fused.find("model.layers.1.mlp.experts.gate_up_proj_scale_inv")->data());
  const float* dn = reinterpret_cast<const float*>(fused.find("model.layers.1.mlp.experts.down_proj_scale_inv")->data());
  for (int e : {0, 3, 15}) {
    const auto& s = dec.expert_scales.at(1)[static_cast<std::size_t>(e)];
    const piece_scales& gate = s[0];
    EXPECT_EQ(gate.grid.block_rows, 128);
    EXPECT_EQ(gate.grid.rows, 128);
    EXPECT_EQ(gate.grid.cols, 256);
    ASSERT_EQ(gate.scale.rows, 1);
    ASSERT_EQ(gate.scale.cols, 2);
    for (int c = 0; c < 2; ++c) {
      float v;
      std::memcpy(&v, gate.scale.at(0, c), 4);
      EXPECT_EQ(v, gu[e * 4 + 0 * 2 + c]);
      std::memcpy(&v, s[1].scale.at(0, c), 4);
      EXPECT_EQ(v, gu[e * 4 + 1 * 2 + c]);
      std::memcpy(&v, s[2].scale.at(c, 0), 4);  // down [256, 128]: scale grid [2, 1]
      EXPECT_EQ(v, dn[e * 2 + c]);
    }
  }
  // Through the fused layout the same pieces have the same scales.
  test::temp_dir d;
  test::convert(test::fixture(fp8_hf), d / "grouped", "grouped");
  checkpoint g = checkpoint::open(d / "grouped");
  decoded_checkpoint dg = decode_checkpoint(g, spec, *spec.find_layout("grouped"), dims);
  for (int p = 0; p < 3; ++p) {
    const piece_scales& a = dec.expert_scales.at(2)[9][static_cast<std::size_t>(p)];
    const piece_scales& b = dg.expert_scales.at(2)[9][static_cast<std::size_t>(p)];
    ASSERT_EQ(a.scale.rows, b.scale.rows);
    ASSERT_EQ(a.scale.cols, b.scale.cols);
    for (std::int64_t r = 0; r < a.scale.rows; ++r)
      for (std::int64_t c = 0; c < a.scale.cols; ++c) EXPECT_EQ(std::memcmp(a.scale.at(r, c), b.scale.at(r, c), 4), 0);
  }
}

TEST(QuantFp8Conversions, PerChannelScalesStackFuseAndSplit) {
  test::temp_dir d;
  write_fp8_experts(d / "hf", 4, 256, 128, "_scale", channel_scales);
  test::convert(d / "hf", d / "v5", "transformers_v5");
  checkpoint in = checkpoint::open(d / "hf"), v5 = checkpoint::open(d / "v5");
  const auto* s = v5.find("model.layers.1.mlp.experts.gate_up_proj_scale");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->info->shape, (std::vector<std::int64_t>{4, 256, 1}));
  // Expert 2: gate's 128 row scales, then up's.
  const auto* gate = in.find("model.layers.1.mlp.experts.2.gate_proj.weight_scale");
  const auto* up = in.find("model.layers.1.mlp.experts.2.up_proj.weight_scale");
  EXPECT_EQ(std::memcmp(s->data() + 2 * 256 * 4, gate->data(), 128 * 4), 0);
  EXPECT_EQ(std::memcmp(s->data() + 2 * 256 * 4 + 128 * 4, up->data(), 128 * 4), 0);
  // Back to per-expert [N] scales (the deepseek hf layout squeezes), and through a transposed layout.
  test::convert(d / "v5", d / "back", "hf");
  test::expect_same_tensors(d / "back/model.safetensors", d / "hf/model.safetensors");
  test::convert(d / "hf", d / "grouped", "grouped");
  EXPECT_EQ(checkpoint::open(d / "grouped").find("model.layers.1.mlp.experts.gate_and_up_projs_scale")->info->shape,
            (std::vector<std::int64_t>{4, 1, 256}));
  test::convert(d / "grouped", d / "back2", "hf");
  test::expect_same_tensors(d / "back2/model.safetensors", d / "hf/model.safetensors");
}

TEST(QuantFp8Conversions, FusingAcrossABlockIsRefused) {
  test::temp_dir d;
  write_fp8_experts(d / "hf", 2, 256, 192, "_scale_inv", block_scales);  // gate ends at row 192, inside a 128-row block
  std::string msg = convert_error(d / "hf", d / "v5", "transformers_v5");
  EXPECT_HAS(msg, "model.layers.1.mlp.experts.gate_up_proj_scale_inv");
  EXPECT_HAS(msg, "fusing after 192 rows would split a quantization block (128x128 blocks, block size 128 rows)");
  // Unfused layouts keep whole blocks: still fine.
  test::convert(d / "hf", d / "gguf", "gguf_names");
  test::convert(d / "gguf", d / "back", "hf");
  test::expect_same_tensors(d / "back/model.safetensors", d / "hf/model.safetensors");
}

TEST(QuantFp8Conversions, MissingOrMisshapenScalesAreRefused) {
  test::temp_dir d;
  // Without expert 1's up scale, and with expert 0's down scale of the wrong shape.
  write_fp8_experts(d / "ok", 2, 256, 128, "_scale_inv", block_scales);
  checkpoint ok = checkpoint::open(d / "ok");
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : ok.tensors()) {
    if (t.info->name == "model.layers.1.mlp.experts.1.up_proj.weight_scale_inv") continue;
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape,
                        std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    if (t.info->name == "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv") x.shape = {1, 2};  // [256, 128] needs [2, 1]
    ts.push_back(std::move(x));
  }
  test::write_checkpoint(d / "bad", ok.config(), ts);
  std::string msg = convert_error(d / "bad", d / "v5", "transformers_v5");
  EXPECT_HAS(msg, "model.layers.1.mlp.experts.1.up_proj.weight: its scale tensor is missing: expected "
                  "model.layers.1.mlp.experts.1.up_proj.weight_scale_inv");
  EXPECT_HAS(msg, "model.layers.1.mlp.experts.0.down_proj.weight_scale_inv: scale shape [1, 2] does not fit weight [256, 128]");
  EXPECT_FALSE(fs::exists(d / "v5"));
}

TEST(QuantFp8Conversions, CommandLineRefusesAndLeavesNothing) {
  test::temp_dir d;
  write_fp8_experts(d / "split", 2, 256, 192, "_scale_inv", block_scales);
  auto r = test::run_moereg("convert " + d / "split" + " " + d / "out" + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.output, "model.layers.1.mlp.experts.gate_up_proj_scale_inv: fusing after 192 rows would split a quantization block");
  EXPECT_FALSE(fs::exists(d / "out"));

  write_fp8_experts(d / "ok", 2, 256, 128, "_scale_inv", block_scales);
  checkpoint ok = checkpoint::open(d / "ok");
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : ok.tensors())
    if (t.info->name != "model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv")
      ts.push_back({t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())});
  test::write_checkpoint(d / "missing", ok.config(), ts);
  r = test::run_moereg("convert " + d / "missing" + " " + d / "out2" + " --to grouped");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.output, "its scale tensor is missing: expected model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv");
  EXPECT_FALSE(fs::exists(d / "out2"));
}

TEST(QuantFp8Conversions, VerifyThroughLayoutsComparesTheScales) {
  test::temp_dir d;
  test::convert(test::fixture(fp8_hf), d / "grouped", "grouped");
  checkpoint hf = checkpoint::open(test::fixture(fp8_hf));
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : hf.tensors()) {
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    if (x.name == "model.layers.2.mlp.experts.4.up_proj.weight_scale_inv") x.bytes[5] ^= std::byte{1};
    ts.push_back(std::move(x));
  }
  test::write_checkpoint(d / "changed", hf.config(), ts);
  family_spec spec = test::spec_for(hf);
  model_dims dims = read_dims(spec, hf.config(), hf.config_path());
  checkpoint g = checkpoint::open(d / "grouped"), ch = checkpoint::open(d / "changed");
  decoded_checkpoint a = decode_checkpoint(g, spec, *spec.find_layout("grouped"), dims);
  decoded_checkpoint same = decode_checkpoint(hf, spec, *spec.find_layout("hf"), dims);
  decoded_checkpoint changed = decode_checkpoint(ch, spec, *spec.find_layout("hf"), dims);
  EXPECT_TRUE(compare_decoded(a, same, {}, {}).equal());
  comparison c = compare_decoded(a, changed, {}, {});
  ASSERT_EQ(c.differences.size(), 1u) << test::diff_text(c);
  EXPECT_EQ(c.differences[0].name, "layer 2 expert 4 up scales");
  EXPECT_EQ(c.differences[0].kind, "bytes");
}

}  // namespace test_quant_fp8_conversions
