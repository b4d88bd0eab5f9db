// SPDX-License-Identifier: Apache-2.0
// load_moe_layer gives a backend the experts of one layer in backend order, and the
// family's routing, from any layout.
#include <gtest/gtest.h>

#include <cstring>

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

}  // namespace test_moe_layer
