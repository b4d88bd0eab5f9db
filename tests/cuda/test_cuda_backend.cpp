// SPDX-License-Identifier: Apache-2.0
// The CUDA backend through its C ABI (dlopen, as the host loads it): every fixture's MoE
// block reproduced (same top-k sets, relative L2 <= 1e-2), the device router against the
// core router, random shapes against a float64 reference, every tile shape, and the errors.
// Needs an sm_90 GPU; registered with ctest only when MOEREG_CUDA_TESTS=ON.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "test_cpu_fixture_util.h"

// The host side of a status, as the tests need it: code plus message.
struct moereg_status {
  int code;
  std::string message;
};

namespace moereg::test {
// The fixtures directory: $MOEREG_FIXTURES_DIR when set (the GPU machine carries a copy),
// else the configured path.
std::string fixture(const std::string& relative) {
  const char* env = std::getenv("MOEREG_FIXTURES_DIR");
  return std::string(env && *env ? env : MOEREG_FIXTURES_DIR) + "/" + relative;
}
}  // namespace moereg::test

namespace {

using moereg::test::make_view;
using moereg::test::moe_fixture;

moereg_status* status_create(int32_t code, const char* message) noexcept {
  return new moereg_status{code, message ? message : ""};
}
void host_log(int32_t, const char*) noexcept {}
const moereg_host_api host_api = {MOEREG_PLUGIN_API_VERSION, status_create, host_log};

// Takes a status; returns "" for success, else "code N: message".
std::string take(moereg_status* s) {
  if (!s) return "";
  std::string m = "code " + std::to_string(s->code) + ": " + s->message;
  delete s;
  return m;
}

const moereg_backend_api* backend_api() {
  static const moereg_backend_api* api = [] {
    const char* env = std::getenv("MOEREG_CUDA_BACKEND");
    std::string path = env && *env ? env : MOEREG_CUDA_BACKEND_PATH;
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      ADD_FAILURE() << "dlopen " << path << ": " << dlerror();
      return static_cast<const moereg_backend_api*>(nullptr);
    }
    auto entry = reinterpret_cast<moereg_backend_entry_fn>(dlsym(lib, MOEREG_BACKEND_ENTRY_SYMBOL));
    if (!entry) {
      ADD_FAILURE() << path << ": no symbol " << MOEREG_BACKEND_ENTRY_SYMBOL;
      return static_cast<const moereg_backend_api*>(nullptr);
    }
    return entry(&host_api);
  }();
  return api;
}

struct handle_deleter {
  void operator()(moereg_backend* b) const { backend_api()->destroy(b); }
};
using handle = std::unique_ptr<moereg_backend, handle_deleter>;

// Backend options (tiles, cublas) every create below passes, through create_with_options.
std::map<std::string, std::string> g_options;
void set_option(const std::string& key, const std::string& value) { g_options[key] = value; }
void clear_option(const std::string& key) { g_options.erase(key); }

handle create(const moereg_moe_weights& w, const moereg_routing_params* r, std::string* error = nullptr) {
  moereg_backend_options o{};
  moereg_backend* b = nullptr;
  std::vector<moereg_backend_option> kv;
  for (const auto& [k, v] : g_options) kv.push_back({k.c_str(), v.c_str()});
  std::string e = take(kv.empty() ? backend_api()->create(&w, r, &o, &b)
                                  : backend_api()->create_with_options(&w, r, &o, kv.data(), kv.size(), &b));
  if (error) {
    *error = e;
  } else {
    EXPECT_EQ(e, "");
  }
  return handle(b);
}

