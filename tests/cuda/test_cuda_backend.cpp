// SPDX-License-Identifier: Apache-2.0
// The CUDA backend through its C ABI (dlopen, as the host loads it): every fixture's MoE
// block reproduced (same top-k sets, relative L2 <= 1e-2), the device router against the
// core router, random shapes against a float64 reference, every tile shape, and the errors.
// Needs an sm_90 GPU; registered with ctest only when MOEREG_CUDA_TESTS=ON.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_test_support.h"
#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "test_cpu_fixture_util.h"

namespace {

using moereg::test::make_view;
using moereg::test::moe_fixture;
using namespace moereg::test::cuda;

TEST(CudaBackend, ProbeFindsAnSm90Gpu) {
  ASSERT_NE(backend_api(), nullptr);
  EXPECT_STREQ(backend_api()->name, "cuda");
  char reason[256] = {0};
  int32_t score = backend_api()->probe(reason, sizeof reason);
  EXPECT_GT(score, 0) << "these tests need an H100/H200: " << reason;
}

// ---------------------------------------------------------------- fixtures

class CudaFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaFixture, ReproducesMoeBlock) {
  ASSERT_NE(backend_api(), nullptr);
  moe_fixture fx(GetParam());
  const auto& wf = *fx.weights;
  const auto& io = *fx.io;
  const std::string b = fx.block;
  moereg_moe_weights w{};
  w.w13 = moereg::test::tensor_view(wf, b + ".experts.gate_up_proj");
  w.w2 = moereg::test::tensor_view(wf, b + ".experts.down_proj");
  w.num_experts = w.w13.shape[0];
  w.intermediate = w.w13.shape[1] / 2;
  w.hidden = w.w13.shape[2];
  const int64_t H = w.hidden;
  // Shared expert: gate and up concatenated into [2*Is, H] as the ABI wants.
  std::vector<uint16_t> shared13;
  std::string sprefix;
  if (wf.find(b + ".shared_expert.gate_proj.weight")) sprefix = b + ".shared_expert.";
  if (wf.find(b + ".shared_experts.gate_proj.weight")) sprefix = b + ".shared_experts.";
  if (!sprefix.empty()) {
    const auto* g = wf.find(sprefix + "gate_proj.weight");
    const auto* u = wf.find(sprefix + "up_proj.weight");
    ASSERT_EQ(g->type, moereg::dtype::BF16);
    shared13.resize(g->numel() + u->numel());
    std::memcpy(shared13.data(), wf.data(*g), g->nbytes());
    std::memcpy(shared13.data() + g->numel(), wf.data(*u), u->nbytes());
    w.shared_intermediate = g->shape[0];
    w.shared_w13 = make_view(shared13.data(), MOEREG_DTYPE_BF16, {2 * w.shared_intermediate, H});
    w.shared_w2 = moereg::test::tensor_view(wf, sprefix + "down_proj.weight");
    if (wf.find(b + ".shared_expert_gate.weight"))
      w.shared_gate = moereg::test::tensor_view(wf, b + ".shared_expert_gate.weight");
  }
  handle h = create(w, &fx.routing);
  ASSERT_TRUE(h);

  const auto* xin = io.find("input");
  const int64_t T = xin->shape[0], K = fx.routing.top_k;
  moereg_tensor_view x = moereg::test::tensor_view(io, "input");
  std::vector<int64_t> ids(T * K);
  std::vector<float> wts(T * K);
  moereg_tensor_view idv = make_view(ids.data(), MOEREG_DTYPE_I64, {T, K});
  moereg_tensor_view wv = make_view(wts.data(), MOEREG_DTYPE_F32, {T, K});
  ASSERT_EQ(take(backend_api()->route(h.get(), &x, &idv, &wv)), "");

