// SPDX-License-Identifier: Apache-2.0
// test_cpu_backend_layers.h - routed inputs, a double-precision reference of one MoE layer
// and a run of the cpu backend on it, for the tests of quantized experts. A Layer holds
// its shape `s` (E, H, I), its dequantized weights in double (d13 [E, 2I, H], d2 [E, H, I])
// and the ABI weights `w` that view its stored data.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "moereg/tensor/dtype.h"
#include "moereg/tensor/tensor_view.h"
#include "test_cpu_backend_util.h"

namespace moereg::test {

struct routed_input {
  std::int64_t T, K;
  std::vector<float> x;
  std::vector<std::uint16_t> xb;
  std::vector<std::int32_t> ids;
  std::vector<float> weights;
};

// T tokens, K distinct experts each with a positive weight; experts drawn unevenly so some
// get many rows (multi-tile items) and some none.
inline routed_input make_input(std::int64_t T, std::int64_t K, std::int64_t E, std::int64_t H, unsigned seed) {
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
template <class Layer>
std::vector<double> reference(const Layer& L, const routed_input& in, bool bf16_x) {
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
template <class Layer>
std::vector<float> run_backend(const Layer& L, const routed_input& in, bool bf16_x, int threads, std::string* d = nullptr) {
  moereg_routing_params routing{};
  routing.num_experts = static_cast<std::int32_t>(L.s.E);
  routing.top_k = static_cast<std::int32_t>(in.K);
  moereg_backend_options opts{};
  opts.threads = threads;
  moereg_backend* b = nullptr;
  EXPECT_EQ(take(create_with_test_options(&L.w, &routing, &opts, &b)), "");
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

inline double relative_l2(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    double d = got[i] - want[i];
    num += std::isnan(d) ? INFINITY : d * d;
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

}  // namespace moereg::test