double rel_l2(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    double d = a[i] - ref[i];
    if (!std::isfinite(a[i])) return INFINITY;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

uint16_t to_bf16(float f) { return moereg::f32_to_bf16(f); }
float from_bf16(uint16_t b) { return moereg::bf16_to_f32(b); }

// float64 MoE reference on bf16 weights (upcast exactly) and the given x.
std::vector<double> reference(const std::vector<float>& x, const std::vector<int64_t>& ids,
                              const std::vector<float>& wts, const std::vector<uint16_t>& w13,
                              const std::vector<uint16_t>& w2, int T, int H, int I, int K,
                              const std::vector<uint16_t>* sw13 = nullptr, const std::vector<uint16_t>* sw2 = nullptr,
                              int Is = 0, const std::vector<uint16_t>* sgate = nullptr) {
  std::vector<double> out(static_cast<size_t>(T) * H, 0.0);
  auto mlp = [&](const uint16_t* g13, const uint16_t* g2, int inter, int t, double scale) {
    std::vector<double> h(inter);
    for (int i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (int k = 0; k < H; ++k) {
        g += double(x[t * H + k]) * from_bf16(g13[static_cast<size_t>(i) * H + k]);
        u += double(x[t * H + k]) * from_bf16(g13[static_cast<size_t>(inter + i) * H + k]);
      }
      h[i] = g / (1 + std::exp(-g)) * u;
    }
    for (int n = 0; n < H; ++n) {
      double y = 0;
      for (int i = 0; i < inter; ++i) y += h[i] * from_bf16(g2[static_cast<size_t>(n) * inter + i]);
      out[static_cast<size_t>(t) * H + n] += scale * y;
    }
  };
  for (int t = 0; t < T; ++t) {
    for (int k = 0; k < K; ++k) {
      int64_t e = ids[t * K + k];
      mlp(w13.data() + static_cast<size_t>(e) * 2 * I * H, w2.data() + static_cast<size_t>(e) * H * I, I, t,
          wts[t * K + k]);
    }
    if (sw13) {
      double s = 1;
      if (sgate) {
        double d = 0;
        for (int k = 0; k < H; ++k) d += double(x[t * H + k]) * from_bf16((*sgate)[k]);
        s = 1 / (1 + std::exp(-d));
      }
      mlp(sw13->data(), sw2->data(), Is, t, s);
    }
  }
  return out;
}

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

struct random_layer {
  int E, H, I, K, Is;
  bool gate;
  std::vector<uint16_t> w13, w2, sw13, sw2, sg;
  random_layer(int e, int h, int i, int k, int is, bool g, uint32_t seed) : E(e), H(h), I(i), K(k), Is(is), gate(g) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto fill = [&](std::vector<uint16_t>& v, size_t n, float scale) {
      v.resize(n);
      for (auto& x : v) x = to_bf16(nd(rng) * scale);
    };
    fill(w13, size_t(E) * 2 * I * H, 1.f / std::sqrt(float(H)));
    fill(w2, size_t(E) * H * I, 1.f / std::sqrt(float(I)));
    if (Is) {
      fill(sw13, size_t(2) * Is * H, 1.f / std::sqrt(float(H)));
      fill(sw2, size_t(H) * Is, 1.f / std::sqrt(float(Is)));
      if (gate) fill(sg, H, 1.f / std::sqrt(float(H)));
    }
  }
  moereg_moe_weights view() {
    moereg_moe_weights w{};
    w.num_experts = E;
    w.hidden = H;
    w.intermediate = I;
    w.w13 = make_view(w13.data(), MOEREG_DTYPE_BF16, {E, 2 * I, H});
    w.w2 = make_view(w2.data(), MOEREG_DTYPE_BF16, {E, H, I});
    if (Is) {
      w.shared_intermediate = Is;
      w.shared_w13 = make_view(sw13.data(), MOEREG_DTYPE_BF16, {2 * Is, H});
      w.shared_w2 = make_view(sw2.data(), MOEREG_DTYPE_BF16, {H, Is});
      if (gate) w.shared_gate = make_view(sg.data(), MOEREG_DTYPE_BF16, {1, H});
    }
    return w;
  }
};

