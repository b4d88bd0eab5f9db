// SPDX-License-Identifier: Apache-2.0
// FP8 E4M3 experts with block scales through the cpu backend's C ABI: synthetic weights
// and scales, checked against a reference the test computes on its own (each byte decoded
// from its bit fields, times its scale, matmuls in double). Shapes with partial scale
// blocks on both axes, gate/up grids of their own, K passes that cut scale blocks, T not
// a multiple of any tile, strided scale views, every kernel set this machine runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "moereg/tensor/dtype.h"
#include "moereg/tensor/tensor_view.h"
#include "test_cpu_backend_layers.h"
#include "test_cpu_backend_util.h"

using namespace moereg;
using test::cpu_api;
using test::describe;
using test::for_each_isa;
using test::take;
using test::set_option;
using test::clear_option;
using test::routed_input;
using test::make_input;
using test::reference;
using test::run_backend;
using test::relative_l2;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cpu_backend_fp8 {
namespace {

// e4m3fn from its fields: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7F/0xFF NaN.
double fp8_reference(std::uint8_t v) {
  int e = (v >> 3) & 15, m = v & 7;
  double mag = e == 15 && m == 7 ? NAN : e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
  return v & 0x80 ? -mag : mag;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

struct fp8_shape {
  std::int64_t E, H, I, K, b0, b1;
  std::int64_t scale_pad = 0;  // extra floats per scale row: a strided view of a wider tensor
};

// One layer of FP8 experts with block scales, and its dequantized values in double.
struct fp8_layer {
  fp8_shape s;
  std::vector<std::uint8_t> w13, w2;   // [E, 2I, H], [E, H, I]
  std::vector<float> s13, s2;          // [E, 2 ceil(I/b0), ceil(H/b1) + pad], [E, ceil(H/b0), ceil(I/b1) + pad]
  std::int64_t s13_rows, s13_cols, s2_rows, s2_cols;
  std::vector<double> d13, d2;         // dequantized
  moereg_moe_weights w{};

  fp8_layer(const fp8_shape& shape, unsigned seed) : s(shape) {
    std::mt19937 rng(seed);
    auto byte = [&] {
      std::uint8_t v;
      do v = static_cast<std::uint8_t>(rng() & 0xFF);
      while ((v & 0x7F) == 0x7F);  // every finite code, subnormals included
      return v;
    };
    // Scales spread over 2^-12 .. 2^-6 so a block read with its neighbour's scale is visibly wrong.
    auto scale = [&] { return std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, -12 + static_cast<int>(rng() % 7)); };
    const std::int64_t E = s.E, H = s.H, I = s.I;
    w13.resize(static_cast<std::size_t>(E * 2 * I * H));
    w2.resize(static_cast<std::size_t>(E * H * I));
    for (auto& v : w13) v = byte();
    for (auto& v : w2) v = byte();
    s13_rows = 2 * ceil_div(I, s.b0);
    s13_cols = ceil_div(H, s.b1);
    s2_rows = ceil_div(H, s.b0);
    s2_cols = ceil_div(I, s.b1);
    s13.assign(static_cast<std::size_t>(E * s13_rows * (s13_cols + s.scale_pad)), NAN);  // padding never read
    s2.assign(static_cast<std::size_t>(E * s2_rows * (s2_cols + s.scale_pad)), NAN);
    for (std::int64_t e = 0; e < E; ++e) {
      for (std::int64_t r = 0; r < s13_rows; ++r)
        for (std::int64_t c = 0; c < s13_cols; ++c) s13[static_cast<std::size_t>((e * s13_rows + r) * (s13_cols + s.scale_pad) + c)] = scale();
      for (std::int64_t r = 0; r < s2_rows; ++r)
        for (std::int64_t c = 0; c < s2_cols; ++c) s2[static_cast<std::size_t>((e * s2_rows + r) * (s2_cols + s.scale_pad) + c)] = scale();
    }
    d13.resize(w13.size());
    d2.resize(w2.size());
    for (std::int64_t e = 0; e < E; ++e) {
      for (std::int64_t r = 0; r < 2 * I; ++r) {
        // Gate rows and up rows each have their own grid of ceil(I / b0) scale rows.
        std::int64_t sr = r < I ? r / s.b0 : ceil_div(I, s.b0) + (r - I) / s.b0;
        for (std::int64_t c = 0; c < H; ++c) {
          std::size_t i = static_cast<std::size_t>((e * 2 * I + r) * H + c);
          d13[i] = fp8_reference(w13[i]) * s13[static_cast<std::size_t>((e * s13_rows + sr) * (s13_cols + s.scale_pad) + c / s.b1)];
        }
      }
      for (std::int64_t r = 0; r < H; ++r)
        for (std::int64_t c = 0; c < I; ++c) {
          std::size_t i = static_cast<std::size_t>((e * H + r) * I + c);
          d2[i] = fp8_reference(w2[i]) * s2[static_cast<std::size_t>((e * s2_rows + r / s.b0) * (s2_cols + s.scale_pad) + c / s.b1)];
        }
    }
    w.num_experts = E;
    w.hidden = H;
    w.intermediate = I;
    w.w13 = contiguous_view(w13.data(), dtype::F8_E4M3, {E, 2 * I, H});
    w.w2 = contiguous_view(w2.data(), dtype::F8_E4M3, {E, H, I});
    w.w13_scale = contiguous_view(s13.data(), dtype::F32, {E, s13_rows, s13_cols + s.scale_pad});
    w.w13_scale.shape[2] = s13_cols;  // a slice of the padded tensor: strides keep the padding
    w.w2_scale = contiguous_view(s2.data(), dtype::F32, {E, s2_rows, s2_cols + s.scale_pad});
    w.w2_scale.shape[2] = s2_cols;
    w.scale_block[0] = s.b0;
    w.scale_block[1] = s.b1;
  }
};

const std::vector<fp8_shape>& shapes() {
  static const std::vector<fp8_shape> s = {
      {4, 40, 24, 2, 16, 16, 0},     // partial blocks on both axes of both matrices
      {3, 64, 32, 3, 128, 128, 0},   // one block per matrix; 2I < b0: gate and up one scale row each
      {5, 72, 20, 2, 8, 12, 3},      // small blocks, I not a multiple of b0, strided scale views
      {2, 48, 36, 1, 1, 1000, 0},    // per-channel: one scale per output row
  };
  return s;
}

}  // namespace

TEST(cpu_backend_fp8, f32_input_matches_double_reference_every_isa) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    for (std::size_t si = 0; si < shapes().size(); ++si) {
      const fp8_shape& sh = shapes()[si];
      SCOPED_TRACE("shape " + std::to_string(si));
      fp8_layer L(sh, 11 + static_cast<unsigned>(si));
      for (std::int64_t T : {1, 5, 33, 70}) {
        routed_input in = make_input(T, sh.K, sh.E, sh.H, 100 + static_cast<unsigned>(T));
        std::string d;
        double e = relative_l2(run_backend(L, in, false, T == 5 ? 1 : 2, &d), reference(L, in, false));
        EXPECT_LE(e, 1e-5) << "T=" << T;
        EXPECT_NE(d.find("\"w13_dtype\":\"f8_e4m3\""), std::string::npos) << d;
      }
    }
  });
}

