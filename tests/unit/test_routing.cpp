// SPDX-License-Identifier: Apache-2.0
// Routing: the fixtures' router outputs, plus what the fixtures cannot show (correction
// bias, DeepSeek-V2 group-limited greedy, norm_topk_prob = false), checked against an
// independent double-precision reimplementation of FORMATS.md section 3.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "moereg/base/error.h"
#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "test_cpu_fixture_util.h"

using namespace moereg;
using test::make_view;
using test::moe_fixture;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_routing {
namespace {

struct ref_route {
  std::vector<std::vector<int>> ids;       // per token, unordered set semantics
  std::vector<std::vector<double>> weights;  // matching ids
};

// Straightforward reimplementation: double everywhere, full sorts, masks by -inf.
ref_route reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& bias, int T, int H,
                    int E, int K, bool sigmoid, int n_group, int topk_group, bool top2_sum, bool renorm, double eps,
                    double scale) {
  ref_route r;
  for (int t = 0; t < T; ++t) {
    std::vector<double> logit(E), s(E), c(E);
    for (int e = 0; e < E; ++e) {
      double acc = 0;
      for (int h = 0; h < H; ++h) acc += double(x[t * H + h]) * double(w[e * H + h]);
      logit[e] = acc;
    }
    if (sigmoid) {
      for (int e = 0; e < E; ++e) s[e] = 1 / (1 + std::exp(-logit[e]));
    } else {
      double m = *std::max_element(logit.begin(), logit.end()), z = 0;
      for (int e = 0; e < E; ++e) z += std::exp(logit[e] - m);
      for (int e = 0; e < E; ++e) s[e] = std::exp(logit[e] - m) / z;
    }
    for (int e = 0; e < E; ++e) c[e] = s[e] + (bias.empty() ? 0.0 : double(bias[e]));
    if (n_group > 1) {
      int per = E / n_group;
      std::vector<std::pair<double, int>> gs;
      for (int g = 0; g < n_group; ++g) {
        std::vector<double> m(c.begin() + g * per, c.begin() + (g + 1) * per);
        std::sort(m.rbegin(), m.rend());
        gs.push_back({top2_sum ? m[0] + m[1] : m[0], g});
      }
      std::sort(gs.begin(), gs.end(), [](auto a, auto b) { return a.first > b.first; });
      std::vector<bool> keep(n_group, false);
      for (int g = 0; g < topk_group; ++g) keep[gs[g].second] = true;
      for (int e = 0; e < E; ++e)
        if (!keep[e / per]) c[e] = -INFINITY;
    }
    std::vector<std::pair<double, int>> all;
    for (int e = 0; e < E; ++e) all.push_back({c[e], e});
    std::sort(all.begin(), all.end(), [](auto a, auto b) { return a.first > b.first; });
    std::vector<int> ids;
    std::vector<double> ws;
    double sum = 0;
    for (int k = 0; k < K; ++k) {
      ids.push_back(all[k].second);
      ws.push_back(s[all[k].second]);
      sum += s[all[k].second];
    }
    for (auto& v : ws) v = (renorm ? v / (sum + eps) : v) * scale;
    r.ids.push_back(ids);
    r.weights.push_back(ws);
  }
  return r;
}

std::vector<float> randn(std::size_t n, float stddev, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& f : v) f = d(gen);
  return v;
}

// Compare router output with the reference: same id sets, weights matched by id.
void expect_same(const routing_result& got, const ref_route& want, double tol) {
  for (std::size_t t = 0; t < want.ids.size(); ++t) {
    std::set<std::int64_t> g, w;
    for (std::int64_t k = 0; k < got.top_k; ++k) g.insert(got.ids[t * got.top_k + k]);
    for (int id : want.ids[t]) w.insert(id);
    EXPECT_EQ(g, w) << "token " << t;
    for (std::size_t k = 0; k < want.ids[t].size(); ++k)
      for (std::int64_t j = 0; j < got.top_k; ++j)
        if (got.ids[t * got.top_k + j] == want.ids[t][k]) {
          EXPECT_NEAR(got.weights[t * got.top_k + j], want.weights[t][k], tol) << "token " << t << " id " << want.ids[t][k];
        }
  }
}

