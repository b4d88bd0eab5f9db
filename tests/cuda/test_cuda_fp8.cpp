// SPDX-License-Identifier: Apache-2.0
// F8_E4M3 experts on the CUDA backend: read as stored with their block (or per-channel)
// scales. Each layer is checked against the same experts dequantized by the core
// (moereg/quant/fp8_e4m3.h: the bf16 values `convert --dtype bf16` writes) and run through the
// bf16 kernels, and against float64 on the exact weights (q x s), by the path that ran:
//  - exact products (k tiles inside one scale block: e4m3 -> f16 mma, the block scale applied
//    to each k tile's sum): the dequantized layer rounds every weight to bf16 and this path
//    does not, so the two differ by that rounding: bound 1e-2 of the largest output (measured
//    ~2e-3); against float64 on the exact weights the error is h's bf16 rounding: 4e-3 rel L2.
//  - per-weight dequantization (narrow blocks): the products of the bf16 layer; where the tile
//    sums k in the bf16 tile's order only the float atomics' order differs (1e-5); the m16
//    tile adds each k tile's halves in two warp groups, so h can round the other way (2e-3).
//  - FP8 tensor cores (f8_activations=e4m3, cuBLASLt): activations quantized to e4m3 per 128
//    columns: bound 8e-2 rel L2 from the dequantized layer (measured ~3e-2, printed).
// Plus the FP8 fixture's layer 1 and the refusals.
// Needs an sm_90 GPU; registered with ctest only when MOEREG_CUDA_TESTS=ON.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda_test_support.h"
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/scale_grid.h"
#include "test_cpu_fixture_util.h"