  // Same sets as the fixture and as the core router; weights within float32 rounding of the core's.
  std::vector<float> ref_ids_f = moereg::test::tensor_f32(io, "topk_ids");
  moereg::router core(fx.routing);
  moereg::routing_result rr;
  core.route(x, rr);
  for (int64_t t = 0; t < T; ++t) {
    std::set<int64_t> got(ids.begin() + t * K, ids.begin() + (t + 1) * K), want, core_set;
    for (int64_t k = 0; k < K; ++k) {
      want.insert(static_cast<int64_t>(ref_ids_f[t * K + k]));
      core_set.insert(rr.ids[t * K + k]);
    }
    EXPECT_EQ(got, want) << GetParam() << " token " << t;
    EXPECT_EQ(got, core_set) << GetParam() << " token " << t;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < K; ++j)
        if (rr.ids[t * K + j] == ids[t * K + k]) {
          EXPECT_NEAR(wts[t * K + k], rr.weights[t * K + j], 2e-6 * std::max(1.f, std::fabs(rr.weights[t * K + j])))
              << GetParam() << " token " << t;
        }
  }

  // Forward on host views, then again on device views; both against the fixture's output.
  std::vector<float> out(T * H, NAN);
  moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {T, H});
  ASSERT_EQ(take(backend_api()->forward(h.get(), &x, &idv, &wv, &ov)), "");
  std::vector<float> ref_f = moereg::test::tensor_f32(io, "output");
  std::vector<double> ref(ref_f.begin(), ref_f.end());
  double err = rel_l2(out, ref);
  EXPECT_LE(err, 1e-2) << GetParam();
  std::printf("[ fixture  ] %-13s rel L2 %.3e\n", GetParam().c_str(), err);

  const auto* api = backend_api();
  void *dx = nullptr, *dids = nullptr, *dw = nullptr, *dout = nullptr;
  ASSERT_EQ(take(api->alloc(h.get(), T * H * 4, &dx)), "");
  ASSERT_EQ(take(api->alloc(h.get(), T * K * 8, &dids)), "");
  ASSERT_EQ(take(api->alloc(h.get(), T * K * 4, &dw)), "");
  ASSERT_EQ(take(api->alloc(h.get(), T * H * 4, &dout)), "");
  ASSERT_EQ(take(api->copy(h.get(), dx, x.data, T * H * 4, 0)), "");
  moereg_tensor_view dxv = make_view(dx, MOEREG_DTYPE_F32, {T, H});
  moereg_tensor_view didv = make_view(dids, MOEREG_DTYPE_I64, {T, K});
  moereg_tensor_view dwv = make_view(dw, MOEREG_DTYPE_F32, {T, K});
  moereg_tensor_view dov = make_view(dout, MOEREG_DTYPE_F32, {T, H});
  for (auto* v : {&dxv, &didv, &dwv, &dov}) v->memory = MOEREG_MEMORY_DEVICE;
  ASSERT_EQ(take(api->route(h.get(), &dxv, &didv, &dwv)), "");
  ASSERT_EQ(take(api->forward(h.get(), &dxv, &didv, &dwv, &dov)), "");
  ASSERT_EQ(take(api->synchronize(h.get())), "");
  std::vector<float> out2(T * H, NAN);
  ASSERT_EQ(take(api->copy(h.get(), out2.data(), dout, T * H * 4, 1)), "");
  EXPECT_LE(rel_l2(out2, ref), 1e-2) << GetParam() << " (device views)";
  for (void* p : {dx, dids, dw, dout}) api->free(h.get(), p);
}

INSTANTIATE_TEST_SUITE_P(Families, CudaFixture, ::testing::ValuesIn(moereg::test::moe_fixture_families()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// ---------------------------------------------------------------- random shapes

TEST(CudaRandom, OddTokenCountsAndSizes) {
  ASSERT_NE(backend_api(), nullptr);
  // H = 136 and I = 40 are no multiple of any tile; T covers 1 row to many tiles per expert.
  random_layer L(16, 136, 40, 4, 0, false, 1);
  for (int T : {1, 7, 33, 200, 1000}) {
    double err = run_random(L, T, 100 + T);
    EXPECT_LE(err, 1e-2) << "T=" << T;
    std::printf("[ random   ] E16 H136 I40 K4 T=%d rel L2 %.3e\n", T, err);
  }
}

TEST(CudaRandom, SharedExpertGatedAndBf16Input) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(8, 64, 24, 2, 48, true, 2);
  for (int T : {1, 33, 300}) {
    EXPECT_LE(run_random(L, T, 7 + T), 1e-2) << "f32 x, T=" << T;
    EXPECT_LE(run_random(L, T, 9 + T, true), 1e-2) << "bf16 x, T=" << T;
  }
  random_layer U(8, 64, 24, 2, 24, false, 3);  // ungated (DeepSeek)
  EXPECT_LE(run_random(U, 77, 5), 1e-2);
}

TEST(CudaRandom, EveryTileShape) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(32, 264, 136, 6, 72, false, 4);
  for (const char* tiles : {"m16", "m64", "m128"}) {
    set_option("tiles", tiles);
    for (int T : {5, 611}) {
      double err = run_random(L, T, 11 + T);
      EXPECT_LE(err, 1e-2) << tiles << " T=" << T;
      std::printf("[ tiles    ] %s T=%d rel L2 %.3e\n", tiles, T, err);
    }
  }
  clear_option("tiles");
}

