// SPDX-License-Identifier: Apache-2.0
// 4-bit experts (symmetric int4, MXFP4) through the cpu backend's C ABI: random codes and
// group scales, checked against a double-precision reference computed here from the
// codings' definitions (int4 q - 8; e2m1 0, .5, 1, 1.5, 2, 3, 4, 6 and negated). Groups that
// end inside a K pass, odd K pass lengths (a pass starting on a high nibble), a row stride
// wider than the codes, and every kernel set this machine runs plus the emulated AMX.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "moereg/tensor/dtype.h"
#include "moereg/tensor/tensor_view.h"
#include "test_cpu_backend_layers.h"
#include "test_cpu_backend_util.h"

using namespace moereg;
using test::clear_option;
using test::cpu_api;
using test::for_each_isa;
using test::make_input;
using test::reference;
using test::relative_l2;
using test::routed_input;
using test::run_backend;
using test::set_option;
using test::take;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cpu_backend_quant {
namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

double code_value(int quant, int q) {
  static const double e2m1[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  if (quant == MOEREG_WEIGHT_QUANT_INT4) return q - 8;
  return q & 8 ? -e2m1[q & 7] : e2m1[q & 7];
}

struct q4_shape {
  std::int64_t E, H, I, K, group;
  std::int64_t row_pad = 0;  // bytes past the codes in each stored row
};

// One layer of 4-bit experts in the ABI's form: U8 rows of ceil(K/2) bytes (low nibble
// first), F32 scales [E, rows, ceil(K/g)].
struct q4_layer {
  q4_shape s;
  int quant;
  std::vector<std::uint8_t> w13, w2;
  std::vector<float> s13, s2;
  std::vector<double> d13, d2;  // dequantized
  moereg_moe_weights w{};

  q4_layer(const q4_shape& shape, int quant_kind, unsigned seed) : s(shape), quant(quant_kind) {
    std::mt19937 rng(seed);
    const std::int64_t E = s.E, H = s.H, I = s.I;
    // Scales over 2^-9 .. 2^-4, so a group read with its neighbour's scale is visibly wrong.
    auto scale = [&] { return std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f, -9 + static_cast<int>(rng() % 6)); };
    auto make = [&](std::int64_t rows, std::int64_t k, std::vector<std::uint8_t>& codes, std::vector<float>& sc,
                    std::vector<double>& deq) {
      const std::int64_t row_bytes = ceil_div(k, 2) + s.row_pad, groups = ceil_div(k, s.group);
      codes.assign(static_cast<std::size_t>(E * rows * row_bytes), 0xEE);  // padding: never read
      sc.resize(static_cast<std::size_t>(E * rows * groups));
      deq.resize(static_cast<std::size_t>(E * rows * k));
      for (auto& v : sc) v = scale();
      for (std::int64_t r = 0; r < E * rows; ++r)
        for (std::int64_t c = 0; c < k; ++c) {
          const int q = static_cast<int>(rng() & 15);
          std::uint8_t& b = codes[static_cast<std::size_t>(r * row_bytes + c / 2)];
          if (c % 2 == 0) b = static_cast<std::uint8_t>((b & 0xF0) | q);
          else b = static_cast<std::uint8_t>((b & 0x0F) | (q << 4));
          deq[static_cast<std::size_t>(r * k + c)] = code_value(quant, q) * sc[static_cast<std::size_t>(r * groups + c / s.group)];
        }
    };
    make(2 * I, H, w13, s13, d13);
    make(H, I, w2, s2, d2);
    w.num_experts = E;
    w.hidden = H;
    w.intermediate = I;
    auto view = [&](std::vector<std::uint8_t>& codes, std::int64_t rows, std::int64_t k) {
      const std::int64_t row_bytes = ceil_div(k, 2) + s.row_pad;
      moereg_tensor_view v = contiguous_view(codes.data(), dtype::U8, {E, rows, row_bytes});
      v.shape[2] = ceil_div(k, 2);  // a slice of the padded rows: strides keep the padding
      return v;
    };
    w.w13 = view(w13, 2 * I, H);
    w.w2 = view(w2, H, I);
    w.w13_scale = contiguous_view(s13.data(), dtype::F32, {E, 2 * I, ceil_div(H, s.group)});
    w.w2_scale = contiguous_view(s2.data(), dtype::F32, {E, H, ceil_div(I, s.group)});
    w.scale_block[0] = 1;
    w.scale_block[1] = s.group;
    w.weight_quant = quant;
  }
};

const std::vector<q4_shape>& shapes() {
  static const std::vector<q4_shape> s = {
      {4, 96, 40, 2, 32, 0},    // I's last group partial
      {3, 64, 24, 3, 128, 5},   // one group per row (per-channel), padded rows
      {5, 80, 48, 2, 16, 0},    // small groups
  };
  return s;
}

}  // namespace

