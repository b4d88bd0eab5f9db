// SPDX-License-Identifier: Apache-2.0
// F8_E4M3 experts on the CUDA backend: read as stored with their block (or per-channel)
// scales and dequantized per tile. Each layer is checked against the same experts
// dequantized by the core (moereg/quant/fp8_e4m3.h: the bf16 values `convert --dtype bf16`
// writes) and run through the bf16 kernels: both multiply the same bf16 weights. Where the F8
// tile sums k in the bf16 tile's order they differ only by the order of the float atomics of
// the un-permute (bound 1e-5 of the largest output); the F8 decode tile (m16) adds each k
// tile's two halves in two warp groups, so a gate/up sum can differ in its last float bits and
// round h (bf16) the other way: bound 2e-3, one bf16 rounding of h. Plus a float64
// reference, the FP8 fixture's layer 1, and the refusals.
// Needs an sm_90 GPU; registered with ctest only when MOEREG_CUDA_TESTS=ON.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_support.h"
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/scale_grid.h"
#include "test_cpu_fixture_util.h"

namespace {

using moereg::test::make_view;
using namespace moereg::test::cuda;

long long cdiv(long long a, long long b) { return (a + b - 1) / b; }

// How far an F8 layer may be from its dequantized bf16 layer after the forward just made
// (see the top of the file): 1e-5 unless the tile that ran splits k over warp groups.
double f8_bound(moereg_backend* f8) {
  return describe(f8).find("k groups") != std::string::npos ? 2e-3 : 1e-5;
}

// A layer of random e4m3 experts with F32 scales on the ABI's grids ({b0, b1} per scale;
// gate and up rows each on their own grid), and the same layer dequantized to bf16.
struct fp8_layer {
  int E, H, I, K;
  long long b0, b1;
  std::vector<uint8_t> w13, w2;
  std::vector<float> s13, s2;
  std::vector<uint16_t> d13, d2;  // dequantized (bf16 bits)

  fp8_layer(int e, int h, int i, int k, long long block0, long long block1, uint32_t seed)
      : E(e), H(h), I(i), K(k), b0(block0), b1(block1) {
    std::mt19937 rng(seed);
    auto fill = [&](std::vector<uint8_t>& v, size_t n) {
      v.resize(n);
      for (auto& b : v) {
        do b = static_cast<uint8_t>(rng()); while ((b & 0x7f) == 0x7f);  // every finite e4m3 value
      }
    };
    // Scales spread over two octaves around 1/(16 sqrt(fan-in)): e4m3 values reach 448.
    auto scales = [&](std::vector<float>& v, size_t n, int fan_in) {
      std::uniform_real_distribution<float> u(0.5f, 2.f);
      v.resize(n);
      for (auto& s : v) s = u(rng) / (16.f * std::sqrt(float(fan_in)));
    };
    fill(w13, size_t(E) * 2 * I * H);
    fill(w2, size_t(E) * H * I);
    scales(s13, size_t(E) * 2 * cdiv(I, b0) * cdiv(H, b1), H);
    scales(s2, size_t(E) * cdiv(H, b0) * cdiv(I, b1), I);
    // Dequantized by the core: gate and up as separate [I, H] matrices with their grids.
    d13.resize(w13.size());
    d2.resize(w2.size());
    moereg::scale_grid g13{moereg::scale_kind::block, I, H, std::min<long long>(b0, I), std::min<long long>(b1, H), 1};
    moereg::scale_grid g2{moereg::scale_kind::block, H, I, std::min<long long>(b0, H), std::min<long long>(b1, I), 1};
    const size_t half_scales = g13.scales_per_matrix();
    for (int x = 0; x < E; ++x) {
      for (int part = 0; part < 2; ++part) {
        const size_t w0 = (size_t(x) * 2 + part) * I * H, sc0 = (size_t(x) * 2 + part) * half_scales;
        moereg::dequantize_fp8_e4m3(w13.data() + w0, std::span<const float>(s13.data() + sc0, half_scales), g13,
                                    d13.data() + w0);
      }
      const size_t n2 = size_t(H) * I, sc2 = g2.scales_per_matrix();
      moereg::dequantize_fp8_e4m3(w2.data() + x * n2, std::span<const float>(s2.data() + x * sc2, sc2), g2,
                                  d2.data() + x * n2);
    }
  }
  moereg_moe_weights f8_view() {
    moereg_moe_weights w = experts_view(w13.data(), w2.data(), MOEREG_DTYPE_F8_E4M3, E, H, I);
    w.w13_scale = make_view(s13.data(), MOEREG_DTYPE_F32, {E, 2 * cdiv(I, b0), cdiv(H, b1)});
    w.w2_scale = make_view(s2.data(), MOEREG_DTYPE_F32, {E, cdiv(H, b0), cdiv(I, b1)});
    w.scale_block[0] = b0;
    w.scale_block[1] = b1;
    return w;
  }
  moereg_moe_weights bf16_view() { return experts_view(d13.data(), d2.data(), MOEREG_DTYPE_BF16, E, H, I); }
};

// The FP8 layer against the dequantized bf16 layer on the kernels (cublas=off), every tile
// shape, T from one row to many tiles per expert; and against float64 at the largest T.
void check_layer(fp8_layer& L, const char* what) {
  set_option("cublas", "off");
  for (const char* tiles : {"auto", "m16", "m64", "m128"}) {
    set_option("tiles", tiles);
    handle f8 = create(L.f8_view(), nullptr);
    handle bf = create(L.bf16_view(), nullptr);
    ASSERT_TRUE(f8 && bf) << what;
    for (int T : {1, 5, 64, 333}) {
      random_tokens r(T, L.H, L.E, L.K, 7 * T + 1, T % 2 == 1);
      const std::vector<float> a = forward(f8.get(), r, T, L.H, L.K), b = forward(bf.get(), r, T, L.H, L.K);
      EXPECT_LE(max_rel_diff(a, b), f8_bound(f8.get())) << what << " tiles=" << tiles << " T=" << T;
      if (T == 333 && std::string(tiles) == "auto") {
        const double err = rel_l2(a, reference(r.x, r.ids64, r.wts, L.d13, L.d2, T, L.H, L.I, L.K));
        EXPECT_LE(err, 1e-2) << what;
        std::printf("[ fp8      ] %s T=%d rel L2 against float64 %.3e\n", what, T, err);
      }
    }
  }
  clear_option("tiles");
  clear_option("cublas");
}

TEST(CudaFp8, BlockScalesMatchTheDequantizedLayer) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(8, 256, 128, 2, 128, 128, 1);  // DeepSeek's 128x128 blocks, whole blocks
  check_layer(L, "E8 H256 I128 blocks 128x128");
}