namespace {

using moereg::test::make_view;
using namespace moereg::test::cuda;

long long cdiv(long long a, long long b) { return (a + b - 1) / b; }

// What the last forward ran: describe's "last_tiles" to the end of the JSON.
std::string last_tiles(moereg_backend* b) {
  const std::string d = describe(b);
  return d.substr(d.find("\"last_tiles\""));
}
bool ran_exact_products(moereg_backend* f8) {
  const std::string last = last_tiles(f8);
  return last.find("f16 mma") != std::string::npos || last.find("f8_gemv") != std::string::npos;
}
// How far an F8 layer may be from its dequantized bf16 layer after the forward just made, as
// the largest difference over the largest output (see the top of the file).
double f8_bound(moereg_backend* f8) {
  if (ran_exact_products(f8)) return 1e-2;
  return last_tiles(f8).find("k groups") != std::string::npos ? 2e-3 : 1e-5;
}

// e4m3 byte -> its value (every finite code).
double e4m3_value(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return b & 0x80 ? -v : v;
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
  // The exact weights q x s (float64), gate/up as [E, 2I, H] and down as [E, H, I].
  std::vector<double> exact13() const {
    std::vector<double> v(w13.size());
    const long long hb = cdiv(H, b1), half = cdiv(I, b0) * hb;
    for (int x = 0; x < E; ++x)
      for (int part = 0; part < 2; ++part)
        for (long long i = 0; i < I; ++i)
          for (long long k = 0; k < H; ++k) {
            const size_t at = ((size_t(x) * 2 + part) * I + i) * H + k;
            v[at] = e4m3_value(w13[at]) * s13[(size_t(x) * 2 + part) * half + (i / b0) * hb + k / b1];
          }
    return v;
  }
  std::vector<double> exact2() const {
    std::vector<double> v(w2.size());
    const long long ib = cdiv(I, b1), per = cdiv(H, b0) * ib;
    for (int x = 0; x < E; ++x)
      for (long long n = 0; n < H; ++n)
        for (long long k = 0; k < I; ++k) {
          const size_t at = (size_t(x) * H + n) * I + k;
          v[at] = e4m3_value(w2[at]) * s2[size_t(x) * per + (n / b0) * ib + k / b1];
        }
    return v;
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

// float64 MoE on the exact weights (no bf16 rounding anywhere).
std::vector<double> exact_reference(const random_tokens& r, const std::vector<double>& e13,
                                    const std::vector<double>& e2, int T, int H, int I, int K) {
  std::vector<double> out(size_t(T) * H, 0.0), h(I);
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) {
      const size_t e = size_t(r.ids64[size_t(t) * K + k]);
      const double* g13 = e13.data() + e * 2 * I * H;
      for (int i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (int c = 0; c < H; ++c) {
          g += double(r.x[size_t(t) * H + c]) * g13[size_t(i) * H + c];
          u += double(r.x[size_t(t) * H + c]) * g13[size_t(I + i) * H + c];
        }
        h[i] = g / (1 + std::exp(-g)) * u;
      }
      const double* g2 = e2.data() + e * H * I;
      for (int n = 0; n < H; ++n) {
        double y = 0;
        for (int i = 0; i < I; ++i) y += h[i] * g2[size_t(n) * I + i];
        out[size_t(t) * H + n] += r.wts[size_t(t) * K + k] * y;
      }
    }
  return out;
}

// The FP8 layer against the dequantized bf16 layer on the kernels (cublas=off), every tile
// shape, T from one row to many tiles per expert; and against float64 at the largest T.
void check_layer(fp8_layer& L, const char* what, bool exact_products) {
  const std::vector<double> e13 = L.exact13(), e2 = L.exact2();
  set_option("cublas", "off");
  // "m16 n128": the decode tile without its 64-column variant (narrow=off), which these small
  // layers would otherwise always take.
  for (const std::string tiles : {"auto", "m16", "m16 n128", "m64", "m128"}) {
    set_option("tiles", tiles.substr(0, tiles.find(' ')));
    set_option("narrow", tiles == "m16 n128" ? "off" : "auto");
    handle f8 = create(L.f8_view(), nullptr);
    handle bf = create(L.bf16_view(), nullptr);
    ASSERT_TRUE(f8 && bf) << what;
    for (int T : {1, 5, 64, 333}) {
      random_tokens r(T, L.H, L.E, L.K, 7 * T + 1, T % 2 == 1);
      const std::vector<float> a = forward(f8.get(), r, T, L.H, L.K), b = forward(bf.get(), r, T, L.H, L.K);
      EXPECT_LE(max_rel_diff(a, b), f8_bound(f8.get())) << what << " tiles=" << tiles << " T=" << T;
      EXPECT_EQ(ran_exact_products(f8.get()), exact_products) << what << " tiles=" << tiles << "\n" << describe(f8.get());
      if (ran_exact_products(f8.get()) && (T == 64 || T == 5)) {
        const double err = rel_l2(a, exact_reference(r, e13, e2, T, L.H, L.I, L.K));
        EXPECT_LE(err, 4e-3) << what << " tiles=" << tiles << " T=" << T;
        std::printf("[ fp8      ] %s tiles=%s T=%d exact products: %.2e of the dequantized layer, rel L2 %.2e from "
                    "float64 on the exact weights\n",
                    what, tiles.c_str(), T, max_rel_diff(a, b), err);
      }
      if (T == 333 && std::string(tiles) == "auto") {
        const double err = rel_l2(a, reference(r.x, r.ids64, r.wts, L.d13, L.d2, T, L.H, L.I, L.K));
        EXPECT_LE(err, 1e-2) << what;
        std::printf("[ fp8      ] %s T=%d rel L2 against float64 %.3e\n", what, T, err);
      }
    }
  }
  clear_option("tiles");
  clear_option("narrow");
  clear_option("cublas");
}

TEST(CudaFp8, BlockScalesMatchTheDequantizedLayer) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(8, 256, 128, 2, 128, 128, 1);  // DeepSeek's 128x128 blocks, whole blocks
  check_layer(L, "E8 H256 I128 blocks 128x128", true);
  // A long K for the down GEMM (8 k tiles of the decode tile).
  fp8_layer S(4, 256, 1024, 2, 128, 128, 7);
  check_layer(S, "E4 H256 I1024 blocks 128x128", true);
}

TEST(CudaFp8, BlocksCutByTheSizes) {
  ASSERT_NE(backend_api(), nullptr);
  // I = 176 and H = 272 end inside a 128 block: partial blocks in both directions, and the
  // up rows start a new scale grid in the middle of what would be one block of 2I rows.
  fp8_layer L(6, 272, 176, 3, 128, 128, 2);
  check_layer(L, "E6 H272 I176 blocks 128x128", true);
  // Blocks narrower than a k tile of the kernels (8 columns: two scales per 16-byte chunk).
  fp8_layer N(4, 96, 80, 2, 16, 8, 3);
  check_layer(N, "E4 H96 I80 blocks 16x8", false);
}

TEST(CudaFp8, PerChannelScales) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(8, 192, 112, 2, 1, 192, 4);  // one scale per output row: {1, >= max(H, I)}
  check_layer(L, "E8 H192 I112 per-channel", true);
  fp8_layer W(4, 64, 48, 2, 1, 1 << 20, 5);  // a block far wider than the rows
  check_layer(W, "E4 H64 I48 per-channel (wide block)", true);
}

