// SPDX-License-Identifier: Apache-2.0
// FP8 dequantization on the real DeepSeek-V3 FP8 fixture (1-D per-expert scales), checked
// at hand-computed elements, and the split expert scales against the fused in-memory ones.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "moereg/quant/fp8_e4m3.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_quant_fp8_fixture {
namespace {
struct dequantized {
  scale_grid grid;
  std::vector<std::uint16_t> bf16;
};

dequantized dequantize_expert(const safetensors_file& f, const std::string& base) {
  const tensor_info* w = f.find(base + ".weight");
  const tensor_info* s = f.find(base + ".weight_scale_inv");
  if (!w || !s) throw std::runtime_error("fixture lacks " + base);
  dequantized d;
  d.grid = classify_fp8_scale(s->name, w->shape, s->shape);
  auto scales = scales_as_f32(s->name, s->type, f.data(*s), s->numel());
  d.bf16.resize(w->numel());
  dequantize_fp8_e4m3(reinterpret_cast<const std::uint8_t*>(f.data(*w)), scales, d.grid, d.bf16.data());
  return d;
}
}  // namespace

TEST(QuantFp8Fixture, DequantizesAnExpertAtHandComputedElements) {
  safetensors_file f(moereg::test::fixture("deepseek_v3_fp8/hf/model.safetensors"));
  // gate_proj [128, 256], scales [2] = {0.000174386..., 0.000209263...} (1-D quirk).
  dequantized gate = dequantize_expert(f, "model.layers.1.mlp.experts.3.gate_proj");
  EXPECT_EQ(gate.grid.kind, scale_kind::block);
  EXPECT_EQ(gate.grid.grid_cols(), 2);
  EXPECT_EQ(gate.bf16[0 * 256 + 0], 0x3BB7);    // byte 0x60 = 32 x 0.00017438616 = 0.0055803573
  EXPECT_EQ(gate.bf16[5 * 256 + 200], 0xBD17);  // byte 0xF3 = -176 x 0.00020926338 = -0.0368303549
  EXPECT_EQ(gate.bf16[127 * 256 + 255], 0xBC25);  // byte 0xE4 = -48 x 0.00020926338 = -0.0100446423
  EXPECT_EQ(gate.bf16[100 * 256 + 3], 0x3BFB);  // byte 0x63 = 44 x 0.00017438616 = 0.0076729913
  // down_proj [256, 128], scales [2] cover row blocks: row 130 uses the second.
  dequantized down = dequantize_expert(f, "model.layers.1.mlp.experts.3.down_proj");
  EXPECT_EQ(down.grid.grid_rows(), 2);
  EXPECT_EQ(down.grid.grid_cols(), 1);
  EXPECT_EQ(down.bf16[0], 0x3BFB);              // byte 0x63 = 44 x 0.00017438616
  EXPECT_EQ(down.bf16[130 * 128 + 3], 0xBAFB);  // byte 0xD2 = -10 x 0.00019182479 = -0.0019182479
}

TEST(QuantFp8Fixture, SplitScalesAreTheFusedScalesInBlockOrder) {
  safetensors_file split(moereg::test::fixture("deepseek_v3_fp8/hf/model.safetensors"));
  safetensors_file fused(moereg::test::fixture("deepseek_v3_fp8/transformers_v5_layer1_experts.safetensors"));
  const tensor_info* gu = fused.find("model.layers.1.mlp.experts.gate_up_proj_scale_inv");
  ASSERT_NE(gu, nullptr);
  const tensor_info* gu_w = fused.find("model.layers.1.mlp.experts.gate_up_proj");
  scale_grid g = classify_fp8_scale(gu->name, gu_w->shape, gu->shape);  // [16, 256, 256] with [16, 2, 2]
  ASSERT_EQ(g.batch, 16);
  auto all = scales_as_f32(gu->name, gu->type, fused.data(*gu), gu->numel());
  for (int e = 0; e < 16; ++e) {
    // Gate rows [0, 128) are scale row 0 of expert e; the split file's 1-D [2] must equal it.
    index_range rows = scale_rows_for(gu->name, g, 0, 128);
    ASSERT_EQ(rows, (index_range{0, 1}));
    const tensor_info* s = split.find("model.layers.1.mlp.experts." + std::to_string(e) + ".gate_proj.weight_scale_inv");
    ASSERT_NE(s, nullptr);
    std::vector<float> one(2);
    std::memcpy(one.data(), split.data(*s), 8);
    EXPECT_EQ(one[0], all[static_cast<std::size_t>(e * 4 + 0)]) << e;
    EXPECT_EQ(one[1], all[static_cast<std::size_t>(e * 4 + 1)]) << e;
  }
}

}  // namespace test_quant_fp8_fixture