// The decode launch shapes: m16 tiles of 128, 64 or 32 columns (narrow=off, auto, fill at
// these small sizes), launched as dependent grids or not, each against the float64 reference;
// T from one token (the prepare kernel's permutation) to past prepare_route_slots slots (the
// multi-kernel permutation), a long K (I = 1040: a partial last k tile), a gated shared expert
// beside the routed ones, f32 and bf16 x.
TEST(CudaRandom, DecodeLaunchShapes) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(32, 264, 136, 6, 72, false, 4);
  random_layer S(8, 256, 1040, 2, 0, false, 6);
  random_layer G(8, 64, 24, 2, 48, true, 2);
  set_option("cublas", "off");
  for (const auto& [narrow, columns] : {std::pair<const char*, const char*>{"auto", "64"}, {"fill", "32"}, {"off", "128"}})
    for (const char* pdl : {"on", "off"}) {
      set_option("narrow", narrow);
      set_option("pdl", pdl);
      const std::string what = std::string("narrow=") + narrow + " pdl=" + pdl;
      for (int T : {1, 3, 40, 700}) {  // 700 x 6 slots: past the prepare kernel's one block
        std::string json;
        const double err = run_random(L, T, 40 + T, T % 2 == 0, &json);
        EXPECT_LE(err, 1e-2) << what << " T=" << T;
        EXPECT_NE(json.find(std::string("\"pdl\":\"") + pdl + "\",\"narrow\":\"" + narrow + "\""), std::string::npos) << json;
        if (T == 1) {  // 18 CTAs for gate/up at 128 columns: far fewer than the SMs
          EXPECT_NE(json.find(std::string("\"gate_up_columns\":") + columns), std::string::npos) << what << json;
        }
        std::printf("[ decode   ] %s T=%d rel L2 %.3e\n", what.c_str(), T, err);
      }
      for (int T : {1, 2, 9}) {
        const double err = run_random(S, T, 60 + T);
        EXPECT_LE(err, 1e-2) << what << " I=1040 T=" << T;
        std::printf("[ decode   ] %s I=1040 T=%d rel L2 %.3e\n", what.c_str(), T, err);
      }
      // T = 1 on bf16 x without a shared expert: the slot tiles (no prepare pass), or not.
      for (const char* slots : {"auto", "off"}) {
        set_option("slot_tiles", slots);
        std::string json;
        const double err = run_random(S, 1, 70, true, &json);
        EXPECT_LE(err, 1e-2) << what << " slot_tiles=" << slots;
        EXPECT_EQ(json.find("a tile a top-k slot") != std::string::npos, slots[0] == 'a') << what << json;
        std::printf("[ decode   ] %s slot_tiles=%s I=1040 T=1 bf16 x rel L2 %.3e\n", what.c_str(), slots, err);
      }
      clear_option("slot_tiles");
      EXPECT_LE(run_random(G, 1, 3), 1e-2) << "gated shared expert, " << what;
      EXPECT_LE(run_random(G, 9, 4, true), 1e-2) << "gated shared expert, bf16 x, " << what;
    }
  clear_option("narrow");
  clear_option("pdl");
  clear_option("cublas");
}