// rel L2 of a from b (float outputs of two layers).
double rel_l2_f(const std::vector<float>& a, const std::vector<float>& b) {
  return rel_l2(a, std::vector<double>(b.begin(), b.end()));
}

// FP8 tensor cores (f8_activations=e4m3) on both engines, moereg's grouped wgmma GEMM and
// cuBLASLt's matmul per expert: the activations quantized to e4m3 per 128 columns; against the
// dequantized bf16 layer and float64 on the exact weights, and the two engines against each
// other (the same quantized operands: they differ by summation order and the bf16 rounding of
// gate/up only); and with f8_gather on and off (bit-identical). T from one row (most experts
// idle) to several 128-row tiles per expert, with uneven routing (tiles cut short, idle experts).
void check_tensor_cores(fp8_layer& L, const char* what) {
  const std::vector<double> e13 = L.exact13(), e2 = L.exact2();
  set_option("f8_activations", "e4m3");
  set_option("f8_gemm", "wgmma");
  set_option("f8_gather", "on");
  handle f8 = create(L.f8_view(), nullptr);
  set_option("f8_gather", "off");
  set_option("f8_tile", "128x128");
  handle by_rows = create(L.f8_view(), nullptr);
  set_option("f8_tile", "128x256");
  handle wide = create(L.f8_view(), nullptr);
  set_option("f8_silu", "fused");
  handle fused = create(L.f8_view(), nullptr);
  clear_option("f8_silu");
  clear_option("f8_tile");
  clear_option("f8_gather");
  set_option("f8_gemm", "cublaslt");
  handle lt = create(L.f8_view(), nullptr);
  clear_option("f8_gemm");
  clear_option("f8_activations");
  handle bf = create(L.bf16_view(), nullptr);
  ASSERT_TRUE(f8 && by_rows && wide && fused && lt && bf) << what;
  for (int T : {1, 7, 300, 1500}) {
    random_tokens r(T, L.H, L.E, L.K, 5 * T + 3, true);
    const std::vector<float> a = forward(f8.get(), r, T, L.H, L.K), b = forward(bf.get(), r, T, L.H, L.K),
                             c = forward(lt.get(), r, T, L.H, L.K), d = forward(by_rows.get(), r, T, L.H, L.K);
    // Gathering the token's quantized x or reading the routed row's copy of it: the same bytes.
    EXPECT_EQ(max_rel_diff(a, d), 0.0) << what << " T=" << T;
    // 128 x 256 tiles (where the columns allow): the same products in the same order.
    EXPECT_EQ(max_rel_diff(forward(wide.get(), r, T, L.H, L.K), d), 0.0) << what << " T=" << T << " f8_tile=128x256";
    EXPECT_NE(last_tiles(wide.get()).find("gate/up 128x256, down"), std::string::npos) << what << "\n" << describe(wide.get());
    // SiLU and h's quantization in the gate/up GEMM's epilogue: the same operations on the same values.
    EXPECT_EQ(max_rel_diff(forward(fused.get(), r, T, L.H, L.K), d), 0.0) << what << " T=" << T << " f8_silu=fused";
    EXPECT_NE(last_tiles(fused.get()).find("gate/up 128x256 with SiLU and h's quantization"), std::string::npos)
        << what << "\n" << describe(fused.get());
    EXPECT_NE(last_tiles(by_rows.get()).find("gate/up 128x128, down 128x128"), std::string::npos) << what;
    EXPECT_NE(last_tiles(f8.get()).find("wgmma_fp8"), std::string::npos) << what << "\n" << describe(f8.get());
    EXPECT_NE(last_tiles(lt.get()).find("cublaslt_fp8"), std::string::npos) << what << "\n" << describe(lt.get());
    const double from_bf16 = rel_l2_f(a, b), from_exact = rel_l2(a, exact_reference(r, e13, e2, T, L.H, L.I, L.K));
    const double engines = rel_l2_f(a, c);
    EXPECT_LE(from_bf16, 8e-2) << what << " T=" << T;
    EXPECT_LE(from_exact, 8e-2) << what << " T=" << T;
    EXPECT_LE(engines, 1e-2) << what << " T=" << T;
    std::printf("[ fp8      ] %s T=%d e4m3 activations on FP8 tensor cores (wgmma): rel L2 %.2e from the dequantized "
                "layer, %.2e from float64 on the exact weights, %.2e from cuBLASLt's\n",
                what, T, from_bf16, from_exact, engines);
  }
}