std::set<std::int64_t> id_set(const routing_result& r, std::int64_t t) {
  return {r.ids.begin() + t * r.top_k, r.ids.begin() + (t + 1) * r.top_k};
}

struct synthetic {
  int T = 64, H = 32, E = 16;
  std::vector<float> x = randn(static_cast<std::size_t>(T * H), 1.0f, 1);
  std::vector<float> w = randn(static_cast<std::size_t>(E * H), 0.3f, 2);
  moereg_routing_params params(int K) const {
    moereg_routing_params p{};
    p.num_experts = E;
    p.top_k = K;
    p.logits_in_f32 = 1;
    p.routed_scaling_factor = 1;
    p.router = make_view(w.data(), MOEREG_DTYPE_F32, {E, H});
    return p;
  }
  moereg_tensor_view input() const { return make_view(x.data(), MOEREG_DTYPE_F32, {T, H}); }
};

}  // namespace

TEST(routing, fixtures_reproduce_router_outputs) {
  for (const auto& fam : test::moe_fixture_families()) {
    SCOPED_TRACE(fam);
    moe_fixture fx(fam);
    router r(fx.routing, fam);
    routing_result got;
    r.route(test::tensor_view(*fx.io, "input"), got);
    std::vector<float> logits = test::tensor_f32(*fx.io, "router_logits");
    std::vector<float> ids = test::tensor_f32(*fx.io, "topk_ids");
    std::vector<float> weights = test::tensor_f32(*fx.io, "topk_weights");
    ASSERT_EQ(got.logits.size(), logits.size());
    for (std::size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(got.logits[i], logits[i], 1e-6) << "logit " << i;
    ASSERT_EQ(got.ids.size(), ids.size());
    const std::int64_t K = got.top_k;
    for (std::int64_t t = 0; t < got.tokens; ++t) {
      std::set<std::int64_t> want;
      for (std::int64_t k = 0; k < K; ++k) want.insert(static_cast<std::int64_t>(ids[t * K + k]));
      EXPECT_EQ(id_set(got, t), want) << "token " << t;
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t j = 0; j < K; ++j)
          if (got.ids[t * K + j] == static_cast<std::int64_t>(ids[t * K + k])) {
            EXPECT_NEAR(got.weights[t * K + j], weights[t * K + k], 1e-6) << "token " << t;
          }
    }
  }
}

TEST(routing, correction_bias_changes_selection_not_weights) {
  synthetic s;
  std::vector<float> bias = randn(16, 0.2f, 3);
  for (bool renorm : {true, false}) {
    SCOPED_TRACE(renorm ? "renormalised" : "not renormalised");
    moereg_routing_params p = s.params(4);
    p.scoring = MOEREG_SCORING_SIGMOID;
    p.group_score = MOEREG_GROUP_SCORE_TOP2_SUM;
    p.n_group = 4;
    p.topk_group = 2;
    p.renormalize = renorm;
    p.renorm_eps = 1e-20f;
    p.routed_scaling_factor = 2.5f;
    routing_result plain;
    router(p).route(s.input(), plain);
    p.router_bias = make_view(bias.data(), MOEREG_DTYPE_F32, {16});
    routing_result biased;
    router(p).route(s.input(), biased);
    expect_same(biased, reference(s.x, s.w, bias, s.T, s.H, s.E, 4, true, 4, 2, true, renorm, 1e-20, 2.5), 2e-6);
    int changed = 0;
    for (int t = 0; t < s.T; ++t) changed += id_set(plain, t) != id_set(biased, t);
    EXPECT_GT(changed, 0) << "the bias never changed a selection; the test data do not exercise it";
    // Without renormalisation each weight is exactly scale * sigmoid(logit): no bias in it.
    if (!renorm)
      for (int t = 0; t < s.T; ++t)
        for (int k = 0; k < 4; ++k) {
          float l = biased.logits[static_cast<std::size_t>(t * s.E + biased.ids[static_cast<std::size_t>(t * 4 + k)])];
          EXPECT_NEAR(biased.weights[static_cast<std::size_t>(t * 4 + k)], 2.5 / (1 + std::exp(-double(l))), 2e-6);
        }
  }
}