// Runs T tokens with random distinct ids and random weights; returns relative L2 against float64.
// balanced: token t takes experts (t*K + k) mod E, so every expert gets the same rows when
// E divides T*K; otherwise skewed loads (expert 0 hit by a third of the tokens).
double run_random(random_layer& L, int T, uint32_t seed, bool bf16_x = false, std::string* json = nullptr,
                  bool balanced = false) {
  handle h = create(L.view(), nullptr);
  if (!h) return INFINITY;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.1f, 1.f);
  std::vector<float> x(size_t(T) * L.H);
  for (auto& v : x) v = nd(rng);
  std::vector<uint16_t> xb;
  if (bf16_x) {
    xb.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      xb[i] = to_bf16(x[i]);
      x[i] = from_bf16(xb[i]);
    }
  }
  std::vector<int32_t> ids(size_t(T) * L.K);
  std::vector<int64_t> ids64(ids.size());
  std::vector<float> wts(ids.size());
  std::vector<int> perm(L.E);
  for (int t = 0; t < T; ++t) {
    for (int e = 0; e < L.E; ++e) perm[e] = e;
    // Skewed: expert 0 is hit by most tokens, so groups of very different sizes occur.
    if (t % 3) std::swap(perm[0], perm[rng() % L.E]);
    for (int k = 0; k < L.K; ++k) {
      int j = k + static_cast<int>(rng() % (L.E - k));
      if (k == 0 && t % 3 == 0) j = 0;
      std::swap(perm[k], perm[j]);
      if (balanced) perm[k] = (t * L.K + k) % L.E;
      ids[t * L.K + k] = perm[k];
      ids64[t * L.K + k] = perm[k];
      wts[t * L.K + k] = ud(rng);
    }
  }
  std::vector<float> out(size_t(T) * L.H, NAN);
  moereg_tensor_view xv = bf16_x ? make_view(xb.data(), MOEREG_DTYPE_BF16, {T, L.H})
                                 : make_view(x.data(), MOEREG_DTYPE_F32, {T, L.H});
  moereg_tensor_view iv = make_view(ids.data(), MOEREG_DTYPE_I32, {T, L.K});
  moereg_tensor_view wv = make_view(wts.data(), MOEREG_DTYPE_F32, {T, L.K});
  moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {T, L.H});
  std::string e = take(backend_api()->forward(h.get(), &xv, &iv, &wv, &ov));
  EXPECT_EQ(e, "");
  if (!e.empty()) return INFINITY;
  if (json) {
    moereg_sink sink{json, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
    EXPECT_EQ(take(backend_api()->describe(h.get(), sink)), "");
  }
  auto ref = reference(x, ids64, wts, L.w13, L.w2, T, L.H, L.I, L.K, L.Is ? &L.sw13 : nullptr,
                       L.Is ? &L.sw2 : nullptr, L.Is, L.gate ? &L.sg : nullptr);
  return rel_l2(out, ref);
}

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