// The cuBLAS path (libcublas.so.13 must load: device_run.sh puts it on LD_LIBRARY_PATH), grouped
// and one call per expert, on odd sizes, skewed loads, shared experts gated and not, bf16 x.
TEST(CudaRandom, CublasPathMatchesReference) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(32, 264, 136, 6, 72, false, 4);
  random_layer G(8, 64, 24, 2, 48, true, 2);
  // T = 1 and 5 leave most of the 32 experts unhit (batched: pointer arrays); T = 611 hits all of
  // them (batched: strided). cublas_auto picks one of the three from the expert sizes.
  for (const char* mode : {"cublas", "cublas_loop", "cublas_batched", "cublas_auto"}) {
    set_option("tiles", mode);
    for (int T : {1, 5, 611}) {
      std::string json;
      double err = run_random(L, T, 11 + T, false, &json);
      EXPECT_LE(err, 1e-2) << mode << " T=" << T;
      const std::string expect = std::string(mode) == "cublas_auto" ? "\"last_tiles\":\"cublas"
                                                                    : std::string("\"last_tiles\":\"") + mode + "\"";
      EXPECT_NE(json.find(expect), std::string::npos) << json;
      std::printf("[ tiles    ] %s T=%d rel L2 %.3e\n", mode, T, err);
    }
    double err = run_random(G, 300, 3, true);
    EXPECT_LE(err, 1e-2) << mode << " gated shared, bf16 x";
    std::printf("[ tiles    ] %s gated shared bf16 x T=300 rel L2 %.3e\n", mode, err);
  }
  clear_option("tiles");
}

