// SPDX-License-Identifier: Apache-2.0
// load_moe_layer gives a backend the experts of one layer in backend order, and the
// family's routing, from any layout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/plan/moe_layer.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_moe_layer {
namespace {

struct loaded {
  checkpoint ckpt;
  family_spec spec;
  decoded_checkpoint decoded;
};

std::unique_ptr<loaded> load(const std::string& dir, const std::string& from = "") {
  checkpoint c = checkpoint::open(dir);
  auto l = std::unique_ptr<loaded>(new loaded{std::move(c), {}, {}});
  l->spec = test::spec_for(l->ckpt);
  model_dims dims = read_dims(l->spec, l->ckpt.config(), l->ckpt.config_path());
  const layout_spec& layout = from.empty() ? detect_layout(l->ckpt, l->spec, dims) : *l->spec.find_layout(from);
  l->decoded = decode_checkpoint(l->ckpt, l->spec, layout, dims);
  return l;
}

std::size_t bytes(const moereg_tensor_view& v) {
  std::size_t n = dtype_size(static_cast<dtype>(v.dtype));
  for (int i = 0; i < v.rank; ++i) n *= static_cast<std::size_t>(v.shape[i]);
  return n;
}

}  // namespace

TEST(MoeLayer, ExpertsMatchTransformersV5FromEveryStoredLayout) {
  struct c { const char* dir; int layer; const char* prefix; };
  for (auto [dir, layer, prefix] : {c{"qwen3_moe/hf", 1, "model.layers.1.mlp"}, c{"qwen3_vl_moe/hub", 1, "model.language_model.layers.1.mlp"},
                                    c{"qwen3_5_moe/hub", 3, "model.language_model.layers.3.mlp"},
                                    c{"qwen3_5_moe/hf", 3, "model.language_model.layers.3.mlp"}, c{"mixtral/hf", 1, "model.layers.1.mlp"},
                                    c{"deepseek_v3/hf", 2, "model.layers.2.mlp"}}) {
    auto l = load(test::fixture(dir));
    auto m = load_moe_layer(l->decoded, layer);
    std::string fam = std::string(dir).substr(0, std::string(dir).find('/'));
    safetensors_file v5(test::fixture(fam + "/transformers_v5.safetensors"));
    const tensor_info* gu = v5.find(std::string(prefix) + ".experts.gate_up_proj");
    const tensor_info* dn = v5.find(std::string(prefix) + ".experts.down_proj");
    ASSERT_TRUE(gu && dn) << dir;
    ASSERT_EQ(bytes(m->weights.w13), gu->nbytes()) << dir;
    EXPECT_EQ(std::memcmp(m->weights.w13.data, v5.data(*gu), gu->nbytes()), 0) << dir;
    EXPECT_EQ(std::memcmp(m->weights.w2.data, v5.data(*dn), dn->nbytes()), 0) << dir;
    if (std::string(dir) == "qwen3_5_moe/hub") { EXPECT_EQ(m->packed_bytes, 2u * 24 * 64 * 2) << "experts mapped, only the shared expert packed"; }
  }
}

TEST(MoeLayer, RoutingComesFromTheFamilyYamlAndConfig) {
  auto v3 = load(test::fixture("deepseek_v3/hf"));
  auto m = load_moe_layer(v3->decoded, 2);
  EXPECT_EQ(m->routing.scoring, MOEREG_SCORING_SIGMOID);
  EXPECT_EQ(m->routing.group_score, MOEREG_GROUP_SCORE_TOP2_SUM);
  EXPECT_EQ(m->routing.n_group, 2);
  EXPECT_EQ(m->routing.topk_group, 1);
  EXPECT_EQ(m->routing.renormalize, 1);
  EXPECT_FLOAT_EQ(m->routing.routed_scaling_factor, 2.5f);
  EXPECT_NE(m->routing.router_bias.data, nullptr);
  EXPECT_EQ(m->weights.shared_intermediate, 24);
  auto v2 = load(test::fixture("deepseek_v2/hf"));
  auto m2 = load_moe_layer(v2->decoded, 2);
  EXPECT_EQ(m2->routing.group_score, MOEREG_GROUP_SCORE_NONE) << "topk_method greedy: no groups";
  EXPECT_EQ(m2->routing.renormalize, 0);
  EXPECT_EQ(m2->routing.router_bias.data, nullptr);
  EXPECT_EQ(m2->weights.shared_intermediate, 48);
  auto q5 = load(test::fixture("qwen3_5_moe/hf"));
  auto m5 = load_moe_layer(q5->decoded, 3);
  EXPECT_NE(m5->weights.shared_gate.data, nullptr);
  EXPECT_EQ(m5->routing.renormalize, 1);
  EXPECT_THROW(load_moe_layer(v2->decoded, 0), moereg::error) << "layer 0 is dense";
}

