// SPDX-License-Identifier: Apache-2.0
// qwen3_5_moe as a .gguf: the text model in llama.cpp's qwen35moe architecture, written as
// convert_hf_to_gguf.py writes it (conversion/qwen.py Qwen3_5MoeTextModel): its names and
// metadata, and the value rewrites of the plugin's hooks (1 + w norms, -exp(A_log), the linear
// attention's value heads tiled, conv1d squeezed), each checked here against the fixture with
// the converter's arithmetic written out independently; read back, the language model equals
// the fixture bit for bit. The hooks refuse what would not come back exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "conversion_support.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/tensor/dtype.h"
#include "test_support.h"

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_qwen3_5_moe {
namespace {

constexpr const char* L = "model.language_model.layers.";
// The fixture's linear attention: 2 key heads, 4 value heads of 16, key heads of 16.
constexpr long nk = 2, nv = 4, hd = 16;

// A BF16 tensor of the fixture as floats.
std::vector<float> bf16_values(const checkpoint& c, const std::string& name) {
  const checkpoint::entry* e = c.find(name);
  EXPECT_NE(e, nullptr) << name;
  if (!e) return {};
  EXPECT_EQ(e->info->type, dtype::BF16) << name;
  std::vector<float> out(e->info->numel());
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, e->data() + 2 * i, 2);
    out[i] = bf16_to_f32(h);
  }
  return out;
}

std::vector<std::uint16_t> bf16_bits(const checkpoint& c, const std::string& name) {
  const checkpoint::entry* e = c.find(name);
  EXPECT_NE(e, nullptr) << name;
  if (!e) return {};
  std::vector<std::uint16_t> out(e->info->numel());
  std::memcpy(out.data(), e->data(), out.size() * 2);
  return out;
}

template <class T>
std::vector<T> gguf_values(const gguf_file& g, const std::string& name, ggml_type type) {
  const gguf_tensor* t = g.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  EXPECT_EQ(t->type, type) << name;
  std::size_t n = 1;
  for (auto d : t->shape) n *= static_cast<std::size_t>(d);
  std::vector<T> out(n);
  std::memcpy(out.data(), g.data(*t), n * sizeof(T));
  return out;
}

// llama.cpp's _reorder_v_heads as numpy does it: view [nk, nv/nk, rest] -> swap the first two
// axes -> flatten. Returns, for each position of the reordered rows, the source row.
std::vector<long> tiled_rows(long head_rows) {
  std::vector<long> src;
  const long r = nv / nk;
  for (long j = 0; j < r; ++j)
    for (long g = 0; g < nk; ++g)
      for (long k = 0; k < head_rows; ++k) src.push_back((g * r + j) * head_rows + k);
  return src;
}

class Qwen35Gguf : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new temp_dir();
    convert(fixture("qwen3_5_moe/hf"), *dir_ / "g", "gguf");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string gguf() { return *dir_ / "g/model.gguf"; }
  static temp_dir* dir_;
};
temp_dir* Qwen35Gguf::dir_ = nullptr;