TEST(CudaFp8, BlocksCutByTheSizes) {
  ASSERT_NE(backend_api(), nullptr);
  // I = 176 and H = 272 end inside a 128 block: partial blocks in both directions, and the
  // up rows start a new scale grid in the middle of what would be one block of 2I rows.
  fp8_layer L(6, 272, 176, 3, 128, 128, 2);
  check_layer(L, "E6 H272 I176 blocks 128x128");
  // Blocks narrower than a k tile of the kernels (8 columns: two scales per 16-byte chunk).
  fp8_layer N(4, 96, 80, 2, 16, 8, 3);
  check_layer(N, "E4 H96 I80 blocks 16x8");
}

TEST(CudaFp8, PerChannelScales) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(8, 192, 112, 2, 1, 192, 4);  // one scale per output row: {1, >= max(H, I)}
  check_layer(L, "E8 H192 I112 per-channel");
  fp8_layer W(4, 64, 48, 2, 1, 1 << 20, 5);  // a block far wider than the rows
  check_layer(W, "E4 H64 I48 per-channel (wide block)");
}

TEST(CudaFp8, DescribeAndRefusals) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(4, 64, 48, 2, 16, 16, 6);
  handle h = create(L.f8_view(), nullptr);
  ASSERT_TRUE(h);
  const std::string json = describe(h.get());
  EXPECT_NE(json.find("\"weights_dtype\":\"F8_E4M3\",\"scale_block\":[16,16]"), std::string::npos) << json;
  const size_t bytes = L.w13.size() + L.w2.size() + 4 * (L.s13.size() + L.s2.size());
  EXPECT_NE(json.find("\"bytes_on_device\":" + std::to_string(bytes) + ","), std::string::npos) << json;
  EXPECT_NE(json.find("F8_E4M3 experts do not go to cuBLAS"), std::string::npos) << json;

  std::string err;
  moereg_moe_weights w = L.f8_view();
  w.scale_block[1] = 12;  // two scales inside one 8-column half chunk
  w.w13_scale = make_view(L.s13.data(), MOEREG_DTYPE_F32, {4, 2 * 3, 6});
  w.w2_scale = make_view(L.s2.data(), MOEREG_DTYPE_F32, {4, 4, 4});
  EXPECT_FALSE(create(w, nullptr, &err));
  EXPECT_NE(err.find("code 2"), std::string::npos) << err;
  EXPECT_NE(err.find("scale_block {16, 12}"), std::string::npos) << err;

  w = L.f8_view();
  w.w2_scale.data = nullptr;
  EXPECT_FALSE(create(w, nullptr, &err));
  EXPECT_NE(err.find("code 1"), std::string::npos) << err;
  EXPECT_NE(err.find("need w13_scale, w2_scale"), std::string::npos) << err;

  w = L.f8_view();
  w.w13_scale.shape[2] = 5;
  EXPECT_FALSE(create(w, nullptr, &err));
  EXPECT_NE(err.find("weights.w13_scale: shape [4, 6, 5], expected [4, 6, 4]"), std::string::npos) << err;

  w = L.f8_view();
  w.w2.dtype = MOEREG_DTYPE_BF16;
  EXPECT_FALSE(create(w, nullptr, &err));
  EXPECT_NE(err.find("w13 F8_E4M3, w2 BF16"), std::string::npos) << err;

  fp8_layer odd(2, 72, 40, 1, 8, 8, 7);  // multiples of 8, not of 16
  EXPECT_FALSE(create(odd.f8_view(), nullptr, &err));
  EXPECT_NE(err.find("the CUDA F8_E4M3 kernels need multiples of 16"), std::string::npos) << err;

  set_option("tiles", "cublas");
  EXPECT_FALSE(create(L.f8_view(), nullptr, &err));
  clear_option("tiles");
  EXPECT_NE(err.find("backend option tiles=cublas: the cuBLAS path runs BF16 experts"), std::string::npos) << err;
}