TEST(cpu_backend_quant, f32_input_matches_double_reference_every_isa) {
  ASSERT_NE(cpu_api(), nullptr);
  for (int quant : {MOEREG_WEIGHT_QUANT_INT4, MOEREG_WEIGHT_QUANT_MXFP4}) {
    SCOPED_TRACE(quant == MOEREG_WEIGHT_QUANT_INT4 ? "int4" : "mxfp4");
    for_each_isa([quant] {
      for (std::size_t si = 0; si < shapes().size(); ++si) {
        const q4_shape& sh = shapes()[si];
        SCOPED_TRACE("shape " + std::to_string(si));
        q4_layer L(sh, quant, 11 + static_cast<unsigned>(si));
        for (std::int64_t T : {1, 5, 33}) {
          routed_input in = make_input(T, sh.K, sh.E, sh.H, 100 + static_cast<unsigned>(T));
          std::string d;
          const double e = relative_l2(run_backend(L, in, false, T == 5 ? 1 : 2, &d), reference(L, in, false));
          EXPECT_LE(e, 1e-5) << "T=" << T;
          EXPECT_NE(d.find(std::string("\"w13_dtype\":\"") + (quant == MOEREG_WEIGHT_QUANT_INT4 ? "int4" : "mxfp4")),
                    std::string::npos)
              << d;
        }
      }
    });
  }
}

TEST(cpu_backend_quant, bf16_input_within_bf16_bound_every_isa) {
  ASSERT_NE(cpu_api(), nullptr);
  for (int quant : {MOEREG_WEIGHT_QUANT_INT4, MOEREG_WEIGHT_QUANT_MXFP4}) {
    for_each_isa([quant] {
      q4_layer L(shapes()[0], quant, 21);
      for (std::int64_t T : {1, 66}) {
        routed_input in = make_input(T, 2, 4, 96, 200 + static_cast<unsigned>(T));
        const double e = relative_l2(run_backend(L, in, true, 2), reference(L, in, true));
        EXPECT_LE(e, 1e-2) << "T=" << T;
        EXPECT_GT(e, 1e-7) << "T=" << T << ": bf16 input keeps its intermediate in bf16";
      }
    });
  }
}

// K passes of odd lengths that cut groups: a pass may start on a high nibble, and each
// element's scale is picked by its absolute column.
TEST(cpu_backend_quant, odd_k_passes_cutting_groups) {
  ASSERT_NE(cpu_api(), nullptr);
  for (const char* kb : {"7", "20"}) {
    SCOPED_TRACE(std::string("k_block=") + kb);
    set_option("k_block", kb);
    for (int quant : {MOEREG_WEIGHT_QUANT_INT4, MOEREG_WEIGHT_QUANT_MXFP4})
      for_each_isa([quant] {
        q4_layer L({4, 96, 40, 2, 16, 3}, quant, 31);
        routed_input in = make_input(45, 2, 4, 96, 7);
        EXPECT_LE(relative_l2(run_backend(L, in, false, 2), reference(L, in, false)), 1e-5);
      });
  }
  clear_option("k_block");
}

TEST(cpu_backend_quant, refuses_mismatched_4bit_views) {
  ASSERT_NE(cpu_api(), nullptr);
  q4_layer L(shapes()[0], MOEREG_WEIGHT_QUANT_INT4, 3);
  moereg_routing_params routing{};
  moereg_backend* b = nullptr;
  moereg_moe_weights w = L.w;
  w.w13.dtype = MOEREG_DTYPE_I32;
  EXPECT_EQ(take(cpu_api()->create(&w, &routing, nullptr, &b)),
            "1: w13: expected U8 (two 4-bit codes a byte) with weight_quant 1, found I32");
  w = L.w;
  w.w2.shape[2] = 40;  // elements, not bytes
  EXPECT_EQ(take(cpu_api()->create(&w, &routing, nullptr, &b)), "1: w2: expected shape [4, 96, 20], found [4, 96, 40]");
  w = L.w;
  w.w13_scale.data = nullptr;
  EXPECT_EQ(take(cpu_api()->create(&w, &routing, nullptr, &b)), "1: w13_scale: required with 4-bit w13");
  w = L.w;
  w.scale_block[0] = 2;
  EXPECT_EQ(take(cpu_api()->create(&w, &routing, nullptr, &b)),
            "1: scale_block: expected {1, group} with 4-bit weights (a scale per row), found {2, 32}");
  w = L.w;
  w.weight_quant = 7;
  EXPECT_EQ(take(cpu_api()->create(&w, &routing, nullptr, &b)),
            "2: weight_quant: 7 is not a coding the cpu backend reads (expected 1 int4, 2 mxfp4 or 3 ggml blocks)");
  EXPECT_EQ(b, nullptr);
}

}  // namespace test_cpu_backend_quant