TEST_F(Qwen35Gguf, NamesTypesAndShapesAreLlamaCppQwen35Moe) {
  gguf_file g(gguf());
  EXPECT_EQ(g.get_string("general.architecture"), "qwen35moe");
  EXPECT_EQ(g.tensors().size(), 73u) << "the fixture's 178 tensors less the vision tower's 21, 4 layers x 8 experts x 3 stacked into 12";
  for (const auto& t : g.tensors()) EXPECT_EQ(t.name.rfind("model.", 0), std::string::npos) << t.name << ": vision tower left out";
  struct want {
    const char* name;
    ggml_type type;
    std::vector<std::int64_t> shape;
  };
  for (const want& w : std::vector<want>{
           {"blk.0.attn_qkv.weight", ggml_type::BF16, {128, 64}},
           {"blk.0.attn_gate.weight", ggml_type::BF16, {64, 64}},
           {"blk.0.ssm_alpha.weight", ggml_type::BF16, {4, 64}},
           {"blk.0.ssm_beta.weight", ggml_type::BF16, {4, 64}},
           {"blk.0.ssm_a", ggml_type::F32, {4}},
           {"blk.0.ssm_dt.bias", ggml_type::F32, {4}},
           {"blk.0.ssm_conv1d.weight", ggml_type::F32, {128, 4}},  // [C, 1, K] squeezed, F32 as the converter forces it
           {"blk.0.ssm_norm.weight", ggml_type::F32, {16}},
           {"blk.0.ssm_out.weight", ggml_type::BF16, {64, 64}},
           {"blk.0.post_attention_norm.weight", ggml_type::F32, {64}},
           {"blk.1.attn_q.weight", ggml_type::BF16, {128, 64}},
           {"blk.1.attn_q_norm.weight", ggml_type::F32, {16}},
           {"blk.1.ffn_gate_inp.weight", ggml_type::F32, {8, 64}},
           {"blk.1.ffn_gate_inp_shexp.weight", ggml_type::F32, {1, 64}},
           {"blk.1.ffn_gate_exps.weight", ggml_type::BF16, {8, 24, 64}},
           {"blk.1.ffn_down_shexp.weight", ggml_type::BF16, {64, 24}},
           {"output_norm.weight", ggml_type::F32, {64}},
       }) {
    const gguf_tensor* t = g.find_tensor(w.name);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->type, w.type) << w.name;
    EXPECT_EQ(t->shape, w.shape) << w.name;
  }
  EXPECT_EQ(g.find_tensor("blk.1.attn_qkv.weight"), nullptr) << "layer 1 is full attention";
  EXPECT_EQ(g.find_tensor("blk.0.attn_q.weight"), nullptr) << "layer 0 is linear attention";
}

TEST_F(Qwen35Gguf, MetadataIsWhatLlamaCppReadsForQwen35Moe) {
  gguf_file g(gguf());
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::uint64_t>>{
           {"context_length", 64}, {"embedding_length", 64}, {"block_count", 4}, {"expert_count", 8}, {"expert_used_count", 2},
           {"expert_feed_forward_length", 24}, {"expert_shared_feed_forward_length", 24}, {"attention.head_count", 4},
           {"attention.head_count_kv", 2}, {"attention.key_length", 16}, {"attention.value_length", 16},
           {"rope.dimension_count", 4},  // head_dim 16 x partial_rotary_factor 0.25
           {"ssm.conv_kernel", 4}, {"ssm.state_size", 16}, {"ssm.group_count", 2}, {"ssm.time_step_rank", 4},
           {"ssm.inner_size", 64}, {"full_attention_interval", 4}, {"vocab_size", 128}})
    EXPECT_EQ(g.get_uint("qwen35moe." + key), value) << key;
  const gguf_value* rec = g.find("qwen35moe.attention.recurrent_layers");
  ASSERT_NE(rec, nullptr);
  ASSERT_EQ(rec->type(), gguf_type::array);
  ASSERT_EQ(rec->element_type(), gguf_type::boolean);
  std::vector<bool> layers;
  for (const auto& x : rec->items()) layers.push_back(x.as_bool());
  EXPECT_EQ(layers, (std::vector<bool>{true, false, true, false})) << "layer_types linear / full / linear / full";
  const gguf_value* sec = g.find("qwen35moe.rope.dimension_sections");
  ASSERT_NE(sec, nullptr);
  std::vector<std::int64_t> sections;
  for (const auto& x : sec->items()) sections.push_back(x.as_i64());
  EXPECT_EQ(sections, (std::vector<std::int64_t>{2, 0, 0, 0}))
      << "the converter's default [11, 11, 10] needs 32 rotary pairs; this model has 2 (llama.cpp asserts they fit)";
}

TEST(GgufQwen35MoeMetadata, RealSizesGetTheConvertersDefaultSectionsAndRotaryDims) {
  checkpoint c = checkpoint::open(fixture("qwen3_5_moe/hf"));
  family_spec spec = spec_for(c);
  json::value config = json::parse_file(fixture("qwen3_5_moe/hf/config.json"));
  json::value text = *config.find("text_config");
  text.set("head_dim", json::value(static_cast<std::int64_t>(256)));  // Qwen3.5-35B-A3B's
  config.set("text_config", text);
  gguf_metadata md = gguf_metadata_for(spec, config, "config.json");
  std::vector<std::int64_t> sections;
  std::uint64_t rot = 0;
  for (const auto& [k, v] : md) {
    if (k == "qwen35moe.rope.dimension_sections")
      for (const auto& x : v.items()) sections.push_back(x.as_i64());
    if (k == "qwen35moe.rope.dimension_count") rot = v.as_u64();
  }
  EXPECT_EQ(rot, 64u);
  EXPECT_EQ(sections, (std::vector<std::int64_t>{11, 11, 10, 0}));
}