// The FP8 fixture's layer 1 as transformers holds it in memory (fused gate_up with its
// [16, 2, 2] scale_inv, down with [16, 2, 1]; 128x128 blocks): the same check on real data.
TEST(CudaFp8, FixtureLayerMatchesItsDequantizedLayer) {
  ASSERT_NE(backend_api(), nullptr);
  moereg::safetensors_file f(moereg::test::fixture("deepseek_v3_fp8/transformers_v5_layer1_experts.safetensors"));
  const std::string p = "model.layers.1.mlp.experts.";
  moereg_moe_weights w{};
  w.w13 = moereg::test::tensor_view(f, p + "gate_up_proj");
  w.w2 = moereg::test::tensor_view(f, p + "down_proj");
  w.w13_scale = moereg::test::tensor_view(f, p + "gate_up_proj_scale_inv");
  w.w2_scale = moereg::test::tensor_view(f, p + "down_proj_scale_inv");
  ASSERT_EQ(w.w13.dtype, MOEREG_DTYPE_F8_E4M3);
  w.num_experts = w.w13.shape[0];
  w.intermediate = w.w13.shape[1] / 2;
  w.hidden = w.w13.shape[2];
  w.scale_block[0] = w.scale_block[1] = 128;
  const int E = static_cast<int>(w.num_experts), H = static_cast<int>(w.hidden), I = static_cast<int>(w.intermediate);
  // Dequantized by the core, as convert --dtype bf16 does.
  std::vector<uint16_t> d13(size_t(E) * 2 * I * H), d2(size_t(E) * H * I);
  moereg::scale_grid g13{moereg::scale_kind::block, 2 * I, H, 128, 128, E};
  moereg::scale_grid g2{moereg::scale_kind::block, H, I, 128, 128, E};
  moereg::dequantize_fp8_e4m3(static_cast<const uint8_t*>(w.w13.data),
                              std::span<const float>(static_cast<const float*>(w.w13_scale.data),
                                                     size_t(E) * g13.scales_per_matrix()),
                              g13, d13.data());
  moereg::dequantize_fp8_e4m3(static_cast<const uint8_t*>(w.w2.data),
                              std::span<const float>(static_cast<const float*>(w.w2_scale.data),
                                                     size_t(E) * g2.scales_per_matrix()),
                              g2, d2.data());
  moereg_moe_weights b = experts_view(d13.data(), d2.data(), MOEREG_DTYPE_BF16, E, H, I);
  set_option("cublas", "off");
  handle f8 = create(w, nullptr), bf = create(b, nullptr);
  clear_option("cublas");
  ASSERT_TRUE(f8 && bf);
  const int K = 4;
  for (int T : {1, 9, 200}) {
    random_tokens r(T, H, E, K, T, true);
    const std::vector<float> a = forward(f8.get(), r, T, H, K), c = forward(bf.get(), r, T, H, K);
    EXPECT_LE(max_rel_diff(a, c), f8_bound(f8.get())) << "T=" << T;
    EXPECT_LE(rel_l2(a, reference(r.x, r.ids64, r.wts, d13, d2, T, H, I, K)), 1e-2) << "T=" << T;
  }
}

}  // namespace
