// SPDX-License-Identifier: Apache-2.0
// Scale grids: telling FP8 scale layouts apart by shape, and moving scales with their
// matrix at block granularity (slices, fusing, transposes) or refusing with a clear message.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/quant/scale_grid.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_quant_scale_grid {
namespace {
using shape = std::vector<std::int64_t>;

scale_grid classify(const std::string& name, shape w, shape s) { return classify_fp8_scale(name, w, s); }

std::string message_of(auto&& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(QuantScaleGrid, ClassifiesBlockScales) {
  scale_grid g = classify("x.weight_scale_inv", {576, 7168}, {5, 56});
  EXPECT_EQ(g.kind, scale_kind::block);
  EXPECT_EQ(g.block_rows, 128);
  EXPECT_EQ(g.grid_rows(), 5);  // 576 = 4.5 blocks: the last is partial
  EXPECT_EQ(g.grid_cols(), 56);
  EXPECT_EQ(g.index(575, 7167), 5 * 56 - 1);
  EXPECT_EQ(g.index(128, 130), 56 + 1);
}

TEST(QuantScaleGrid, AcceptsTheOneDimensionalPerExpertQuirk) {
  // transformers 5.17 saves [1, 2] and [2, 1] block scales as [2].
  scale_grid gate = classify("experts.3.gate_proj.weight_scale_inv", {128, 256}, {2});
  EXPECT_EQ(gate.kind, scale_kind::block);
  EXPECT_EQ(gate.grid_rows(), 1);
  EXPECT_EQ(gate.grid_cols(), 2);
  scale_grid down = classify("experts.3.down_proj.weight_scale_inv", {256, 128}, {2});
  EXPECT_EQ(down.kind, scale_kind::block);
  EXPECT_EQ(down.grid_rows(), 2);
  EXPECT_EQ(down.grid_cols(), 1);
}

TEST(QuantScaleGrid, ClassifiesPerChannelAndPerTensor) {
  EXPECT_EQ(classify("w.weight_scale", {300, 64}, {300}).kind, scale_kind::per_channel);
  scale_grid c = classify("w.weight_scale", {300, 64}, {300, 1});
  EXPECT_EQ(c.kind, scale_kind::per_channel);
  EXPECT_EQ(c.index(299, 63), 299);
  EXPECT_EQ(classify("w.weight_scale", {300, 64}, {}).kind, scale_kind::per_tensor);
  EXPECT_EQ(classify("w.weight_scale", {300, 64}, {1}).kind, scale_kind::per_tensor);
  // Mistral Small 4 style: one scale per expert of a stacked tensor.
  scale_grid e = classify("experts.gate_up_proj_scale_inv", {4, 256, 64}, {4, 1, 1});
  EXPECT_EQ(e.kind, scale_kind::per_tensor);
  EXPECT_EQ(e.batch, 4);
  EXPECT_EQ(e.scales_per_matrix(), 1);
  // Stacked block scales.
  scale_grid s = classify("experts.down_proj_scale_inv", {16, 256, 128}, {16, 2, 1});
  EXPECT_EQ(s.kind, scale_kind::block);
  EXPECT_EQ(s.batch, 16);
  EXPECT_EQ(s.scales_per_matrix(), 2);
}

TEST(QuantScaleGrid, AmbiguousOneDimensionalShapeFollowsTheName) {
  // rows = 2 = block count of [2, 256]: "_scale_inv" means block, "weight_scale" per-channel.
  EXPECT_EQ(classify("a.weight_scale_inv", {2, 256}, {2}).kind, scale_kind::block);
  EXPECT_EQ(classify("a.weight_scale", {2, 256}, {2}).kind, scale_kind::per_channel);
}

TEST(QuantScaleGrid, RefusesShapesThatFitNothing) {
  std::string m = message_of([] { classify("model.layers.0.mlp.experts.1.up_proj.weight_scale_inv", {128, 256}, {3, 2}); });
  EXPECT_NE(m.find("model.layers.0.mlp.experts.1.up_proj.weight_scale_inv: scale shape [3, 2] does not fit weight [128, 256]"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("[1, 2] (128x128 blocks)"), std::string::npos) << m;
  EXPECT_NE(message_of([] { classify("s", {16, 256, 128}, {8, 2, 1}); }).find("leading dims"), std::string::npos);
  EXPECT_NE(message_of([] { classify("s", {256}, {2}); }).find("rank >= 2"), std::string::npos);
}

TEST(QuantScaleGrid, RowSlicesMoveWholeBlocks) {
  scale_grid g = classify("gate_up_proj_scale_inv", {512, 256}, {4, 2});
  EXPECT_EQ(scale_rows_for("gate_up_proj", g, 0, 256), (index_range{0, 2}));
  EXPECT_EQ(scale_rows_for("gate_up_proj", g, 256, 512), (index_range{2, 4}));
  scale_grid up = slice_rows("gate_up_proj", g, 256, 512);
  EXPECT_EQ(up.rows, 256);
  EXPECT_EQ(up.grid_rows(), 2);
  // The end of the matrix may end a partial block.
  scale_grid p = classify("kv_a_proj_with_mqa.weight_scale_inv", {576, 7168}, {5, 56});
  EXPECT_EQ(scale_rows_for("kv_a_proj_with_mqa.weight", p, 512, 576), (index_range{4, 5}));
}

TEST(QuantScaleGrid, RefusesASliceThatSplitsABlock) {
  scale_grid g = classify("x", {192, 256}, {2, 2});
  std::string m = message_of([&] { scale_rows_for("model.layers.1.mlp.experts.gate_up_proj", g, 0, 96); });
  EXPECT_NE(m.find("model.layers.1.mlp.experts.gate_up_proj: rows range [0, 96) would split a quantization block"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("block size 128 rows"), std::string::npos) << m;
  EXPECT_NE(message_of([&] { scale_cols_for("t", g, 64, 256); }).find("block size 128 columns"), std::string::npos);
  EXPECT_NE(message_of([&] { scale_rows_for("t", g, 0, 300); }).find("outside [0, 192)"), std::string::npos);
}

TEST(QuantScaleGrid, PerChannelAndPerTensorSliceAnywhere) {
  scale_grid c = classify("s", {96, 64}, {96});
  EXPECT_EQ(scale_rows_for("t", c, 24, 48), (index_range{24, 48}));
  scale_grid t = classify("s", {96, 64}, {});
  EXPECT_EQ(scale_rows_for("t", t, 24, 48), (index_range{0, 1}));
  EXPECT_EQ(slice_rows("t", t, 24, 48).block_rows, 24);
}

TEST(QuantScaleGrid, GroupScalesCutOnlyOnGroupBoundariesAlongK) {
  scale_grid g = group_grid(10, 128, 32);  // MXFP4 / int4 style
  EXPECT_EQ(scale_rows_for("t", g, 3, 7), (index_range{3, 7}));
  EXPECT_EQ(scale_cols_for("t", g, 32, 96), (index_range{1, 3}));
  EXPECT_NE(message_of([&] { scale_cols_for("w2", g, 16, 128); }).find("1x32 groups, block size 32 columns"),
            std::string::npos);
}

TEST(QuantScaleGrid, FusingGateAndUpNeedsWholeBlocks) {
  scale_grid gate = classify("g", {256, 256}, {2, 2}), up = classify("u", {256, 256}, {2, 2});
  scale_grid f = concat_rows("gate_up_proj", gate, up);
  EXPECT_EQ(f.rows, 512);
  EXPECT_EQ(f.grid_rows(), 4);
  scale_grid small_gate = classify("g", {96, 256}, {1, 2}), small_up = classify("u", {96, 256}, {1, 2});
  std::string m = message_of([&] { concat_rows("model.layers.1.mlp.experts.gate_up_proj", small_gate, small_up); });
  EXPECT_NE(m.find("model.layers.1.mlp.experts.gate_up_proj: fusing after 96 rows would split a quantization block"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("block size 128"), std::string::npos);
  scale_grid chan = classify("c", {96, 256}, {96});
  EXPECT_NE(message_of([&] { concat_rows("t", gate, chan); }).find("expected the same scale layout"), std::string::npos);
}

// A DeepSeek block scale of a matrix no larger than one block is a single value: it was read as
// a per-tensor scale, so two 128-row ones could not fuse ("each have a per-tensor scale"), and
// 24-row ones were refused for that reason instead of the block they would split.
TEST(QuantScaleGrid, OneBlockScaleIsABlockNotAPerTensorScale) {
  scale_grid gate = classify("g.weight_scale_inv", {128, 128}, {1, 1}), up = classify("u.weight_scale_inv", {128, 128}, {1, 1});
  EXPECT_EQ(gate.kind, scale_kind::block);
  scale_grid f = concat_rows("gate_up_proj", gate, up);
  EXPECT_EQ(f.grid_rows(), 2);
  scale_grid small = classify("g.weight_scale_inv", {24, 64}, {1, 1});
  EXPECT_NE(message_of([&] { concat_rows("gate_up_proj", small, small); }).find("fusing after 24 rows would split a quantization block"),
            std::string::npos);
  EXPECT_EQ(classify("g.weight_scale", {128, 128}, {1, 1}).kind, scale_kind::per_tensor);  // not the block naming
}

TEST(QuantScaleGrid, TransposeSwapsTheGrid) {
  scale_grid g = classify("s", {256, 384}, {2, 3});
  scale_grid t = transpose(g);
  EXPECT_EQ(t.rows, 384);
  EXPECT_EQ(t.cols, 256);
  EXPECT_EQ(t.grid_rows(), 3);
  EXPECT_EQ(t.grid_cols(), 2);
  scale_grid grp = transpose(group_grid(8, 64, 32));
  EXPECT_EQ(grp.block_rows, 32);
  EXPECT_EQ(grp.block_cols, 1);
}

TEST(QuantScaleGrid, WidensScaleDtypesExactly) {
  std::uint16_t bf[2] = {0x3F80, 0xC000};  // 1, -2
  EXPECT_EQ(scales_as_f32("s", dtype::BF16, bf, 2), (std::vector<float>{1.0f, -2.0f}));
  std::uint16_t h[1] = {0x3C00};  // 1.0 in f16
  EXPECT_EQ(scales_as_f32("s", dtype::F16, h, 1), (std::vector<float>{1.0f}));
  std::uint8_t e[3] = {127, 130, 1};
  auto v = scales_as_f32("s", dtype::F8_E8M0, e, 3);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 8.0f);
  EXPECT_EQ(v[2], std::ldexp(1.0f, -126));
  std::int32_t i = 0;
  EXPECT_NE(message_of([&] { scales_as_f32("blk.scale", dtype::I32, &i, 1); }).find("blk.scale: scale dtype I32"),
            std::string::npos);
}

}  // namespace test_quant_scale_grid

namespace test_quant_scale_grid {

TEST(QuantScaleGrid, NonFiniteScalesAreRefusedByTensorAndElement) {
  const std::vector<float> f32 = {1.f, 0.5f, NAN, 2.f};
  EXPECT_EQ(message_of([&] { scales_as_f32("w_scale", dtype::F32, f32.data(), 4, 2); }),
            "w_scale: scale [1, 0] is NaN; expected a finite scale (it would make every weight of its block NaN)");
  const std::vector<float> inf = {1.f, -INFINITY};
  EXPECT_EQ(message_of([&] { scales_as_f32("s", dtype::F32, inf.data(), 2); }),
            "s: scale element 1 is -inf; expected a finite scale (it would make every weight of its block infinite or NaN)");
  const std::vector<std::uint16_t> bf16 = {0x3f80, 0x7f80};  // 1.0, +inf
  EXPECT_EQ(message_of([&] { scale_as_f32("b", dtype::BF16, &bf16[1], 4 * 7 + 5, 7); }),  // one scale, at its place
            "b: scale [4, 5] is +inf; expected a finite scale (it would make every weight of its block infinite or NaN)");
  const std::vector<std::uint8_t> e8m0 = {127, 255};  // 1.0, E8M0's NaN
  EXPECT_NE(message_of([&] { scales_as_f32("m", dtype::F8_E8M0, e8m0.data(), 2); }).find("m: scale element 1 is NaN"),
            std::string::npos);
  // Finite scales, zero and negative ones included, are widened as stored.
  const std::vector<float> ok = {0.f, -0.25f, 3.f};
  EXPECT_EQ(scales_as_f32("ok", dtype::F32, ok.data(), 3), ok);
}

}  // namespace test_quant_scale_grid