TEST_F(Qwen35Gguf, ValuesAreRewrittenAsLlamaCppsConverterDoes) {
  gguf_file g(gguf());
  checkpoint hf = checkpoint::open(fixture("qwen3_5_moe/hf"));
  // `1 + w` norms: w + 1 in float32; the linear attention's gated norm unchanged.
  for (const auto& [ours, theirs] : std::vector<std::pair<std::string, std::string>>{
           {"output_norm.weight", "model.language_model.norm.weight"},
           {"blk.0.attn_norm.weight", std::string(L) + "0.input_layernorm.weight"},
           {"blk.2.post_attention_norm.weight", std::string(L) + "2.post_attention_layernorm.weight"},
           {"blk.1.attn_q_norm.weight", std::string(L) + "1.self_attn.q_norm.weight"},
           {"blk.3.attn_k_norm.weight", std::string(L) + "3.self_attn.k_norm.weight"}}) {
    std::vector<float> w = bf16_values(hf, theirs), got = gguf_values<float>(g, ours, ggml_type::F32);
    ASSERT_EQ(got.size(), w.size()) << ours;
    bool offsets = false;
    for (std::size_t i = 0; i < w.size(); ++i) {
      EXPECT_EQ(got[i], w[i] + 1.0f) << ours << "[" << i << "]";
      offsets |= w[i] != 0;
    }
    EXPECT_TRUE(offsets) << theirs << ": the fixture's norms hold random offsets, so +1 is seen";
  }
  std::vector<float> sn = bf16_values(hf, std::string(L) + "0.linear_attn.norm.weight"),
                     sg = gguf_values<float>(g, "blk.0.ssm_norm.weight", ggml_type::F32);
  EXPECT_EQ(sg, sn) << "linear_attn.norm is a plain weight: no +1";
  // A_log -> -exp(A_log) (float32, value heads tiled); dt_bias tiled.
  const std::vector<long> heads = tiled_rows(1);
  std::vector<float> a = bf16_values(hf, std::string(L) + "0.linear_attn.A_log"), ssm_a = gguf_values<float>(g, "blk.0.ssm_a", ggml_type::F32);
  std::vector<float> dt = bf16_values(hf, std::string(L) + "0.linear_attn.dt_bias"),
                     ssm_dt = gguf_values<float>(g, "blk.0.ssm_dt.bias", ggml_type::F32);
  ASSERT_EQ(ssm_a.size(), 4u);
  ASSERT_EQ(ssm_dt.size(), 4u);
  EXPECT_NE(heads, (std::vector<long>{0, 1, 2, 3})) << "2 key heads, 4 value heads: the order changes";
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ssm_a[i], -std::exp(a[static_cast<std::size_t>(heads[i])])) << "ssm_a[" << i << "]";
    EXPECT_EQ(ssm_dt[i], dt[static_cast<std::size_t>(heads[i])]) << "ssm_dt[" << i << "]";
  }
  // Rows: attn_qkv's value rows after q and k (2 x 2 x 16), attn_gate's rows, alpha / beta.
  auto expect_rows = [&](const std::string& ours, const std::string& theirs, long first, long head_rows, std::size_t row_len) {
    std::vector<std::uint16_t> w = bf16_bits(hf, theirs), got = gguf_values<std::uint16_t>(g, ours, ggml_type::BF16);
    ASSERT_EQ(got.size(), w.size()) << ours;
    const std::vector<long> order = tiled_rows(head_rows);
    for (std::size_t row = 0; row < w.size() / row_len; ++row) {
      const std::size_t from = row < static_cast<std::size_t>(first) ? row : first + static_cast<std::size_t>(order[row - first]);
      ASSERT_EQ(std::memcmp(&got[row * row_len], &w[from * row_len], row_len * 2), 0) << ours << " row " << row;
    }
  };
  expect_rows("blk.0.attn_qkv.weight", std::string(L) + "0.linear_attn.in_proj_qkv.weight", 2 * nk * hd, hd, 64);
  expect_rows("blk.2.attn_gate.weight", std::string(L) + "2.linear_attn.in_proj_z.weight", 0, hd, 64);
  expect_rows("blk.0.ssm_alpha.weight", std::string(L) + "0.linear_attn.in_proj_a.weight", 0, 1, 64);
  expect_rows("blk.2.ssm_beta.weight", std::string(L) + "2.linear_attn.in_proj_b.weight", 0, 1, 64);
  // conv1d: [128, 1, 4] -> [128, 4] F32, value channels tiled.
  std::vector<float> conv = bf16_values(hf, std::string(L) + "0.linear_attn.conv1d.weight"),
                     ssm_conv = gguf_values<float>(g, "blk.0.ssm_conv1d.weight", ggml_type::F32);
  ASSERT_EQ(ssm_conv.size(), conv.size());
  const std::vector<long> vrows = tiled_rows(hd);
  for (std::size_t ch = 0; ch < 128; ++ch) {
    const std::size_t from = ch < 64 ? ch : 64 + static_cast<std::size_t>(vrows[ch - 64]);
    for (std::size_t k = 0; k < 4; ++k) ASSERT_EQ(ssm_conv[ch * 4 + k], conv[from * 4 + k]) << "channel " << ch;
  }
  // out_proj: columns of the value heads tiled.
  std::vector<std::uint16_t> op = bf16_bits(hf, std::string(L) + "0.linear_attn.out_proj.weight"),
                             so = gguf_values<std::uint16_t>(g, "blk.0.ssm_out.weight", ggml_type::BF16);
  ASSERT_EQ(so.size(), op.size());
  for (std::size_t r = 0; r < 64; ++r)
    for (std::size_t c = 0; c < 64; ++c) ASSERT_EQ(so[r * 64 + c], op[r * 64 + static_cast<std::size_t>(vrows[c])]) << r << "," << c;
}

