// SPDX-License-Identifier: Apache-2.0
// cuda_test_support.cpp - see cuda_test_support.h.
#include "cuda_test_support.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <random>

#include "moereg/tensor/dtype.h"
#include "test_cpu_fixture_util.h"

namespace moereg::test {
std::string fixture(const std::string& relative) {
  const char* env = std::getenv("MOEREG_FIXTURES_DIR");
  return std::string(env && *env ? env : MOEREG_FIXTURES_DIR) + "/" + relative;
}
}  // namespace moereg::test

namespace moereg::test::cuda {

namespace {
moereg_status* status_create(int32_t code, const char* message) noexcept {
  return new moereg_status{code, message ? message : ""};
}
void host_log(int32_t, const char*) noexcept {}
const moereg_host_api host_api = {MOEREG_PLUGIN_API_VERSION, status_create, host_log};
std::map<std::string, std::string> g_options;
}  // namespace

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

void set_option(const std::string& key, const std::string& value) { g_options[key] = value; }
void clear_option(const std::string& key) { g_options.erase(key); }

handle create(const moereg_moe_weights& w, const moereg_routing_params* r, std::string* error) {
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

std::string describe(moereg_backend* h) {
  std::string json;
  moereg_sink sink{&json, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
  EXPECT_EQ(take(backend_api()->describe(h, sink)), "");
  return json;
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

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    d = std::max(d, double(std::fabs(a[i] - b[i])));
    m = std::max(m, double(std::fabs(b[i])));
  }
  return d / m;
}

moereg_moe_weights experts_view(void* w13, void* w2, int32_t dtype, long long E, long long H, long long I) {
  moereg_moe_weights w{};
  w.num_experts = E;
  w.hidden = H;
  w.intermediate = I;
  w.w13 = make_view(w13, static_cast<moereg_dtype>(dtype), {E, 2 * I, H});
  w.w2 = make_view(w2, static_cast<moereg_dtype>(dtype), {E, H, I});
  return w;
}

uint16_t to_bf16(float f) { return moereg::f32_to_bf16(f); }
float from_bf16(uint16_t b) { return moereg::bf16_to_f32(b); }

// float64 MoE reference on bf16 weights (upcast exactly) and the given x.
std::vector<double> reference(const std::vector<float>& x, const std::vector<int64_t>& ids,
                              const std::vector<float>& wts, const std::vector<uint16_t>& w13,
                              const std::vector<uint16_t>& w2, int T, int H, int I, int K,
                              const std::vector<uint16_t>* sw13, const std::vector<uint16_t>* sw2, int Is,
                              const std::vector<uint16_t>* sgate) {
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

random_layer::random_layer(int e, int h, int i, int k, int is, bool g, uint32_t seed)
    : E(e), H(h), I(i), K(k), Is(is), gate(g) {
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

moereg_moe_weights random_layer::view() {
  moereg_moe_weights w = experts_view(w13.data(), w2.data(), MOEREG_DTYPE_BF16, E, H, I);
  if (Is) {
    w.shared_intermediate = Is;
    w.shared_w13 = make_view(sw13.data(), MOEREG_DTYPE_BF16, {2 * Is, H});
    w.shared_w2 = make_view(sw2.data(), MOEREG_DTYPE_BF16, {H, Is});
    if (gate) w.shared_gate = make_view(sg.data(), MOEREG_DTYPE_BF16, {1, H});
  }
  return w;
}

random_tokens::random_tokens(int T, int H, int E, int K, uint32_t seed, bool bf16_x, bool balanced) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.1f, 1.f);
  x.resize(size_t(T) * H);
  for (auto& v : x) v = nd(rng);
  if (bf16_x) {
    xb.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      xb[i] = to_bf16(x[i]);
      x[i] = from_bf16(xb[i]);
    }
  }
  ids.resize(size_t(T) * K);
  ids64.resize(ids.size());
  wts.resize(ids.size());
  std::vector<int> perm(E);
  for (int t = 0; t < T; ++t) {
    for (int e = 0; e < E; ++e) perm[e] = e;
    // Skewed: expert 0 is hit by most tokens, so groups of very different sizes occur.
    if (t % 3) std::swap(perm[0], perm[rng() % E]);
    for (int k = 0; k < K; ++k) {
      int j = k + static_cast<int>(rng() % (E - k));
      if (k == 0 && t % 3 == 0) j = 0;
      std::swap(perm[k], perm[j]);
      if (balanced) perm[k] = (t * K + k) % E;
      ids[t * K + k] = perm[k];
      ids64[t * K + k] = perm[k];
      wts[t * K + k] = ud(rng);
    }
  }
}

std::vector<float> forward(moereg_backend* h, const random_tokens& r, int T, int H, int K) {
  std::vector<float> out(size_t(T) * H, NAN);
  moereg_tensor_view xv = !r.xb.empty() ? make_view(const_cast<uint16_t*>(r.xb.data()), MOEREG_DTYPE_BF16, {T, H})
                                        : make_view(const_cast<float*>(r.x.data()), MOEREG_DTYPE_F32, {T, H});
  moereg_tensor_view iv = make_view(const_cast<int32_t*>(r.ids.data()), MOEREG_DTYPE_I32, {T, K});
  moereg_tensor_view wv = make_view(const_cast<float*>(r.wts.data()), MOEREG_DTYPE_F32, {T, K});
  moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {T, H});
  const std::string e = take(backend_api()->forward(h, &xv, &iv, &wv, &ov));
  EXPECT_EQ(e, "");
  if (!e.empty()) std::fill(out.begin(), out.end(), NAN);
  return out;
}

double run_random(random_layer& L, int T, uint32_t seed, bool bf16_x, std::string* json, bool balanced) {
  handle h = create(L.view(), nullptr);
  if (!h) return INFINITY;
  random_tokens r(T, L.H, L.E, L.K, seed, bf16_x, balanced);
  std::vector<float> out = forward(h.get(), r, T, L.H, L.K);
  if (json) *json = describe(h.get());
  auto ref = reference(r.x, r.ids64, r.wts, L.w13, L.w2, T, L.H, L.I, L.K, L.Is ? &L.sw13 : nullptr,
                       L.Is ? &L.sw2 : nullptr, L.Is, L.gate ? &L.sg : nullptr);
  return rel_l2(out, ref);
}

}  // namespace moereg::test::cuda