// Unforced: >= 128 rows per hit expert goes to cuBLAS (>= 64 for experts over 16 MiB), fewer to
// the kernels;
// The backend option cublas=off keeps every size on the kernels.
TEST(CudaRandom, CublasChosenForManyRowsPerExpert) {
  ASSERT_NE(backend_api(), nullptr);
  clear_option("tiles");
  clear_option("cublas");
  set_option("wgmma", "off");  // the grouped wgmma GEMM would take layer B first (test_cuda_wgmma.cpp)
  random_layer L(4, 64, 32, 2, 0, false, 8);
  std::string json;
  EXPECT_LE(run_random(L, 600, 21, false, &json), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  EXPECT_NE(json.find("\"gemm_large\":\"cuBLAS "), std::string::npos) << json;
  json.clear();
  EXPECT_LE(run_random(L, 40, 22, false, &json), 1e-2);
  EXPECT_EQ(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  EXPECT_NE(json.find("for >= 128 rows per hit expert"), std::string::npos) << json;  // small experts
  random_layer M(32, 64, 32, 4, 0, false, 9);
  json.clear();
  EXPECT_LE(run_random(M, 1100, 23, false, &json), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  // Experts over 16 MiB of gate/up weights (not re-read from L2) go to cuBLAS from 64 rows
  // per hit expert: 64 rows here, then 48 (the kernels).
  random_layer B(2, 2048, 2304, 1, 0, false, 10);
  json.clear();
  EXPECT_LE(run_random(B, 128, 24, true, &json), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  EXPECT_NE(json.find("for >= 64 rows per hit expert"), std::string::npos) << json;
  json.clear();
  EXPECT_LE(run_random(B, 96, 25, true, &json), 1e-2);
  EXPECT_EQ(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  set_option("cublas", "off");
  json.clear();
  EXPECT_LE(run_random(L, 600, 21, false, &json), 1e-2);
  EXPECT_EQ(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  EXPECT_NE(json.find("\"gemm_large\":\"off"), std::string::npos) << json;
  clear_option("cublas");
  clear_option("wgmma");
}

// Balanced routing (every expert gets the same rows): no padding, so the automatic choice is
// the single strided batched GEMM, and it matches the reference.
TEST(CudaRandom, CublasBatchedChosenForBalancedExperts) {
  ASSERT_NE(backend_api(), nullptr);
  clear_option("tiles");
  clear_option("cublas");
  set_option("wgmma", "off");  // these sizes fit the grouped wgmma GEMM, which would come first
  random_layer L(8, 128, 64, 2, 0, false, 12);
  std::string json;
  EXPECT_LE(run_random(L, 1024, 31, false, &json, /*balanced=*/true), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas_batched\""), std::string::npos) << json;
  clear_option("wgmma");
}

// ---------------------------------------------------------------- routing beyond the fixtures

TEST(CudaRouting, BiasGroupsAndScalingMatchTheCoreRouter) {
  ASSERT_NE(backend_api(), nullptr);
  const int E = 32, H = 96, T = 257;
  random_layer L(E, H, 16, 1, 0, false, 5);
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> router(E * H);
  for (auto& v : router) v = to_bf16(nd(rng) * 0.3f);
  std::vector<float> bias(E);
  for (auto& v : bias) v = nd(rng) * 0.05f;
  std::vector<float> x(T * H);
  for (auto& v : x) v = nd(rng);
  struct variant {
    const char* name;
    int scoring, group_score, n_group, topk_group, renorm, K;
    float eps, scale;
    bool with_bias;
  };
  for (const variant& v : {variant{"v3", MOEREG_SCORING_SIGMOID, MOEREG_GROUP_SCORE_TOP2_SUM, 8, 3, 1, 6, 1e-20f, 2.5f, true},
                           variant{"v2", MOEREG_SCORING_SOFTMAX, MOEREG_GROUP_SCORE_MAX, 4, 2, 0, 4, 0.f, 16.f, false},
                           variant{"plain", MOEREG_SCORING_SOFTMAX, MOEREG_GROUP_SCORE_NONE, 1, 1, 0, 3, 0.f, 1.f, false}}) {
    L.K = v.K;
    moereg_routing_params p{};
    p.num_experts = E;
    p.top_k = v.K;
    p.scoring = v.scoring;
    p.logits_in_f32 = 1;
    p.n_group = v.n_group;
    p.topk_group = v.topk_group;
    p.group_score = v.group_score;
    p.renormalize = v.renorm;
    p.renorm_eps = v.eps;
    p.routed_scaling_factor = v.scale;
    p.router = make_view(router.data(), MOEREG_DTYPE_BF16, {E, H});
    if (v.with_bias) p.router_bias = make_view(bias.data(), MOEREG_DTYPE_F32, {E});
    handle h = create(L.view(), &p);
    ASSERT_TRUE(h) << v.name;
    std::vector<int32_t> ids(T * v.K);
    std::vector<float> wts(T * v.K);
    moereg_tensor_view xv = make_view(x.data(), MOEREG_DTYPE_F32, {T, H});
    moereg_tensor_view iv = make_view(ids.data(), MOEREG_DTYPE_I32, {T, v.K});
    moereg_tensor_view wv = make_view(wts.data(), MOEREG_DTYPE_F32, {T, v.K});
    ASSERT_EQ(take(backend_api()->route(h.get(), &xv, &iv, &wv)), "") << v.name;
    moereg::router core(p);
    moereg::routing_result rr;
    core.route(xv, rr);
    int mismatched = 0;
    for (int t = 0; t < T; ++t) {
      std::set<int64_t> got(ids.begin() + t * v.K, ids.begin() + (t + 1) * v.K);
      std::set<int64_t> want(rr.ids.begin() + t * v.K, rr.ids.begin() + (t + 1) * v.K);
      if (got != want) {
        ++mismatched;
        continue;
      }
      for (int k = 0; k < v.K; ++k)
        for (int j = 0; j < v.K; ++j)
          if (rr.ids[t * v.K + j] == ids[t * v.K + k]) {
            EXPECT_NEAR(wts[t * v.K + k], rr.weights[t * v.K + j], 1e-5f * std::max(1.f, std::fabs(rr.weights[t * v.K + j])))
                << v.name << " token " << t;
          }
    }
    EXPECT_EQ(mismatched, 0) << v.name << ": tokens whose top-k set differs from the core router's";
  }
}

// ---------------------------------------------------------------- errors and describe

TEST(CudaErrors, RejectsWhatItCannotRun) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(4, 64, 24, 2, 0, false, 8);
  moereg_moe_weights w = L.view();
  w.weight_quant = MOEREG_WEIGHT_QUANT_INT4;
  std::string err;
  handle bad = create(w, nullptr, &err);
  EXPECT_FALSE(bad);
  EXPECT_NE(err.find("code 2"), std::string::npos) << err;
  EXPECT_NE(err.find("int4 experts are not read by the CUDA backend"), std::string::npos) << err;

  handle h = create(L.view(), nullptr);
  ASSERT_TRUE(h);
  std::vector<float> x(2 * 64, 1.f), wts(4, 0.5f), out(2 * 64);
  std::vector<int32_t> ids = {0, 1, 2, 9};
  moereg_tensor_view xv = make_view(x.data(), MOEREG_DTYPE_F32, {2, 64});
  moereg_tensor_view iv = make_view(ids.data(), MOEREG_DTYPE_I32, {2, 2});
  moereg_tensor_view wv = make_view(wts.data(), MOEREG_DTYPE_F32, {2, 2});
  moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {2, 64});
  err = take(backend_api()->forward(h.get(), &xv, &iv, &wv, &ov));
  EXPECT_NE(err.find("code 1"), std::string::npos) << err;
  EXPECT_NE(err.find("topk_ids[1, 1] = 9"), std::string::npos) << err;
  moereg_tensor_view short_out = make_view(out.data(), MOEREG_DTYPE_F32, {2, 32});
  ids[3] = 3;
  err = take(backend_api()->forward(h.get(), &xv, &iv, &wv, &short_out));
  EXPECT_NE(err.find("out: shape [2, 32], expected [2, 64]"), std::string::npos) << err;
  err = take(backend_api()->route(h.get(), &xv, &iv, &wv));
  EXPECT_NE(err.find("without a router"), std::string::npos) << err;

  std::string json;
  moereg_sink sink{&json, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
  ASSERT_EQ(take(backend_api()->describe(h.get(), sink)), "");
  EXPECT_NE(json.find("\"load_gbps\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"h2d_gbps\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"bytes_on_device\":"), std::string::npos) << json;
}

// Tuning comes in as backend options (API 2), checked by name: no environment variables.
TEST(CudaOptions, UnknownKeysAndBadValuesAreRefusedByName) {
  ASSERT_NE(backend_api(), nullptr);
  ASSERT_NE(backend_api()->create_with_options, nullptr);
  random_layer L(8, 64, 24, 2, 0, false, 5);
  std::string err;
  set_option("tile", "m16");
  handle h = create(L.view(), nullptr, &err);
  clear_option("tile");
  EXPECT_FALSE(h);
  EXPECT_NE(err.find("backend option 'tile' is not a cuda backend option (it takes tiles, cublas, graphs, f8_activations, "
                     "f8_gemm, f8_gather, f8_tile, f8_silu, f8_decode, pdl, narrow, slot_tiles, wgmma, wgmma_silu, wgmma_gather)"),
            std::string::npos)
      << err;
  for (const auto& [key, value, message] : {std::tuple<const char*, const char*, const char*>{"pdl", "yes", "backend option pdl='yes': expected on or off"},
                                            {"narrow", "on", "backend option narrow='on': expected auto, fill or off"},
                                            {"slot_tiles", "on", "backend option slot_tiles='on': expected auto or off"},
                                            {"f8_decode", "on", "backend option f8_decode='on': expected mma or gemv"},
                                            {"f8_tile", "256", "backend option f8_tile='256': expected 128x128 or 128x256"},
                                            {"f8_silu", "on", "backend option f8_silu='on': expected separate or fused"},
                                            {"wgmma_silu", "on", "backend option wgmma_silu='on': expected separate or fused"},
                                            {"wgmma_gather", "yes", "backend option wgmma_gather='yes': expected on or off"}}) {
    set_option(key, value);
    h = create(L.view(), nullptr, &err);
    clear_option(key);
    EXPECT_FALSE(h) << key;
    EXPECT_NE(err.find(message), std::string::npos) << err;
  }
  set_option("cublas", "no");
  h = create(L.view(), nullptr, &err);
  clear_option("cublas");
  EXPECT_FALSE(h);
  EXPECT_NE(err.find("backend option cublas='no': expected auto or off"), std::string::npos) << err;
  set_option("graphs", "yes");
  h = create(L.view(), nullptr, &err);
  clear_option("graphs");
  EXPECT_FALSE(h);
  EXPECT_NE(err.find("backend option graphs='yes': expected on or off"), std::string::npos) << err;
  set_option("tiles", "m64");
  std::string json;
  EXPECT_LE(run_random(L, 40, 3, false, &json), 1e-2);
  clear_option("tiles");
  EXPECT_NE(json.find("\"options\":{\"tiles\":\"m64\",\"cublas\":\"auto\",\"graphs\":\"off\",\"f8_activations\":\"auto\","
                      "\"f8_gemm\":\"wgmma\",\"f8_gather\":\"off\",\"f8_tile\":\"128x256\",\"f8_silu\":\"separate\",\"f8_decode\":\"gemv\",\"pdl\":\"on\",\"narrow\":\"auto\",\"slot_tiles\":\"auto\",\"wgmma\":\"auto\",\"wgmma_silu\":\"separate\",\"wgmma_gather\":\"off\"}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"last_tiles\":\"n128 m64 k128"), std::string::npos) << json;  // the forced shape ran
}

}  // namespace