TEST(cpu_backend_fp8, bf16_input_within_bf16_bound_every_isa) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    for (std::size_t si = 0; si < shapes().size(); ++si) {
      const fp8_shape& sh = shapes()[si];
      SCOPED_TRACE("shape " + std::to_string(si));
      fp8_layer L(sh, 21 + static_cast<unsigned>(si));
      for (std::int64_t T : {1, 7, 66}) {
        routed_input in = make_input(T, sh.K, sh.E, sh.H, 200 + static_cast<unsigned>(T));
        double e = relative_l2(run_backend(L, in, true, 2), reference(L, in, true));
        EXPECT_LE(e, 1e-2) << "T=" << T;
        EXPECT_GT(e, 1e-7) << "T=" << T << ": bf16 input keeps its intermediate in bf16";
      }
    }
  });
}

// K passes shorter than a scale block and not aligned to it: the widening must pick each
// element's scale by its absolute column, not by its offset in the pass.
TEST(cpu_backend_fp8, k_passes_cutting_scale_blocks) {
  ASSERT_NE(cpu_api(), nullptr);
  for (const char* kb : {"8", "20"}) {
    SCOPED_TRACE(std::string("k_block=") + kb);
    set_option("k_block", kb);
    for_each_isa([] {
      fp8_layer L({4, 40, 24, 2, 16, 12, 1}, 31);
      routed_input in = make_input(45, 2, 4, 40, 7);
      EXPECT_LE(relative_l2(run_backend(L, in, false, 2), reference(L, in, false)), 1e-5);
    });
  }
  clear_option("k_block");
}