TEST_F(Qwen35Gguf, LanguageModelReadsBackBitExact) {
  // With config.json beside it, to the split hf/ layout and to the hub's fused one.
  convert(*dir_ / "g", *dir_ / "hf", "hf_split");
  expect_language_model_equal(*dir_ / "hf/model.safetensors", fixture("qwen3_5_moe/hf/model.safetensors"));
  convert(*dir_ / "g", *dir_ / "hub", "hf");
  expect_language_model_equal(*dir_ / "hub/model.safetensors", fixture("qwen3_5_moe/hub/model.safetensors"));
  // Bare, the config made from the metadata (the value head dim from ssm.inner_size, the
  // rotary factor from rope.dimension_count, layer_types from attention.recurrent_layers).
  command_result r = run_moereg("convert " + gguf() + " " + (*dir_ / "bare") + " --to hf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_language_model_equal(*dir_ / "bare/model.safetensors", fixture("qwen3_5_moe/hub/model.safetensors"));
  json::value c = json::parse_file(*dir_ / "bare/config.json");
  EXPECT_EQ(c.find_path("text_config.linear_value_head_dim")->as_int(), 16);
  EXPECT_EQ(c.find_path("text_config.partial_rotary_factor")->as_double(), 0.25);
  const json::value* lt = c.find_path("text_config.layer_types");
  ASSERT_NE(lt, nullptr);
  ASSERT_EQ(lt->as_array().size(), 4u);
  EXPECT_EQ(lt->as_array()[0].as_string(), "linear_attention");
  EXPECT_EQ(lt->as_array()[1].as_string(), "full_attention");
  // The hub layout -> .gguf gives the same file's tensors.
  convert(fixture("qwen3_5_moe/hub"), *dir_ / "g2", "gguf", "hf");
  expect_same_tensors(*dir_ / "g2/model.gguf", gguf());
}

// The hooks on one tensor, in-process from the built plugin library.
class Qwen35Hooks : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint c = checkpoint::open(fixture("qwen3_5_moe/hf"));
    spec_ = spec_for(c);
    hooks_ = plugin_hooks(spec_, json::parse_file(fixture("qwen3_5_moe/hf/config.json")));
  }
  // Runs `hook` on F32 values; false when it refused (the message in *why).
  bool run(const std::string& hook, int direction, const std::string& key, const std::vector<float>& in, std::vector<float>& out,
           std::string* why = nullptr) {
    out.assign(in.size(), 0.0f);
    tensor_spec t{key, dtype::F32, {static_cast<std::int64_t>(in.size())}};
    try {
      hooks_(hook, direction, key, t, reinterpret_cast<const std::byte*>(in.data()), reinterpret_cast<std::byte*>(out.data()));
      return true;
    } catch (const std::exception& e) {
      if (why) *why = e.what();
      return false;
    }
  }
  static std::uint32_t bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  }
  family_spec spec_;
  hook_runner hooks_;
};

