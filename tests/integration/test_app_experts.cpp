// SPDX-License-Identifier: Apache-2.0
// app/experts.h: a backend on experts the caller holds, routed by the caller, against the
// MoE block outputs transformers computed (qwen3_moe and mixtral have no shared expert, so
// the block's output is the routed experts' sum).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "moereg/app/experts.h"
#include "moereg/app/mapped.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_app_experts {
namespace {

std::shared_ptr<const app::mapped_checkpoint> map_file(const std::string& path) {
  app::map_request r;
  r.path = path;
  r.identify = false;
  auto m = app::map_checkpoint(r);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? m.value() : nullptr;
}

const app::tensor_entry& entry(const app::mapped_checkpoint& m, const std::string& name) {
  for (const auto& t : m.info().tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no " + name);
}

}  // namespace

TEST(AppExperts, CallerRoutedExpertsMatchTransformers) {
  for (const auto& [family, layer] : std::vector<std::pair<std::string, int>>{{"qwen3_moe", 1}, {"mixtral", 1}}) {
    SCOPED_TRACE(family);
    auto v5 = map_file(test::fixture(family + "/transformers_v5.safetensors"));
    auto block = map_file(test::fixture(family + "/moe_block.safetensors"));
    ASSERT_TRUE(v5 && block);
    const std::string prefix = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    const auto& gu = entry(*v5, prefix + "gate_up_proj");
    const auto& x = entry(*block, "input");
    const auto& ids = entry(*block, "topk_ids");
    app::experts_request req;
    req.backend = "cpu";
    req.threads = 2;
    req.weights = {v5->data(prefix + "gate_up_proj"), v5->data(prefix + "down_proj"), "BF16", gu.shape[0], gu.shape[2], gu.shape[1] / 2};
    req.top_k = ids.shape[1];
    auto b = app::create_experts_backend(req);
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_EQ(b.value()->name(), "cpu");
    const std::int64_t T = x.shape[0], H = x.shape[1];
    // The fixture's data is not promised aligned: copy the small routing arrays.
    std::vector<std::int64_t> id(static_cast<std::size_t>(T * req.top_k));
    std::vector<float> w(id.size()), in(static_cast<std::size_t>(T * H)), out(in.size(), NAN), ref(in.size());
    std::memcpy(id.data(), block->data("topk_ids"), id.size() * 8);
    std::memcpy(w.data(), block->data("topk_weights"), w.size() * 4);
    std::memcpy(in.data(), block->data("input"), in.size() * 4);
    std::memcpy(ref.data(), block->data("output"), ref.size() * 4);
    auto r = b.value()->forward({in.data(), "F32", T, id.data(), w.data(), req.top_k, out.data()});
    ASSERT_TRUE(r.ok()) << r.error().message;
    float max_ref = 0, max_err = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(ref[i]));
      max_err = std::max(max_err, std::fabs(out[i] - ref[i]));
    }
    EXPECT_LE(max_err, 1e-5f * max_ref);
    EXPECT_GT(max_ref, 0.0f);
  }
}

TEST(AppExperts, BadRequestsAreProblems) {
  std::vector<std::uint16_t> gu(2 * 4 * 8), down(2 * 8 * 2);
  app::experts_request req;
  req.backend = "cpu";
  req.weights = {gu.data(), down.data(), "BF16", 2, 8, 2};
  req.top_k = 3;  // more than the experts
  EXPECT_EQ(app::create_experts_backend(req).error().kind, app::error_kind::usage);
  req.top_k = 1;
  req.weights.dtype = "Q4_K";
  EXPECT_EQ(app::create_experts_backend(req).error().kind, app::error_kind::usage);
  req.weights.dtype = "BF16";
  req.backend = "no_such_backend";
  auto none = app::create_experts_backend(req);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no_such_backend"), std::string::npos) << none.error().message;
  req.backend = "cpu";
  auto b = app::create_experts_backend(req);
  ASSERT_TRUE(b.ok()) << b.error().message;
  std::vector<float> x(8), out(8);
  std::int64_t bad_id = 2;
  float weight = 1;
  auto r = b.value()->forward({x.data(), "F32", 1, &bad_id, &weight, 1, out.data()});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("expert id 2"), std::string::npos) << r.error().message;
  std::int64_t ok_id = 1;
  EXPECT_EQ(b.value()->forward({x.data(), "F32", 1, &ok_id, &weight, 2, out.data()}).error().kind, app::error_kind::usage);
  EXPECT_TRUE(b.value()->forward({x.data(), "F32", 1, &ok_id, &weight, 1, out.data()}).ok());

  // Weights said to be on a GPU: the cpu backend refuses them by name (so that "auto" moves on
  // to cuda), and a negative ordinal other than -1 is a usage error.
  req.weights.device = 0;
  auto on_gpu = app::create_experts_backend(req);
  ASSERT_FALSE(on_gpu.ok());
  EXPECT_NE(on_gpu.error().message.find("in device memory; the cpu backend reads host memory"), std::string::npos)
      << on_gpu.error().message;
  req.weights.device = -2;
  EXPECT_EQ(app::create_experts_backend(req).error().kind, app::error_kind::usage);
}

}  // namespace test_app_experts