// Unforced: >= 128 rows per hit expert goes to cuBLAS, fewer to the kernels;
// The backend option cublas=off keeps every size on the kernels.
TEST(CudaRandom, CublasChosenForManyRowsPerExpert) {
  ASSERT_NE(backend_api(), nullptr);
  clear_option("tiles");
  clear_option("cublas");
  random_layer L(4, 64, 32, 2, 0, false, 8);
  std::string json;
  EXPECT_LE(run_random(L, 600, 21, false, &json), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  EXPECT_NE(json.find("\"gemm_large\":\"cuBLAS "), std::string::npos) << json;
  json.clear();
  EXPECT_LE(run_random(L, 40, 22, false, &json), 1e-2);
  EXPECT_EQ(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  random_layer M(32, 64, 32, 4, 0, false, 9);
  json.clear();
  EXPECT_LE(run_random(M, 1100, 23, false, &json), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  set_option("cublas", "off");
  json.clear();
  EXPECT_LE(run_random(L, 600, 21, false, &json), 1e-2);
  EXPECT_EQ(json.find("\"last_tiles\":\"cublas"), std::string::npos) << json;
  EXPECT_NE(json.find("\"gemm_large\":\"off"), std::string::npos) << json;
  clear_option("cublas");
}

// Balanced routing (every expert gets the same rows): no padding, so the automatic choice is
// the single strided batched GEMM, and it matches the reference.
TEST(CudaRandom, CublasBatchedChosenForBalancedExperts) {
  ASSERT_NE(backend_api(), nullptr);
  clear_option("tiles");
  clear_option("cublas");
  random_layer L(8, 128, 64, 2, 0, false, 12);
  std::string json;
  EXPECT_LE(run_random(L, 1024, 31, false, &json, /*balanced=*/true), 1e-2);
  EXPECT_NE(json.find("\"last_tiles\":\"cublas_batched\""), std::string::npos) << json;
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
  w.w13.dtype = MOEREG_DTYPE_F8_E4M3;
  std::string err;
  handle bad = create(w, nullptr, &err);
  EXPECT_FALSE(bad);
  EXPECT_NE(err.find("code 2"), std::string::npos) << err;
  EXPECT_NE(err.find("F8_E4M3"), std::string::npos) << err;

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

// Weights already in device memory (a framework's parameters) are read where they lie: the
// output equals the copied-weights layer's, nothing is held, and destroying the layer leaves
// the caller's memory alone (a second layer on the same memory still computes the same).
TEST(CudaDeviceWeights, BorrowedWeightsComputeWhatCopiedWeightsDo) {
  ASSERT_NE(backend_api(), nullptr);
  const auto* api = backend_api();
  random_layer L(16, 136, 40, 4, 24, true, 21);
  handle copied = create(L.view(), nullptr);
  ASSERT_TRUE(copied);
  std::vector<void*> owned;
  auto to_device = [&](const std::vector<uint16_t>& v) {
    void* p = nullptr;
    EXPECT_EQ(take(api->alloc(copied.get(), v.size() * 2, &p)), "");
    EXPECT_EQ(take(api->copy(copied.get(), p, v.data(), v.size() * 2, 0)), "");
    owned.push_back(p);
    return p;
  };
  moereg_moe_weights dw = L.view();
  dw.w13.data = to_device(L.w13);
  dw.w2.data = to_device(L.w2);
  dw.shared_w13.data = to_device(L.sw13);
  dw.shared_w2.data = to_device(L.sw2);
  dw.shared_gate.data = to_device(L.sg);
  for (auto* v : {&dw.w13, &dw.w2, &dw.shared_w13, &dw.shared_w2, &dw.shared_gate}) v->memory = MOEREG_MEMORY_DEVICE;

  auto forward = [&](moereg_backend* h, int T) {
    std::mt19937 rng(T);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(size_t(T) * L.H), wts(size_t(T) * L.K, 0.25f), out(size_t(T) * L.H, NAN);
    for (auto& v : x) v = nd(rng);
    std::vector<int64_t> ids(size_t(T) * L.K);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7 + i / L.K) % L.E);
    moereg_tensor_view xv = make_view(x.data(), MOEREG_DTYPE_F32, {T, L.H});
    moereg_tensor_view iv = make_view(ids.data(), MOEREG_DTYPE_I64, {T, L.K});
    moereg_tensor_view wv = make_view(wts.data(), MOEREG_DTYPE_F32, {T, L.K});
    moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {T, L.H});
    EXPECT_EQ(take(api->forward(h, &xv, &iv, &wv, &ov)), "");
    return out;
  };
  auto max_rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0, m = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return double(INFINITY);
      d = std::max(d, double(std::fabs(a[i] - b[i])));
      m = std::max(m, double(std::fabs(b[i])));
    }
    return d / m;
  };
  for (int round = 0; round < 2; ++round) {
    handle borrowed = create(dw, nullptr);
    ASSERT_TRUE(borrowed);
    std::string json;
    moereg_sink sink{&json, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
    ASSERT_EQ(take(api->describe(borrowed.get(), sink)), "");
    EXPECT_NE(json.find("\"weights\":\"borrowed"), std::string::npos) << json;
    EXPECT_NE(json.find("\"bytes_on_device\":0,"), std::string::npos) << json;
    for (int T : {1, 33, 300}) {
      const double d = max_rel(forward(borrowed.get(), T), forward(copied.get(), T));
      EXPECT_LE(d, 1e-6) << "round " << round << " T=" << T;
    }
  }  // destroyed: the memory in `owned` must still hold the weights for round 1

  // Refusals: one kind of memory for all expert tensors, bf16 only, real device pointers.
  std::string err;
  moereg_moe_weights mixed = dw;
  mixed.w2 = L.view().w2;
  EXPECT_FALSE(create(mixed, nullptr, &err));
  EXPECT_NE(err.find("weights.w2: in host memory while weights.w13 is in device memory"), std::string::npos) << err;
  moereg_moe_weights f32 = dw;
  f32.w13.dtype = f32.w2.dtype = MOEREG_DTYPE_F32;  // refused before any byte is read
  err.clear();
  EXPECT_FALSE(create(f32, nullptr, &err));
  EXPECT_NE(err.find("code 2"), std::string::npos) << err;
  moereg_moe_weights host_marked = L.view();
  host_marked.w13.memory = host_marked.w2.memory = MOEREG_MEMORY_DEVICE;
  host_marked.shared_w13.memory = host_marked.shared_w2.memory = host_marked.shared_gate.memory = MOEREG_MEMORY_DEVICE;
  err.clear();
  EXPECT_FALSE(create(host_marked, nullptr, &err));
  EXPECT_NE(err.find("not CUDA device memory"), std::string::npos) << err;
  for (void* p : owned) api->free(copied.get(), p);
}

}  // namespace

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
  EXPECT_NE(err.find("backend option 'tile' is not a cuda backend option (it takes tiles, cublas)"), std::string::npos) << err;
  set_option("cublas", "no");
  h = create(L.view(), nullptr, &err);
  clear_option("cublas");
  EXPECT_FALSE(h);
  EXPECT_NE(err.find("backend option cublas='no': expected auto or off"), std::string::npos) << err;
  set_option("tiles", "m64");
  std::string json;
  EXPECT_LE(run_random(L, 40, 3, false, &json), 1e-2);
  clear_option("tiles");
  EXPECT_NE(json.find("\"options\":{\"tiles\":\"m64\",\"cublas\":\"auto\"}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"last_tiles\":\"m64"), std::string::npos) << json;
}