TEST(CudaFp8, TensorCoresWithE4m3Activations) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(8, 256, 128, 2, 128, 128, 11);
  check_tensor_cores(L, "E8 H256 I128");
  // 3 and 2 scale blocks a row: cuBLASLt's block layout wants rows of a multiple of 4 (padded copy).
  fp8_layer P(6, 384, 256, 3, 128, 128, 12);
  check_tensor_cores(P, "E6 H384 I256");
  // k blocks past the wgmma kernel's 6 stages in one tile, 9 output column blocks.
  fp8_layer Q(5, 1152, 384, 2, 128, 128, 14);
  check_tensor_cores(Q, "E5 H1152 I384");
}

TEST(CudaFp8, AutoTakesTensorCoresForManyRowsPerExpert) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(8, 256, 128, 2, 128, 128, 13);
  handle f8 = create(L.f8_view(), nullptr);
  ASSERT_TRUE(f8);
  for (int T : {5, 1024}) {  // 1.25 and 256 rows per expert
    random_tokens r(T, L.H, L.E, L.K, T, true, true);
    forward(f8.get(), r, T, L.H, L.K);
    const std::string last = last_tiles(f8.get());
    if (T == 5) EXPECT_NE(last.find("f16 mma"), std::string::npos) << last;
    else EXPECT_NE(last.find("wgmma_fp8"), std::string::npos) << last;  // f8_gemm=wgmma by default
  }
  EXPECT_NE(describe(f8.get()).find("FP8 tensor cores: moereg's grouped wgmma GEMM"), std::string::npos)
      << describe(f8.get());
  // f8_activations=bf16 keeps every size on the exact-product kernels.
  set_option("f8_activations", "bf16");
  handle exact = create(L.f8_view(), nullptr);
  clear_option("f8_activations");
  ASSERT_TRUE(exact);
  random_tokens r(1024, L.H, L.E, L.K, 1, true, true);
  forward(exact.get(), r, 1024, L.H, L.K);
  EXPECT_TRUE(ran_exact_products(exact.get())) << describe(exact.get());
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
  EXPECT_NE(json.find("the kernels (FP8 tensor cores not used: scale blocks {16, 16}"), std::string::npos) << json;

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

  // 16x16 blocks fit neither FP8 tensor-core engine; each refusal names its engine's limit.
  set_option("f8_activations", "e4m3");
  for (const auto& [engine, name] : {std::pair<const char*, const char*>{"cublaslt", "the block-scaled matmul"},
                                     {"wgmma", "the grouped FP8 GEMM"}}) {
    set_option("f8_gemm", engine);
    EXPECT_FALSE(create(L.f8_view(), nullptr, &err)) << engine;
    EXPECT_NE(err.find(std::string("f8_activations=e4m3: scale blocks {16, 16}, ") + name + " takes {128, 128}"),
              std::string::npos)
        << err;
  }
  clear_option("f8_gemm");
  clear_option("f8_activations");
  set_option("f8_gemm", "cutlass");
  EXPECT_FALSE(create(L.f8_view(), nullptr, &err));
  clear_option("f8_gemm");
  EXPECT_NE(err.find("backend option f8_gemm='cutlass': expected wgmma or cublaslt"), std::string::npos) << err;

  set_option("tiles", "cublas");
  EXPECT_FALSE(create(L.f8_view(), nullptr, &err));
  clear_option("tiles");
  EXPECT_NE(err.find("backend option tiles=cublas: the cuBLAS path runs BF16 experts"), std::string::npos) << err;
}

