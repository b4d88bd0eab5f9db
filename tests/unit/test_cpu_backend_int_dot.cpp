// SPDX-License-Identifier: Apache-2.0
// The integer products of the online quantization (backend options quantize=int8|int4,
// int_dot): bf16 experts quantized at create, activations quantized per token and group,
// int32 sums scaled once per group. Checked on every product path this CPU runs (AVX-512
// VNNI, AVX-VNNI, AVX2 vpmaddubsw, scalar, AMX INT8 where present) and on the emulated AMX
// unit, against a double-precision reference of the quantized definition written here
// (weight codes and scales as cpu_quantize.cpp defines them, activation codes as
// docs/backends.md does), and against the bf16 layer; odd shapes (K not whole 64-chunks, I
// not whole 16-row tiles, T = 1 and T not whole 16-token tiles, odd H for int4), K passes, and
// the refusals.
#include <gtest/gtest.h>

#include <algorithm>
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
using test::make_input;
using test::relative_l2;
using test::routed_input;
using test::run_backend;
using test::set_option;
using test::take;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cpu_backend_int_dot {
namespace {

struct shape {
  std::int64_t E, H, I, K;
};

// Random normal bf16 experts in the ABI's form; d13/d2 the bf16 values in double.
struct bf16_layer {
  shape s;
  std::vector<std::uint16_t> w13, w2;
  std::vector<double> d13, d2;
  moereg_moe_weights w{};
  explicit bf16_layer(const shape& sh, unsigned seed) : s(sh) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    auto make = [&](std::int64_t n, std::vector<std::uint16_t>& b, std::vector<double>& d) {
      b.resize(static_cast<std::size_t>(n));
      d.resize(b.size());
      for (std::size_t i = 0; i < b.size(); ++i) {
        b[i] = f32_to_bf16(normal(rng));
        d[i] = bf16_to_f32(b[i]);
      }
    };
    make(s.E * 2 * s.I * s.H, w13, d13);
    make(s.E * s.H * s.I, w2, d2);
    w.num_experts = s.E;
    w.hidden = s.H;
    w.intermediate = s.I;
    w.w13 = contiguous_view(w13.data(), dtype::BF16, {s.E, 2 * s.I, s.H});
    w.w2 = contiguous_view(w2.data(), dtype::BF16, {s.E, s.H, s.I});
  }
};

// Symmetric codes of one row's groups, as the backend's quantization at create makes them.
struct coded {
  std::vector<int> q;
  std::vector<float> scale;  // per group
};
coded quantize(const float* v, std::int64_t k, std::int64_t group, float qmax) {
  coded c;
  c.q.resize(static_cast<std::size_t>(k));
  for (std::int64_t c0 = 0; c0 < k; c0 += group) {
    const std::int64_t c1 = std::min(k, c0 + group);
    float amax = 0;
    for (std::int64_t i = c0; i < c1; ++i) amax = std::max(amax, std::fabs(v[i]));
    const float inv = amax > 0 ? qmax / amax : 0.0f;
    c.scale.push_back(amax / qmax);
    for (std::int64_t i = c0; i < c1; ++i)
      c.q[static_cast<std::size_t>(i)] = static_cast<int>(std::clamp(std::nearbyint(v[i] * inv), -qmax, qmax));
  }
  return c;
}

double dot(const coded& w, const coded& a, std::int64_t group) {
  double sum = 0;
  for (std::size_t g = 0; g < w.scale.size(); ++g) {
    std::int64_t isum = 0;
    for (std::size_t i = g * static_cast<std::size_t>(group); i < std::min(w.q.size(), (g + 1) * static_cast<std::size_t>(group)); ++i)
      isum += static_cast<std::int64_t>(w.q[i]) * a.q[i];
    sum += static_cast<double>(isum) * w.scale[g] * a.scale[g];
  }
  return sum;
}

// The layer as the integer path defines it: weight codes (int8: / 127, int4: / 7) and
// activation codes (/ 127) per group of `group` inputs (0: the row), sums in double.
std::vector<double> int_reference(const bf16_layer& L, const routed_input& in, bool bf16_x, int bits, std::int64_t group) {
  const std::int64_t H = L.s.H, I = L.s.I, g = group > 0 ? group : std::max(H, I);
  const float qmax = bits == 4 ? 7.0f : 127.0f;
  std::vector<double> out(static_cast<std::size_t>(in.T * H), 0.0);
  std::vector<float> row(static_cast<std::size_t>(std::max(H, I))), h(static_cast<std::size_t>(I));
  auto wrow = [&](const std::vector<double>& d, std::int64_t r, std::int64_t k) {
    for (std::int64_t c = 0; c < k; ++c) row[static_cast<std::size_t>(c)] = static_cast<float>(d[static_cast<std::size_t>(r * k + c)]);
    return quantize(row.data(), k, g, qmax);
  };
  for (std::int64_t t = 0; t < in.T; ++t) {
    std::vector<float> x(static_cast<std::size_t>(H));
    for (std::int64_t c = 0; c < H; ++c) {
      const std::size_t i = static_cast<std::size_t>(t * H + c);
      x[static_cast<std::size_t>(c)] = bf16_x ? bf16_to_f32(in.xb[i]) : in.x[i];
    }
    const coded xq = quantize(x.data(), H, g, 127.0f);
    for (std::int64_t k = 0; k < in.K; ++k) {
      const std::int64_t e = in.ids[static_cast<std::size_t>(t * in.K + k)];
      for (std::int64_t i = 0; i < I; ++i) {
        // h in f32, as the backend holds it before quantizing it.
        const auto gv = static_cast<float>(dot(wrow(L.d13, e * 2 * I + i, H), xq, g));
        const auto uv = static_cast<float>(dot(wrow(L.d13, e * 2 * I + I + i, H), xq, g));
        h[static_cast<std::size_t>(i)] = gv / (1.0f + std::exp(-gv)) * uv;
      }
      const coded hq = quantize(h.data(), I, g, 127.0f);
      const double wk = in.weights[static_cast<std::size_t>(t * in.K + k)];
      for (std::int64_t n = 0; n < H; ++n) out[static_cast<std::size_t>(t * H + n)] += wk * dot(wrow(L.d2, e * H + n, I), hq, g);
    }
  }
  return out;
}

// Every product path: the vector set (isa) and with it the unit, real or emulated.
struct path {
  const char* isa;
  const char* int_isa;  // what describe must say where the CPU has it ("" : not checked)
  bool all_on_unit;     // unit_min_rows=1: every expert with a token on the (emulated) unit
};
const std::vector<path>& paths() {
  static const std::vector<path> p = {{"", "", true},           {"", "", false},         {"avx512f", "avx512vnni", false},
                                      {"avx_vnni", "avx_vnni", false}, {"avx2", "avx2", false}, {"scalar", "scalar", false},
                                      {"amx_emulated", "", true}};
  return p;
}

template <class F>
void for_each_path(F body) {
  for (const path& p : paths()) {
    SCOPED_TRACE(std::string("isa=") + p.isa + (p.all_on_unit ? " unit_min_rows=1" : ""));
    set_option("isa", p.isa);
    if (p.all_on_unit) set_option("unit_min_rows", "1");
    body(p);
    clear_option("unit_min_rows");
  }
  clear_option("isa");
}

// Whether this CPU has what a path's describe names (the backend falls back otherwise).
bool cpu_has(const std::string& what) {
  if (what == "avx512vnni") return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  if (what == "avx_vnni") return __builtin_cpu_supports("avxvnni");
  if (what == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (what == "amx_int8") return __builtin_cpu_supports("amx-int8") && __builtin_cpu_supports("amx-bf16");
  return what == "scalar";
}

struct int_case {
  shape s;
  std::int64_t group;  // 0: one scale per row
};

const std::vector<int_case>& cases() {
  static const std::vector<int_case> c = {
      {{4, 96, 40, 2}, 0},     // K = 96 and 40: no whole chunk of 64 past the first; I not whole 16-row tiles
      {{3, 200, 72, 2}, 64},   // groups of 64 with a partial last one (200 = 3 x 64 + 8)
      {{5, 97, 130, 3}, 0},    // odd H (int4: a half byte), I = 130 past two 64-chunks
      {{2, 256, 136, 1}, 128}, // groups of 128, whole chunks
  };
  return c;
}

}  // namespace

TEST(cpu_backend_int_dot, matches_double_reference_of_the_quantized_definition_every_path) {
  ASSERT_NE(cpu_api(), nullptr);
  for (int bits : {8, 4}) {
    SCOPED_TRACE("int" + std::to_string(bits));
    set_option("quantize", bits == 8 ? "int8" : "int4");
    set_option("int_dot", "on");
    for_each_path([bits](const path& p) {
      int loose = 0;  // runs past 1e-5: an h value on a code boundary (below)
      for (std::size_t ci = 0; ci < cases().size(); ++ci) {
        const int_case& c = cases()[ci];
        SCOPED_TRACE("case " + std::to_string(ci));
        set_option("quantize_group", std::to_string(c.group));
        bf16_layer L(c.s, 40 + static_cast<unsigned>(ci));
        for (std::int64_t T : {1, 5, 33, 70}) {
          for (bool bf16_x : {true, false}) {
            routed_input in = make_input(T, c.s.K, c.s.E, c.s.H, 300 + static_cast<unsigned>(T));
            std::string d;
            const double e = relative_l2(run_backend(L, in, bf16_x, T == 5 ? 1 : 2, &d), int_reference(L, in, bf16_x, bits, c.group));
            // Exact but for f32 summation order, which can put an h value that lies within
            // rounding of a code boundary on the other side: one code of h off by one moves
            // these small layers' outputs by up to ~6e-4 (measured), in a few runs of the 32.
            EXPECT_LE(e, 2e-3) << "T=" << T << (bf16_x ? " bf16" : " f32") << " x";
            loose += e > 1e-5;
            EXPECT_NE(d.find("\"int_dot\":\"on\""), std::string::npos) << d;
            if (*p.int_isa && cpu_has(p.int_isa)) {
              EXPECT_NE(d.find(std::string("\"int_dot_isa\":\"") + p.int_isa + "\""), std::string::npos) << d;
            }
            if (std::string(p.isa) == "amx_emulated") {
              EXPECT_NE(d.find("\"int_dot_unit\":\"amx_int8_emulated\""), std::string::npos) << d;
            }
            if (!*p.isa && cpu_has("amx_int8")) {
              EXPECT_NE(d.find("\"int_dot_unit\":\"amx_int8\""), std::string::npos) << d;
            }
          }
        }
      }
      EXPECT_LE(loose, 3);
    });
    clear_option("quantize_group");
  }
  clear_option("int_dot");
  clear_option("quantize");
}

// K passes shorter than the rows (k_block), so the vector tiles and the unit sum a group
// over several passes and the unit takes its short passes (more than two token tiles).
TEST(cpu_backend_int_dot, k_passes_cutting_groups) {
  ASSERT_NE(cpu_api(), nullptr);
  set_option("int_dot", "on");
  set_option("k_block", "100");  // rounded up to whole 64-chunks: passes of 128
  for (int bits : {8, 4}) {
    set_option("quantize", bits == 8 ? "int8" : "int4");
    for_each_path([bits](const path&) {
      for (std::int64_t group : {0, 64}) {
        set_option("quantize_group", std::to_string(group));
        bf16_layer L({2, 330, 200, 1}, 7);
        routed_input in = make_input(90, 1, 2, 330, 8);
        EXPECT_LE(relative_l2(run_backend(L, in, true, 2), int_reference(L, in, true, bits, group)), 1e-5)
            << "int" << bits << " group " << group;
      }
      clear_option("quantize_group");
    });
  }
  clear_option("quantize");
  clear_option("k_block");
  clear_option("int_dot");
}

// The quantized layer against the bf16 layer (the backend without quantize): the bounds
// docs/backends.md states, on random normal weights and inputs.
TEST(cpu_backend_int_dot, within_stated_bound_of_the_bf16_layer) {
  ASSERT_NE(cpu_api(), nullptr);
  bf16_layer L({4, 512, 256, 2}, 17);
  for (std::int64_t T : {1, 40}) {
    routed_input in = make_input(T, 2, 4, 512, 19);
    const std::vector<float> bf16 = run_backend(L, in, true, 2);
    std::vector<double> ref(bf16.begin(), bf16.end());
    for_each_path([&](const path&) {
      struct q {
        const char* quantize;
        const char* group;
        double bound;
      };
      for (const q& c : {q{"int8", "0", 3e-2}, q{"int8", "128", 3e-2}, q{"int4", "128", 0.25}, q{"int4", "64", 0.25}}) {
        set_option("quantize", c.quantize);
        set_option("quantize_group", c.group);
        double err[2];
        for (int on = 0; on < 2; ++on) {
          set_option("int_dot", on ? "on" : "off");
          err[on] = relative_l2(run_backend(L, in, true, 2), ref);
        }
        EXPECT_LE(err[1], c.bound) << c.quantize << " group " << c.group << " T=" << T;
        // Quantizing the activations too at most doubles the weights' own error (measured:
        // int8 1.2e-2 -> 2.2e-2, int4 0.20 -> 0.20).
        EXPECT_LE(err[1], 2 * err[0] + 2e-3) << c.quantize << " group " << c.group << " T=" << T;
      }
      clear_option("int_dot");
      clear_option("quantize_group");
      clear_option("quantize");
    });
  }
}

TEST(cpu_backend_int_dot, describe_says_which_products_run) {
  ASSERT_NE(cpu_api(), nullptr);
  bf16_layer L({2, 128, 64, 1}, 3);
  routed_input in = make_input(3, 1, 2, 128, 4);
  set_option("quantize", "int4");
  std::string d;
  run_backend(L, in, true, 1, &d);  // auto, groups of 128: on
  EXPECT_NE(d.find("\"int_dot\":\"on\""), std::string::npos) << d;
  EXPECT_NE(d.find("\"quantize_seconds\":"), std::string::npos) << d;
  EXPECT_NE(d.find("\"quantized_bytes\":"), std::string::npos) << d;
  set_option("quantize_group", "32");
  run_backend(L, in, true, 1, &d);  // auto, groups of 32: not whole chunks, the panels
  EXPECT_NE(d.find("\"int_dot\":\"off\""), std::string::npos) << d;
  clear_option("quantize_group");
  set_option("int_dot", "off");
  run_backend(L, in, true, 1, &d);
  EXPECT_NE(d.find("\"int_dot\":\"off\""), std::string::npos) << d;
  EXPECT_NE(d.find("dequantized per K pass"), std::string::npos) << d;
  clear_option("int_dot");
  clear_option("quantize");
  run_backend(L, in, true, 1, &d);  // no quantization: nothing to say
  EXPECT_EQ(d.find("\"int_dot\""), std::string::npos) << d;
}

TEST(cpu_backend_int_dot, refused_where_it_cannot_apply) {
  ASSERT_NE(cpu_api(), nullptr);
  bf16_layer L({2, 128, 64, 1}, 5);
  moereg_routing_params routing{};
  auto create = [&](std::vector<moereg_backend_option> kv) {
    moereg_backend* b = nullptr;
    std::string s = take(cpu_api()->create_with_options(&L.w, &routing, nullptr, kv.data(), kv.size(), &b));
    if (b) cpu_api()->destroy(b);
    return s;
  };
  EXPECT_EQ(create({{"int_dot", "on"}}),
            "1: backend option int_dot=on: the integer products run on the codes of quantize=int8 or quantize=int4; found "
            "quantize=none");
  EXPECT_EQ(create({{"int_dot", "on"}, {"quantize", "q8_0"}}),
            "1: backend option int_dot=on: the integer products run on the codes of quantize=int8 or quantize=int4; found "
            "quantize=a ggml block type");
  EXPECT_EQ(create({{"int_dot", "on"}, {"quantize", "int4"}, {"quantize_group", "32"}}),
            "1: backend option int_dot=on: quantize_group=32, expected 0 (one scale per row) or a multiple of 64 (the "
            "integer tiles' step)");
  EXPECT_EQ(create({{"int_dot", "yes"}}), "1: backend option int_dot=yes: expected auto, on or off");
  EXPECT_EQ(create({{"int_dot", "off"}}), "");  // off and auto ask nothing
  EXPECT_EQ(create({{"int_dot", "auto"}, {"quantize", "int4"}, {"quantize_group", "32"}}), "");
}

}  // namespace test_cpu_backend_int_dot
