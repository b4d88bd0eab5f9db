// SPDX-License-Identifier: Apache-2.0
// The cpu backend's activation quantization for the integer products (cpu_int_dot.h's
// int_quantize_fn): every vector version this CPU runs (AVX2, AVX-512) must give the scalar
// version's int8 codes (padding included), scales and chunk sums bit for bit, on f32 and bf16
// rows, int8 and int4 (permuted) layouts, groups of 64, 128 or the whole row, and lengths with
// tails of every size. Rows: random magnitudes, zeros, all-equal, exact .5 ties (nearbyint
// rounds them to even), products past +-127, and tiny values whose 127 / max is infinite.
// The kernels are linked in from the backend's object library, not loaded through the ABI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu_int_dot.h"

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cpu_int_quantize {
namespace {

using moereg::cpu::int_chunk;
using moereg::cpu::int_quantize_fn;

struct version {
  const char* name;
  int_quantize_fn fn;
  bool runs;  // this CPU has its ISA
};

std::vector<version> vector_versions() {
  return {{"avx2", &moereg::cpu::int_quantize_avx2, __builtin_cpu_supports("avx2") != 0},
          {"avx512", &moereg::cpu::int_quantize_avx512,
           __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")}};
}

struct result {
  std::vector<std::int8_t> q;
  std::vector<float> scale;
  std::vector<std::int32_t> sum;
};

// q and sum start as garbage: a version must write every byte of the padded row.
result run(int_quantize_fn fn, const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4) {
  const std::int64_t chunks = (k + int_chunk - 1) / int_chunk, groups = (k + group - 1) / group;
  result r{std::vector<std::int8_t>(static_cast<std::size_t>(chunks * int_chunk), 0x55),
           std::vector<float>(static_cast<std::size_t>(groups), -1.0f), std::vector<std::int32_t>(static_cast<std::size_t>(chunks), 12345)};
  fn(src, bf16, k, group, int4, r.q.data(), r.scale.data(), r.sum.data());
  return r;
}

std::uint16_t bf16_bits(float f) {  // truncated: any bf16 value will do
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return static_cast<std::uint16_t>(b >> 16);
}

void expect_same(const result& want, const result& got, const std::string& what) {
  for (std::size_t i = 0; i < want.q.size(); ++i)
    ASSERT_EQ(int{want.q[i]}, int{got.q[i]}) << what << ": code at " << i;
  for (std::size_t g = 0; g < want.scale.size(); ++g)
    ASSERT_EQ(0, std::memcmp(&want.scale[g], &got.scale[g], 4)) << what << ": scale " << g << " " << want.scale[g] << " vs " << got.scale[g];
  for (std::size_t c = 0; c < want.sum.size(); ++c) ASSERT_EQ(want.sum[c], got.sum[c]) << what << ": sum of chunk " << c;
}

// Rows of length k, by kind.
std::vector<float> make_row(int kind, std::int64_t k, std::mt19937& rng) {
  std::vector<float> v(static_cast<std::size_t>(k));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> ints(-127, 126), exps(-20, 20);
  for (std::size_t i = 0; i < v.size(); ++i) {
    switch (kind) {
      case 0: v[i] = std::ldexp(normal(rng), exps(rng) / 4); break;  // random, spread magnitudes
      case 1: v[i] = 0.0f; break;
      case 2: v[i] = -0.375f; break;  // all equal: every code -127
      // Ties: with 127 in every 64 values (so in every group), 127 / max is 1 and x.5 rounds to even.
      case 3: v[i] = i % 64 == 5 ? 127.0f : static_cast<float>(ints(rng)) + 0.5f; break;
      // Ties at 127 / max = 0.5: odd integers x give x / 2 = n + .5.
      case 4: v[i] = i % 64 == 9 ? -254.0f : static_cast<float>(2 * ints(rng) + 1); break;
      // 127 / max overflows to infinity: codes +-127 (no zeros here: 0 x inf is NaN).
      case 5: v[i] = (i % 2 ? -1.0f : 1.0f) * std::ldexp(1.0f + static_cast<float>(i % 7), -128); break;
      default: v[i] = normal(rng) * 1e30f; break;  // large values
    }
  }
  if (kind == 0 && k > 3) v[2] = 0.0f;  // a zero among the others
  return v;
}
constexpr int row_kinds = 7;

}  // namespace

TEST(cpu_int_quantize, scalar_follows_the_definition) {
  // 127 as the max: codes are the values rounded half to even; int4 puts odd elements at 32+.
  std::vector<float> v = {127.0f, 2.5f, 3.5f, -0.5f, -1.5f, 126.5f, 0.49f, -127.0f};
  std::vector<std::uint16_t> vb;
  for (float f : v) vb.push_back(bf16_bits(f));
  const std::int64_t k = static_cast<std::int64_t>(v.size());
  const result f = run(&moereg::cpu::int_quantize_scalar, v.data(), false, k, 64, false);
  const std::vector<int> want = {127, 2, 4, 0, -2, 126, 0, -127};
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(int{f.q[i]}, want[i]) << i;
  for (std::size_t i = want.size(); i < f.q.size(); ++i) EXPECT_EQ(int{f.q[i]}, 0) << i;
  EXPECT_EQ(f.scale[0], 1.0f);
  EXPECT_EQ(f.sum[0], 127 + 2 + 4 - 2 + 126 - 127);
  const result b = run(&moereg::cpu::int_quantize_scalar, vb.data(), true, k, 64, true);
  EXPECT_EQ(int{b.q[0]}, 127);   // element 0
  EXPECT_EQ(int{b.q[1]}, 4);     // element 2
  EXPECT_EQ(int{b.q[32]}, 2);    // element 1
  EXPECT_EQ(int{b.q[35]}, -127); // element 7
  const std::vector<float> zeros(70, 0.0f);
  const result z = run(&moereg::cpu::int_quantize_scalar, zeros.data(), false, 70, 64, false);
  EXPECT_EQ(z.scale[0], 0.0f);
  EXPECT_EQ(z.scale[1], 0.0f);
  for (std::int8_t c : z.q) EXPECT_EQ(int{c}, 0);
}

TEST(cpu_int_quantize, vector_versions_match_scalar_bit_for_bit) {
  int ran = 0;
  for (const version& ver : vector_versions()) {
    if (!ver.runs) continue;
    ++ran;
    std::mt19937 rng(7);
    for (std::int64_t k : {1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 96, 127, 128, 129, 200, 257, 768, 2061}) {
      for (std::int64_t group : {std::int64_t{64}, std::int64_t{128}, k, std::int64_t{1} << 20}) {
        if (group < k && group % 64) continue;  // the contract: whole chunks or the whole row
        for (int kind = 0; kind < row_kinds; ++kind) {
          const std::vector<float> row = make_row(kind, k, rng);
          std::vector<std::uint16_t> rowb;
          for (float f : row) rowb.push_back(bf16_bits(f));
          for (bool bf16 : {false, true}) {
            const void* src = bf16 ? static_cast<const void*>(rowb.data()) : row.data();
            for (bool int4 : {false, true}) {
              const std::string what = std::string(ver.name) + " k=" + std::to_string(k) + " group=" + std::to_string(group) +
                                       " kind=" + std::to_string(kind) + (bf16 ? " bf16" : " f32") + (int4 ? " int4" : " int8");
              expect_same(run(&moereg::cpu::int_quantize_scalar, src, bf16, k, group, int4), run(ver.fn, src, bf16, k, group, int4),
                          what);
              if (HasFatalFailure()) return;
            }
          }
        }
      }
    }
  }
  if (ran == 0) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512 F/BW/VL: only the scalar version runs here";
}

}  // namespace test_cpu_int_quantize