TEST(routing, deepseek_v2_group_limited_greedy) {
  synthetic s;
  moereg_routing_params p = s.params(4);
  p.group_score = MOEREG_GROUP_SCORE_MAX;
  p.n_group = 4;
  p.topk_group = 2;
  p.routed_scaling_factor = 16;
  routing_result got;
  router(p).route(s.input(), got);
  expect_same(got, reference(s.x, s.w, {}, s.T, s.H, s.E, 4, false, 4, 2, false, false, 0, 16), 2e-5);
  p.n_group = 0;
  routing_result greedy;
  router(p).route(s.input(), greedy);
  int differs = 0;
  for (int t = 0; t < s.T; ++t) {
    std::set<std::int64_t> groups;
    for (auto id : id_set(got, t)) groups.insert(id / 4);
    EXPECT_LE(groups.size(), 2u) << "token " << t;
    differs += id_set(got, t) != id_set(greedy, t);
    float sum = 0;
    for (int k = 0; k < 4; ++k) sum += got.weights[static_cast<std::size_t>(t * 4 + k)];
    EXPECT_LT(sum, 16.0f - 1e-3f) << "DeepSeek-V2 weights must not be renormalised";
  }
  EXPECT_GT(differs, 0);
}

TEST(routing, softmax_without_renormalisation_keeps_probabilities) {
  synthetic s;
  moereg_routing_params p = s.params(2);
  routing_result got;
  router(p).route(s.input(), got);
  expect_same(got, reference(s.x, s.w, {}, s.T, s.H, s.E, 2, false, 1, 1, false, false, 0, 1), 1e-6);
  for (int t = 0; t < s.T; ++t) EXPECT_LT(got.weights[static_cast<std::size_t>(2 * t)] + got.weights[static_cast<std::size_t>(2 * t + 1)], 0.999f);
  p.renormalize = 1;
  p.top_k = 4;  // Mixtral-style, K = 4
  router(p).route(s.input(), got);
  expect_same(got, reference(s.x, s.w, {}, s.T, s.H, s.E, 4, false, 1, 1, false, true, 0, 1), 1e-6);
}

TEST(routing, bf16_logits_are_rounded_unless_declared_f32) {
  synthetic s;
  std::vector<std::uint16_t> xb(s.x.size());
  for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = f32_to_bf16(s.x[i]);
  moereg_routing_params p = s.params(2);
  p.logits_in_f32 = 0;
  routing_result got;
  router(p).route(make_view(xb.data(), MOEREG_DTYPE_BF16, {s.T, s.H}), got);
  int not_bf16 = 0;
  for (float l : got.logits) not_bf16 += bf16_to_f32(f32_to_bf16(l)) != l;
  EXPECT_EQ(not_bf16, 0);
  p.logits_in_f32 = 1;
  router(p).route(make_view(xb.data(), MOEREG_DTYPE_BF16, {s.T, s.H}), got);
  not_bf16 = 0;
  for (float l : got.logits) not_bf16 += bf16_to_f32(f32_to_bf16(l)) != l;
  EXPECT_GT(not_bf16, 0);
}

TEST(routing, invalid_params_are_refused_with_the_field) {
  synthetic s;
  auto message = [](const moereg_routing_params& p) {
    try {
      router r(p, "plugins/x/plugin.yaml routing");
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  moereg_routing_params p = s.params(17);
  EXPECT_NE(message(p).find("top_k: expected 1..16, found 17"), std::string::npos) << message(p);
  p = s.params(4);
  p.group_score = MOEREG_GROUP_SCORE_MAX;
  p.n_group = 3;
  p.topk_group = 1;
  EXPECT_NE(message(p).find("n_group: expected a divisor of num_experts 16, found 3"), std::string::npos) << message(p);
  p.n_group = 8;
  p.topk_group = 1;
  EXPECT_NE(message(p).find("hold fewer than top_k 4"), std::string::npos) << message(p);
  p = s.params(4);
  p.router.shape[0] = 15;
  EXPECT_NE(message(p).find("router: expected shape [16, H]"), std::string::npos) << message(p);
  EXPECT_EQ(message(p).rfind("plugins/x/plugin.yaml routing: ", 0), 0u);
}

}  // namespace test_routing