// The finite bf16 values inside [lo_neg, hi_neg] or [lo_pos, hi_pos] (both ends included), and a
// sample of those outside (every 16th).
void bf16_ranges(float lo_neg, float hi_neg, float lo_pos, float hi_pos, std::vector<float>& inside, std::vector<float>& outside) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float x = bf16_to_f32(static_cast<std::uint16_t>(h));
    if (!std::isfinite(x)) continue;
    const bool in = (x >= lo_neg && x <= hi_neg && std::signbit(x)) || (x >= lo_pos && x <= hi_pos && !std::signbit(x));
    if (in) inside.push_back(x);
    else if (h % 16 == 0) outside.push_back(x);
  }
}

TEST_F(Qwen35Hooks, NormPlusOneComesBackExactlyOrIsRefused) {
  // Measured over every finite bf16 w: 1 + w holds all of w's bits from 2^-16 up to (not including) 2^24 and
  // from -2^-17 down (where 1 + w is exact or w - 1 rounds back to w).
  std::vector<float> inside, outside, enc, dec;
  bf16_ranges(-INFINITY, -0x1p-17f, 0x1p-16f, 0x1.fep23f, inside, outside);
  ASSERT_TRUE(run("norm_plus_one", 1, "blk.0.attn_norm.weight", inside, enc));
  ASSERT_TRUE(run("norm_plus_one", 0, "blk.0.attn_norm.weight", enc, dec));
  for (std::size_t i = 0; i < inside.size(); ++i) {
    ASSERT_EQ(enc[i], inside[i] + 1.0f) << inside[i];
    ASSERT_EQ(bits(dec[i]), bits(inside[i])) << inside[i];
  }
  int refused = 0;
  for (float w : outside) {
    std::string why;
    if (run("norm_plus_one", 1, "blk.0.attn_norm.weight", {w}, enc, &why)) {
      ASSERT_TRUE(run("norm_plus_one", 0, "blk.0.attn_norm.weight", enc, dec));
      EXPECT_EQ(bits(dec[0]), bits(w)) << w << ": accepted, so it must come back";
      continue;
    }
    ++refused;
    EXPECT_NE(why.find("blk.0.attn_norm.weight: element 0: RMSNorm weight"), std::string::npos) << why;
  }
  std::cout << "norm_plus_one: " << inside.size() << " bf16 values in range come back exactly; of " << outside.size()
            << " sampled outside, " << refused << " refused\n";
  EXPECT_GT(refused, 0);
  std::string why;
  EXPECT_FALSE(run("norm_plus_one", 1, "output_norm.weight", {-0.0f}, enc, &why));
  EXPECT_NE(why.find("reads back as 0 (bits 0x00000000)"), std::string::npos) << why;
  EXPECT_FALSE(run("norm_plus_one", 1, "output_norm.weight", {1e-30f}, enc, &why));
}