// An F8_E4M3 shared expert (plugin API 3, as DeepSeek-V3 ships it): the layer's last expert
// handed over as the shared expert with its block scales, against the same routed F8 experts
// with that expert dequantized to bf16 as the shared one. On the kernels (decode: exact
// products beside the routed GEMMs; every tile shape; inside a CUDA graph, captured then
// replayed) the two differ by the bf16 rounding of the shared weights (bound 1e-2 of the
// largest output); with cuBLASLt the F8 layer runs its BF16 copy of the shared expert on
// cuBLAS, the same weights as the other layer's, so the outputs agree to float rounding of
// the same sums. On the grouped wgmma GEMM (the default engine) the F8 shared expert is one
// more expert of its launches, with e4m3 activations like the routed ones: within the e4m3
// bound of the layer that runs it in bf16 (8e-2 relative L2), with and without a shared gate.
TEST(CudaFp8, SharedExpertInF8) {
  ASSERT_NE(backend_api(), nullptr);
  fp8_layer L(9, 256, 128, 2, 128, 128, 21);
  const int E = 8, H = L.H, I = L.I, K = L.K;
  const long long s13 = 2 * cdiv(I, L.b0) * cdiv(H, L.b1), s2 = cdiv(H, L.b0) * cdiv(I, L.b1);
  auto routed = [&](moereg_moe_weights w) {
    w.num_experts = E;
    w.w13.shape[0] = w.w2.shape[0] = w.w13_scale.shape[0] = w.w2_scale.shape[0] = E;
    w.shared_intermediate = I;
    return w;
  };
  moereg_moe_weights f8 = routed(L.f8_view()), bf = routed(L.f8_view());
  f8.shared_w13 = make_view(L.w13.data() + size_t(E) * 2 * I * H, MOEREG_DTYPE_F8_E4M3, {2 * I, H});
  f8.shared_w2 = make_view(L.w2.data() + size_t(E) * H * I, MOEREG_DTYPE_F8_E4M3, {H, I});
  f8.shared_w13_scale = make_view(L.s13.data() + E * s13, MOEREG_DTYPE_F32, {2 * cdiv(I, L.b0), cdiv(H, L.b1)});
  f8.shared_w2_scale = make_view(L.s2.data() + E * s2, MOEREG_DTYPE_F32, {cdiv(H, L.b0), cdiv(I, L.b1)});
  bf.shared_w13 = make_view(L.d13.data() + size_t(E) * 2 * I * H, MOEREG_DTYPE_BF16, {2 * I, H});
  bf.shared_w2 = make_view(L.d2.data() + size_t(E) * H * I, MOEREG_DTYPE_BF16, {H, I});
  // The grouped GEMM's shared expert, gated (Qwen's shared_expert_gate) and not (DeepSeek).
  std::vector<uint16_t> gate(H);
  std::mt19937 rng(23);
  std::normal_distribution<float> n(0.f, 1.f / std::sqrt(float(H)));
  for (auto& g : gate) g = to_bf16(n(rng));
  auto bytes_on_device = [](const std::string& d) {
    const size_t at = d.find("\"bytes_on_device\":");
    return at == std::string::npos ? -1ll : std::stoll(d.substr(at + 18));
  };
  for (bool gated : {false, true}) {
    moereg_moe_weights f = f8, b = bf;
    if (gated) f.shared_gate = b.shared_gate = make_view(gate.data(), MOEREG_DTYPE_BF16, {1, H});
    for (const char* silu : {"separate", "fused"}) {
      const std::string what = std::string(gated ? "gated" : "ungated") + ", f8_silu=" + silu;
      set_option("f8_activations", "e4m3");
      set_option("f8_silu", silu);
      handle a = create(f, nullptr), c = create(b, nullptr);
      clear_option("f8_silu");
      clear_option("f8_activations");
      ASSERT_TRUE(a && c) << what;
      EXPECT_NE(describe(a.get()).find("one more expert of the grouped GEMM"), std::string::npos) << describe(a.get());
      // No BF16 copy of the shared expert: the layer holds 6 H I bytes less than with cuBLASLt,
      // whose passes run the shared expert on cuBLAS from that copy.
      EXPECT_EQ(describe(a.get()).find("BF16 copy"), std::string::npos) << describe(a.get());
      set_option("f8_gemm", "cublaslt");
      handle lt = create(f, nullptr);
      clear_option("f8_gemm");
      ASSERT_TRUE(lt);
      EXPECT_EQ(bytes_on_device(describe(lt.get())) - bytes_on_device(describe(a.get())), 6ll * H * I)
          << describe(a.get()) << "\n" << describe(lt.get());
      for (int T : {1, 7, 300, 1500}) {
        random_tokens r(T, H, E, K, 13 * T + 5, true);
        const std::vector<float> x = forward(a.get(), r, T, H, K), y = forward(c.get(), r, T, H, K);
        EXPECT_NE(last_tiles(a.get()).find("the shared expert as one more expert of both"), std::string::npos)
            << what << "\n" << describe(a.get());
        const double d = rel_l2_f(x, y);
        EXPECT_LE(d, 8e-2) << what << " T=" << T;
        std::printf("[ fp8      ] shared expert in the grouped GEMM, %s, T=%d: rel L2 %.2e from the layer with its "
                    "shared expert in bf16\n", what.c_str(), T, d);
      }
    }
  }
  struct setting {
    const char* name;
    std::vector<std::pair<std::string, std::string>> options;
    std::vector<int> tokens;
    double bound;
  };
  for (const setting& s : {setting{"kernels", {{"cublas", "off"}}, {1, 5, 64, 333}, 1e-2},
                           setting{"kernels m16", {{"cublas", "off"}, {"tiles", "m16"}}, {1, 6, 64}, 1e-2},
                           setting{"kernels m128", {{"cublas", "off"}, {"tiles", "m128"}}, {3, 333}, 1e-2},
                           setting{"graphs", {{"graphs", "on"}}, {1, 4, 16}, 1e-2},
                           setting{"gemv", {{"f8_decode", "gemv"}}, {1, 2}, 1e-2},
                           setting{"gemv in a graph", {{"f8_decode", "gemv"}, {"graphs", "on"}}, {1}, 1e-2},
                           setting{"cuBLAS", {{"f8_activations", "e4m3"}, {"f8_gemm", "cublaslt"}}, {1, 300, 1500}, 1e-6}}) {
    for (const auto& [k, v] : s.options) set_option(k, v);
    handle a = create(f8, nullptr), b = create(bf, nullptr);
    for (const auto& [k, v] : s.options) clear_option(k);
    ASSERT_TRUE(a && b) << s.name;
    EXPECT_NE(describe(a.get()).find("\"shared_dtype\":\"F8_E4M3\""), std::string::npos) << describe(a.get());
    for (int T : s.tokens) {
      random_tokens r(T, H, E, K, 9 * T + 2, T % 2 == 0);
      for (int round = 0; round < 2; ++round) {  // graphs=on: captured, then replayed
        const std::vector<float> x = forward(a.get(), r, T, H, K), y = forward(b.get(), r, T, H, K);
        EXPECT_LE(max_rel_diff(x, y), s.bound) << s.name << " T=" << T << "\n" << describe(a.get());
      }
    }
  }
}