// A NaN byte reaches the output of exactly the tokens routed through it, on every kernel set.
TEST(cpu_backend_fp8, nan_weight_byte_propagates) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    fp8_layer L({4, 40, 24, 1, 16, 16, 0}, 41);
    const std::int64_t H = 40, I = 24;
    L.w2[static_cast<std::size_t>((2 * H + 5) * I + 17)] = 0xFF;  // expert 2, output row 5
    routed_input in = make_input(9, 1, 4, H, 9);
    std::vector<float> out = run_backend(L, in, false, 2);
    for (std::int64_t t = 0; t < in.T; ++t) {
      bool hit = in.ids[static_cast<std::size_t>(t)] == 2;
      for (std::int64_t r = 0; r < H; ++r)
        EXPECT_EQ(std::isnan(out[static_cast<std::size_t>(t * H + r)]), hit && r == 5) << "t=" << t << " r=" << r;
    }
  });
}

// Nothing proportional to the experts is copied: 16x the experts adds only per-expert
// bookkeeping (bucket offsets, work items) to the scratch, far below one expert's bytes.
TEST(cpu_backend_fp8, no_dequantized_copy_of_the_experts) {
  ASSERT_NE(cpu_api(), nullptr);
  auto scratch = [](std::int64_t E) {
    fp8_layer L({E, 64, 32, 2, 16, 16, 0}, 51);
    routed_input in = make_input(16, 2, E, 64, 5);
    std::string d;
    run_backend(L, in, false, 2, &d);
    auto p = d.find("\"scratch_bytes\":");
    EXPECT_NE(p, std::string::npos) << d;
    EXPECT_NE(d.find("\"weight_bytes\":" + std::to_string(E * 3 * 64 * 32)), std::string::npos) << d;
    return p == std::string::npos ? -1 : std::stoll(d.substr(p + 16));
  };
  const long long grown = scratch(64) - scratch(4), one_expert_bf16 = 3 * 64 * 32 * 2;
  EXPECT_GE(grown, 0);
  EXPECT_LT(grown, 60 * 64) << "60 more experts dequantized to bf16 would add " << 60 * one_expert_bf16;
}

TEST(cpu_backend_fp8, refuses_bad_scales_with_clear_messages) {
  ASSERT_NE(cpu_api(), nullptr);
  fp8_layer L({4, 40, 24, 2, 16, 16, 0}, 61);
  moereg_routing_params routing{};
  auto create = [&](const moereg_moe_weights& w) {
    moereg_backend* b = nullptr;
    std::string s = take(cpu_api()->create(&w, &routing, nullptr, &b));
    cpu_api()->destroy(b);
    return s;
  };
  moereg_moe_weights w = L.w;
  w.w2_scale.data = nullptr;
  EXPECT_EQ(create(w), "1: w2_scale: required with F8_E4M3 w2");
  w = L.w;
  w.w13_scale.shape[1] = 3;  // ceil(2I/b0) = 3 is not the layout: gate and up have 2 rows each
  EXPECT_EQ(create(w), "1: w13_scale: expected shape [4, 4, 3], found [4, 3, 3]");
  w = L.w;
  w.w2_scale.dtype = MOEREG_DTYPE_BF16;
  EXPECT_EQ(create(w), "2: w2_scale: dtype BF16 is not supported (expected F32)");
  w = L.w;
  w.scale_block[1] = 0;
  EXPECT_EQ(create(w), "1: scale_block: expected positive {rows, columns} per scale with F8_E4M3 weights, found {16, 0}");
  std::vector<std::uint16_t> bf(L.w2.size(), 0x3F80);
  w = L.w;
  w.w2 = contiguous_view(bf.data(), dtype::BF16, {4, 40, 24});
  EXPECT_EQ(create(w), "1: w2_scale: given, but w2 is BF16 (scales go with F8_E4M3 and 4-bit weights only)");
  w.w2_scale = moereg_tensor_view{};
  EXPECT_EQ(create(w), "");  // FP8 gate/up with a bf16 down projection is fine
  w = L.w;
  w.shared_intermediate = 24;
  w.shared_w13 = contiguous_view(L.w13.data(), dtype::F8_E4M3, {48, 40});
  w.shared_w2 = contiguous_view(L.w2.data(), dtype::F8_E4M3, {40, 24});
  EXPECT_EQ(create(w), "1: shared_w13_scale: required with an F8_E4M3 shared expert");
  w.shared_w13_scale = contiguous_view(L.s13.data(), dtype::F32, {4, 3});
  w.shared_w2_scale = contiguous_view(L.s2.data(), dtype::F32, {3, 2});
  EXPECT_EQ(create(w), "");
  w.shared_w13_scale.shape[0] = 2;
  EXPECT_EQ(create(w), "1: shared_w13_scale: expected shape [4, 3], found [2, 3]");
}

