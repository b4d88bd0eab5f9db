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
#include "test_cpu_backend_util.h"

using namespace moereg;
using test::cpu_api;
using test::describe;
using test::for_each_isa;
using test::take;

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

struct routed_input {
  std::int64_t T, K;
  std::vector<float> x;
  std::vector<std::uint16_t> xb;
  std::vector<std::int32_t> ids;
  std::vector<float> weights;
};

// T tokens, K distinct experts each with a positive weight; experts drawn unevenly so some
// get many rows (multi-tile items) and some none.
routed_input make_input(std::int64_t T, std::int64_t K, std::int64_t E, std::int64_t H, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  routed_input in{T, K, {}, {}, {}, {}};
  in.x.resize(static_cast<std::size_t>(T * H));
  for (auto& v : in.x) v = normal(rng);
  in.xb.resize(in.x.size());
  for (std::size_t i = 0; i < in.x.size(); ++i) in.xb[i] = f32_to_bf16(in.x[i]);
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<std::int32_t> chosen;
    while (static_cast<std::int64_t>(chosen.size()) < K) {
      auto e = static_cast<std::int32_t>(rng() % 3 == 0 ? 0 : rng() % static_cast<unsigned>(E));
      bool dup = false;
      for (auto c : chosen) dup = dup || c == e;
      if (!dup) chosen.push_back(e);
    }
    for (auto e : chosen) {
      in.ids.push_back(e);
      in.weights.push_back(0.25f + static_cast<float>(rng() % 100) / 100.0f);
    }
  }
  return in;
}

// out[t] = sum_k w[t,k] * W2_e (silu(W1_e x) * W3_e x), all in double.
std::vector<double> reference(const fp8_layer& L, const routed_input& in, bool bf16_x) {
  const std::int64_t H = L.s.H, I = L.s.I;
  std::vector<double> out(static_cast<std::size_t>(in.T * H), 0.0), h(static_cast<std::size_t>(I));
  for (std::int64_t t = 0; t < in.T; ++t) {
    for (std::int64_t k = 0; k < in.K; ++k) {
      const std::int64_t e = in.ids[static_cast<std::size_t>(t * in.K + k)];
      for (std::int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (std::int64_t c = 0; c < H; ++c) {
          std::size_t xi = static_cast<std::size_t>(t * H + c);
          double xv = bf16_x ? bf16_to_f32(in.xb[xi]) : in.x[xi];
          g += xv * L.d13[static_cast<std::size_t>((e * 2 * I + i) * H + c)];
          u += xv * L.d13[static_cast<std::size_t>((e * 2 * I + I + i) * H + c)];
        }
        h[static_cast<std::size_t>(i)] = g / (1 + std::exp(-g)) * u;
      }
      const double wk = in.weights[static_cast<std::size_t>(t * in.K + k)];
      for (std::int64_t r = 0; r < H; ++r) {
        double acc = 0;
        for (std::int64_t i = 0; i < I; ++i) acc += L.d2[static_cast<std::size_t>((e * H + r) * I + i)] * h[static_cast<std::size_t>(i)];
        out[static_cast<std::size_t>(t * H + r)] += wk * acc;
      }
    }
  }
  return out;
}

// Runs the backend on the layer and input; returns out, with the describe JSON if asked.
std::vector<float> run_backend(const fp8_layer& L, const routed_input& in, bool bf16_x, int threads, std::string* d = nullptr) {
  moereg_routing_params routing{};
  routing.num_experts = static_cast<std::int32_t>(L.s.E);
  routing.top_k = static_cast<std::int32_t>(in.K);
  moereg_backend_options opts{};
  opts.threads = threads;
  moereg_backend* b = nullptr;
  EXPECT_EQ(take(cpu_api()->create(&L.w, &routing, &opts, &b)), "");
  std::vector<float> out(static_cast<std::size_t>(in.T * L.s.H), NAN);
  if (!b) return out;
  moereg_tensor_view xv = bf16_x ? contiguous_view(in.xb.data(), dtype::BF16, {in.T, L.s.H})
                                 : contiguous_view(in.x.data(), dtype::F32, {in.T, L.s.H});
  moereg_tensor_view iv = contiguous_view(in.ids.data(), dtype::I32, {in.T, in.K});
  moereg_tensor_view wv = contiguous_view(in.weights.data(), dtype::F32, {in.T, in.K});
  moereg_tensor_view ov = contiguous_view(out.data(), dtype::F32, {in.T, L.s.H});
  EXPECT_EQ(take(cpu_api()->forward(b, &xv, &iv, &wv, &ov)), "");
  if (d) *d = describe(b);
  cpu_api()->destroy(b);
  return out;
}

double relative_l2(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    double d = got[i] - want[i];
    num += std::isnan(d) ? INFINITY : d * d;
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

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
    SCOPED_TRACE(std::string("MOEREG_CPU_KBLOCK=") + kb);
    ::setenv("MOEREG_CPU_KBLOCK", kb, 1);
    for_each_isa([] {
      fp8_layer L({4, 40, 24, 2, 16, 12, 1}, 31);
      routed_input in = make_input(45, 2, 4, 40, 7);
      EXPECT_LE(relative_l2(run_backend(L, in, false, 2), reference(L, in, false)), 1e-5);
    });
  }
  ::unsetenv("MOEREG_CPU_KBLOCK");
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
  EXPECT_EQ(create(w), "1: w2_scale: given, but w2 is BF16 (scales go with F8_E4M3 weights only)");
  w.w2_scale = moereg_tensor_view{};
  EXPECT_EQ(create(w), "");  // FP8 gate/up with a bf16 down projection is fine
  w = L.w;
  w.shared_intermediate = 24;
  w.shared_w13 = contiguous_view(L.w13.data(), dtype::F8_E4M3, {48, 40});
  w.shared_w2 = contiguous_view(L.w2.data(), dtype::F8_E4M3, {40, 24});
  EXPECT_EQ(create(w), "2: shared_w13: dtype F8_E4M3 is not supported by the cpu backend (expected BF16 or F32)");
}
