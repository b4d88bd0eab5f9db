// SPDX-License-Identifier: Apache-2.0
// The CUDA backend reading expert weights that are already in device memory (a framework's
// parameters): no copy, the same results as weights copied from the host, and the refusals.
// Needs an sm_90 GPU; registered with ctest only when MOEREG_CUDA_TESTS=ON.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_support.h"
#include "test_cpu_fixture_util.h"

namespace {

using moereg::test::make_view;
using namespace moereg::test::cuda;

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
  for (int round = 0; round < 2; ++round) {
    handle borrowed = create(dw, nullptr);
    ASSERT_TRUE(borrowed);
    std::string json;
    moereg_sink sink{&json, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
    ASSERT_EQ(take(api->describe(borrowed.get(), sink)), "");
    EXPECT_NE(json.find("\"weights\":\"borrowed"), std::string::npos) << json;
    EXPECT_NE(json.find("\"bytes_on_device\":0,"), std::string::npos) << json;
    for (int T : {1, 33, 300}) {
      const double d = max_rel_diff(forward(borrowed.get(), T), forward(copied.get(), T));
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