// DeepSeek-V3 as shipped: the shared expert in F8_E4M3 with 128x128 block scales reaches the
// backend as stored, gate and up packed into [2Is, H] with their scales on grids of their own;
// shared_expert_to_bf16 (for backends before plugin API 3) gives each weight q x s rounded once,
// checked here against the fixture's own bytes and scales decoded by their bit fields.
TEST(MoeLayer, Fp8SharedExpertAsStoredAndWidenedForOlderBackends) {
  auto f = load(test::fixture("deepseek_v3_fp8/hf"));
  auto m = load_moe_layer(f->decoded, 1);
  moereg_moe_weights& w = m->weights;
  const std::int64_t H = 256, Is = w.shared_intermediate;
  ASSERT_EQ(Is, 128);
  ASSERT_EQ(w.shared_w13.dtype, MOEREG_DTYPE_F8_E4M3);
  ASSERT_EQ(w.shared_w2.dtype, MOEREG_DTYPE_F8_E4M3);
  ASSERT_EQ(w.shared_w13_scale.rank, 2);
  EXPECT_EQ(w.shared_w13_scale.shape[0], 2);  // gate 1 row, up 1 row of 128-row blocks
  EXPECT_EQ(w.shared_w13_scale.shape[1], 2);
  EXPECT_EQ(w.shared_w2_scale.shape[0], 2);
  EXPECT_EQ(w.shared_w2_scale.shape[1], 1);
  EXPECT_NE(m->describe.find("shared expert F8_E4M3 as stored"), std::string::npos) << m->describe;

  safetensors_file file(test::fixture("deepseek_v3_fp8/hf/model.safetensors"));
  auto fp8 = [](std::uint8_t v) {
    const int e = (v >> 3) & 15, mt = v & 7;
    const double mag = e == 0 ? mt / 8.0 * std::pow(2.0, -6) : (1 + mt / 8.0) * std::pow(2.0, e - 7);
    return static_cast<float>(v & 0x80 ? -mag : mag);
  };
  auto expected = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
    const tensor_info* q = file.find("model.layers.1.mlp.shared_experts." + name + ".weight");
    const tensor_info* s = file.find("model.layers.1.mlp.shared_experts." + name + ".weight_scale_inv");
    EXPECT_TRUE(q && s);
    std::vector<std::uint16_t> out;
    if (!q || !s) return out;
    const auto* qb = reinterpret_cast<const std::uint8_t*>(file.data(*q));
    const auto* sb = reinterpret_cast<const float*>(file.data(*s));
    const std::int64_t scols = (cols + 127) / 128;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) out.push_back(f32_to_bf16(fp8(qb[r * cols + c]) * sb[(r / 128) * scols + c / 128]));
    return out;
  };
  std::vector<std::uint16_t> want = expected("gate_proj", Is, H), up = expected("up_proj", Is, H), down = expected("down_proj", H, Is);
  want.insert(want.end(), up.begin(), up.end());
  want.insert(want.end(), down.begin(), down.end());
  std::unique_ptr<std::uint16_t[]> widened = shared_expert_to_bf16(w);
  ASSERT_TRUE(widened);
  EXPECT_EQ(w.shared_w13.dtype, MOEREG_DTYPE_BF16);
  EXPECT_EQ(w.shared_w13_scale.data, nullptr);
  EXPECT_EQ(w.shared_w2.data, widened.get() + 2 * Is * H);
  EXPECT_EQ(std::vector<std::uint16_t>(widened.get(), widened.get() + 3 * Is * H), want);
  EXPECT_FALSE(shared_expert_to_bf16(w)) << "a BF16 shared expert is left alone";
}

}  // namespace test_moe_layer