// The last expert of an FP8 layer handed over as its shared expert (API 3: F8_E4M3 with its
// block scales) gives what the same expert gives routed to every token with weight 1.
TEST(cpu_backend_fp8, shared_expert_in_f8_matches_double_reference_every_isa) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    for (std::size_t si = 0; si < shapes().size(); ++si) {
      const fp8_shape& sh = shapes()[si];
      SCOPED_TRACE("shape " + std::to_string(si));
      fp8_layer L(sh, 61 + static_cast<unsigned>(si));
      const std::int64_t E = sh.E - 1, H = sh.H, I = sh.I, K = std::min(sh.K, E), last = sh.E - 1;
      struct shared_layer {
        fp8_shape s;
        moereg_moe_weights w;
      } S{sh, L.w};
      S.s.E = E;
      S.w.num_experts = E;
      S.w.w13.shape[0] = S.w.w2.shape[0] = S.w.w13_scale.shape[0] = S.w.w2_scale.shape[0] = E;
      S.w.shared_intermediate = I;
      auto slice = [](const moereg_tensor_view& v, std::int64_t e) {  // expert e of [E, r, c] as [r, c]
        moereg_tensor_view o = v;
        o.data = static_cast<char*>(v.data) + e * v.strides[0] * (v.dtype == MOEREG_DTYPE_F32 ? 4 : 1);
        o.rank = 2;
        for (int d = 0; d < 2; ++d) {
          o.shape[d] = v.shape[d + 1];
          o.strides[d] = v.strides[d + 1];
        }
        return o;
      };
      S.w.shared_w13 = slice(L.w.w13, last);
      S.w.shared_w2 = slice(L.w.w2, last);
      S.w.shared_w13_scale = slice(L.w.w13_scale, last);
      S.w.shared_w2_scale = slice(L.w.w2_scale, last);
      std::vector<std::uint16_t> routed13(static_cast<std::size_t>(E * 2 * I * H)), routed2(static_cast<std::size_t>(E * H * I));
      for (std::size_t i = 0; i < routed13.size(); ++i) routed13[i] = f32_to_bf16(static_cast<float>(L.d13[i]));
      for (std::size_t i = 0; i < routed2.size(); ++i) routed2[i] = f32_to_bf16(static_cast<float>(L.d2[i]));
      for (std::int64_t T : {1, 6, 41}) {
        routed_input in = make_input(T, K, E, H, 300 + static_cast<unsigned>(T));
        routed_input all = in;  // the shared expert as one more slot of weight 1
        all.K = K + 1;
        all.ids.clear();
        all.weights.clear();
        for (std::int64_t t = 0; t < T; ++t) {
          for (std::int64_t k = 0; k < K; ++k) {
            all.ids.push_back(in.ids[static_cast<std::size_t>(t * K + k)]);
            all.weights.push_back(in.weights[static_cast<std::size_t>(t * K + k)]);
          }
          all.ids.push_back(static_cast<std::int32_t>(last));
          all.weights.push_back(1.0f);
        }
        std::string d;
        EXPECT_LE(relative_l2(run_backend(S, in, false, 2, &d), reference(L, all, false)), 1e-5) << "T=" << T;
        EXPECT_NE(d.find("\"shared_w13_dtype\":\"f8_e4m3\""), std::string::npos) << d;
        EXPECT_LE(relative_l2(run_backend(S, in, true, 2), reference(L, all, true)), 1e-2) << "T=" << T;
        // The routed experts in bf16 (their dequantized values rounded) beside the F8 shared
        // expert: the scale grid is the shared expert's alone; bf16 rounding of the routed
        // weights bounds the distance.
        shared_layer M = S;
        M.w.w13 = contiguous_view(routed13.data(), dtype::BF16, {E, 2 * I, H});
        M.w.w2 = contiguous_view(routed2.data(), dtype::BF16, {E, H, I});
        M.w.w13_scale = M.w.w2_scale = moereg_tensor_view{};
        EXPECT_LE(relative_l2(run_backend(M, in, false, 2), reference(L, all, false)), 1e-2) << "bf16 routed, T=" << T;
      }
    }
  });
}

}  // namespace test_cpu_backend_fp8