// f8_decode=gemv (the default): T = 1 on the matrix-vector kernels (f8_gemv.cuh), against the mma tiles (both
// exact products; the gemv keeps h in f32), the dequantized bf16 layer and float64 on the exact
// weights; whole and cut scale blocks, per-channel scales. Blocks the 16-byte chunks would cut
// (16 x 8) and T > 1 keep the mma tiles.
TEST(CudaFp8, GemvAtOneToken) {
  ASSERT_NE(backend_api(), nullptr);
  struct shape {
    int E, H, I, K;
    long long b0, b1;
    bool fits;
  };
  for (const shape& sh : {shape{8, 256, 128, 2, 128, 128, true}, shape{6, 272, 176, 3, 128, 128, true},
                          shape{8, 192, 112, 2, 1, 192, true}, shape{16, 1024, 512, 8, 128, 128, true},
                          shape{4, 96, 80, 2, 16, 8, false}}) {
    const std::string what = "E" + std::to_string(sh.E) + " H" + std::to_string(sh.H) + " I" + std::to_string(sh.I) +
                             " blocks " + std::to_string(sh.b0) + "x" + std::to_string(sh.b1);
    fp8_layer L(sh.E, sh.H, sh.I, sh.K, sh.b0, sh.b1, 31 + sh.E);
    const std::vector<double> e13 = L.exact13(), e2 = L.exact2();
    handle g = create(L.f8_view(), nullptr), bf = create(L.bf16_view(), nullptr);  // f8_decode=gemv by default
    set_option("f8_decode", "mma");
    handle m = create(L.f8_view(), nullptr);
    clear_option("f8_decode");
    ASSERT_TRUE(g && m && bf) << what;
    for (int T : {1, 2}) {
      random_tokens r(T, L.H, L.E, L.K, 17 * T + sh.E, true);
      const std::vector<float> a = forward(g.get(), r, T, L.H, L.K), b = forward(m.get(), r, T, L.H, L.K),
                               c = forward(bf.get(), r, T, L.H, L.K);
      const bool gemv = last_tiles(g.get()).find("f8_gemv") != std::string::npos;
      EXPECT_EQ(gemv, sh.fits && T == 1) << what << " T=" << T << "\n" << describe(g.get());
      EXPECT_LE(max_rel_diff(a, b), 1e-2) << what << " T=" << T;
      EXPECT_LE(max_rel_diff(a, c), 1e-2) << what << " T=" << T;
      if (gemv) {
        const double err = rel_l2(a, exact_reference(r, e13, e2, T, L.H, L.I, L.K));
        EXPECT_LE(err, 4e-3) << what;
        std::printf("[ fp8      ] %s T=1 gemv: %.2e of the mma tiles, rel L2 %.2e from float64 on the exact weights\n",
                    what.c_str(), max_rel_diff(a, b), err);
      }
    }
  }
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