TEST_F(Qwen35Hooks, SsmAComesBackExactlyOrIsRefused) {
  // One tensor of every bf16 A_log in range: a config with that many value heads (one key head).
  std::vector<float> inside, outside, enc, dec;
  bf16_ranges(-102.5f, -0x1p-17f, 0x1p-16f, 88.5f, inside, outside);
  json::value config = json::parse_file(fixture("qwen3_5_moe/hf/config.json"));
  json::value text = *config.find("text_config");
  text.set("linear_num_key_heads", json::value(static_cast<std::int64_t>(1)));
  text.set("linear_num_value_heads", json::value(static_cast<std::int64_t>(inside.size())));
  config.set("text_config", text);
  hook_runner wide = plugin_hooks(spec_, config);
  tensor_spec t{"blk.0.ssm_a", dtype::F32, {static_cast<std::int64_t>(inside.size())}};
  enc.assign(inside.size(), 0);
  dec.assign(inside.size(), 0);
  wide("ssm_a", 1, t.name, t, reinterpret_cast<const std::byte*>(inside.data()), reinterpret_cast<std::byte*>(enc.data()));
  wide("ssm_a", 0, t.name, t, reinterpret_cast<const std::byte*>(enc.data()), reinterpret_cast<std::byte*>(dec.data()));
  for (std::size_t i = 0; i < inside.size(); ++i) {
    ASSERT_EQ(enc[i], static_cast<float>(-std::exp(static_cast<double>(inside[i])))) << inside[i];
    ASSERT_EQ(bits(dec[i]), bits(inside[i])) << inside[i];
  }
  // Outside: tiny (exp gives 1), below the subnormals' reach, above float32's range.
  int refused = 0;
  for (float x : outside) {
    std::string why;
    if (run("ssm_a", 1, "blk.0.ssm_a", {x, x, x, x}, enc, &why)) {
      ASSERT_TRUE(run("ssm_a", 0, "blk.0.ssm_a", enc, dec));
      EXPECT_EQ(bits(dec[0]), bits(x)) << x << ": accepted, so it must come back";
      continue;
    }
    ++refused;
    EXPECT_NE(why.find("blk.0.ssm_a: element 0: A_log"), std::string::npos) << why;
  }
  std::cout << "ssm_a: " << inside.size() << " bf16 A_log values in range come back exactly; of " << outside.size()
            << " sampled outside, " << refused << " refused\n";
  EXPECT_GT(refused, 0);
  // Decoding a value no A_log gives (positive), named by its place in the file.
  std::string why;
  EXPECT_FALSE(run("ssm_a", 0, "blk.0.ssm_a", {-1.0f, 0.5f, -2.0f, -3.0f}, dec, &why));
  EXPECT_NE(why.find("element 1"), std::string::npos) << why;
  EXPECT_FALSE(run("ssm_a", 1, "blk.0.ssm_a", {1.0f, 2.0f, 3.0f}, enc, &why)) << "three values for four value heads";
  EXPECT_NE(why.find("expected one per value head (4)"), std::string::npos) << why;
}

TEST_F(Qwen35Hooks, ValueHeadOrderIsAPermutationItsDecodeUndoes) {
  std::vector<float> in(4 * 3), enc, dec;
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  // ssm_alpha as 1-D rows of 3: heads [0 1 2 3] grouped (K0: 0 1, K1: 2 3) -> tiled 0 2 1 3.
  tensor_spec t{"blk.0.ssm_alpha.weight", dtype::F32, {4, 3}};
  enc.assign(in.size(), 0);
  dec.assign(in.size(), 0);
  hooks_("v_head_order", 1, t.name, t, reinterpret_cast<const std::byte*>(in.data()), reinterpret_cast<std::byte*>(enc.data()));
  EXPECT_EQ(enc, (std::vector<float>{0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11}));
  hooks_("v_head_order", 0, t.name, t, reinterpret_cast<const std::byte*>(enc.data()), reinterpret_cast<std::byte*>(dec.data()));
  EXPECT_EQ(dec, in);
  tensor_spec wrong{"blk.0.attn_gate.weight", dtype::F32, {4, 3}};
  EXPECT_THROW(hooks_("v_head_order", 1, wrong.name, wrong, reinterpret_cast<const std::byte*>(in.data()),
                      reinterpret_cast<std::byte*>(enc.data())),
               std::exception)
      << "attn_gate has 4 value heads of 16 rows, not 4 rows";
}

}  // namespace
}  // namespace test_gguf_qwen3_5_moe
}  // namespace moereg::test
