// SPDX-License-Identifier: Apache-2.0
// test_cpu_block.h - a fixture's MoE block as cpu-backend weights, and one forward of it
// against the fixture's reference: what the cpu backend's fixture tests share.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "test_cpu_backend_util.h"
#include "test_cpu_fixture_util.h"

namespace moereg::test {

// A fixture's MoE block as backend weights; shared gate and up rows concatenated here.
struct block_weights {
  moereg_moe_weights w{};
  std::vector<std::uint16_t> shared_w13;
  std::vector<float> w13_f32, w2_f32, shared_w13_f32, shared_w2_f32;

  explicit block_weights(const moe_fixture& fx) {
    const auto& f = *fx.weights;
    w.w13 = test::tensor_view(f, fx.block + ".experts.gate_up_proj");
    w.w2 = test::tensor_view(f, fx.block + ".experts.down_proj");
    w.num_experts = w.w13.shape[0];
    w.intermediate = w.w13.shape[1] / 2;
    w.hidden = w.w13.shape[2];
    std::string shared = f.find(fx.block + ".shared_expert.gate_proj.weight") ? ".shared_expert."
                         : f.find(fx.block + ".shared_experts.gate_proj.weight") ? ".shared_experts."
                                                                                  : "";
    if (shared.empty()) return;
    const tensor_info* g = f.find(fx.block + shared + "gate_proj.weight");
    const tensor_info* u = f.find(fx.block + shared + "up_proj.weight");
    EXPECT_EQ(g->type, dtype::BF16);
    shared_w13.resize(g->numel() + u->numel());
    std::memcpy(shared_w13.data(), f.data(*g), g->nbytes());
    std::memcpy(shared_w13.data() + g->numel(), f.data(*u), u->nbytes());
    w.shared_intermediate = g->shape[0];
    w.shared_w13 = make_view(shared_w13.data(), MOEREG_DTYPE_BF16, {2 * g->shape[0], g->shape[1]});
    w.shared_w2 = test::tensor_view(f, fx.block + shared + "down_proj.weight");
    if (f.find(fx.block + ".shared_expert_gate.weight")) w.shared_gate = test::tensor_view(f, fx.block + ".shared_expert_gate.weight");
  }

  // The same weights widened to F32 (exactly).
  void to_f32() {
    auto widen = [](const moereg_tensor_view& v, std::vector<float>& out) {
      std::int64_t n = 1;
      for (int i = 0; i < v.rank; ++i) n *= v.shape[i];
      out.resize(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = bf16_to_f32(static_cast<const std::uint16_t*>(v.data)[i]);
      moereg_tensor_view r = v;
      r.data = out.data();
      r.dtype = MOEREG_DTYPE_F32;
      return r;
    };
    w.w13 = widen(w.w13, w13_f32);
    w.w2 = widen(w.w2, w2_f32);
    if (w.shared_w13.data) {
      w.shared_w13 = widen(w.shared_w13, shared_w13_f32);
      w.shared_w2 = widen(w.shared_w2, shared_w2_f32);
    }
  }
};

struct run_case {
  bool bf16_input;
  bool f32_weights;
  int threads;
  bool f32_after = false;  // then the same tokens as f32 on the same handle (both outputs checked)
};

// Runs the block on T tokens (fixture rows repeated) and returns max|out - ref| / max|ref|.
inline double relative_error(const moe_fixture& fx, const block_weights& bw, std::int64_t T, const run_case& rc,
                      std::string* description = nullptr) {
  std::vector<float> in = test::tensor_f32(*fx.io, "input"), ref = test::tensor_f32(*fx.io, "output");
  const std::int64_t H = bw.w.hidden, rows = static_cast<std::int64_t>(in.size()) / H;
  std::vector<float> x(static_cast<std::size_t>(T * H)), want(x.size()), out(x.size(), NAN);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) {
      x[static_cast<std::size_t>(t * H + h)] = in[static_cast<std::size_t>((t % rows) * H + h)];
      want[static_cast<std::size_t>(t * H + h)] = ref[static_cast<std::size_t>((t % rows) * H + h)];
    }
  // Route the f32 input: the backend is checked on the fixture's own expert choice.
  routing_result r;
  router(fx.routing, fx.family).route(make_view(x.data(), MOEREG_DTYPE_F32, {T, H}), r);
  std::vector<std::uint16_t> xb(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);

  moereg_backend_options opts{};
  opts.threads = rc.threads;
  moereg_backend* b = nullptr;
  EXPECT_EQ(take(create_with_test_options(&bw.w, &fx.routing, &opts, &b)), "");
  if (!b) return INFINITY;
  moereg_tensor_view xv = rc.bf16_input ? make_view(xb.data(), MOEREG_DTYPE_BF16, {T, H}) : make_view(x.data(), MOEREG_DTYPE_F32, {T, H});
  moereg_tensor_view ids = make_view(r.ids.data(), MOEREG_DTYPE_I64, {T, r.top_k});
  moereg_tensor_view wts = make_view(r.weights.data(), MOEREG_DTYPE_F32, {T, r.top_k});
  moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {T, H});
  EXPECT_EQ(take(cpu_api()->forward(b, &xv, &ids, &wts, &ov)), "");
  std::vector<float> out2;
  if (rc.f32_after) {
    out2.assign(out.size(), NAN);
    moereg_tensor_view xf = make_view(x.data(), MOEREG_DTYPE_F32, {T, H});
    moereg_tensor_view ov2 = make_view(out2.data(), MOEREG_DTYPE_F32, {T, H});
    EXPECT_EQ(take(cpu_api()->forward(b, &xf, &ids, &wts, &ov2)), "");
  }
  if (description) *description = describe(b);
  cpu_api()->destroy(b);
  double max_ref = 0, max_err = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(want[i])));
    double d = std::fabs(double(out[i]) - want[i]);
    if (!out2.empty()) d = std::max(d, std::fabs(double(out2[i]) - want[i]));
    max_err = std::isnan(d) ? INFINITY : std::max(max_err, d);
  }
  return max_err / max_ref;
}

}  // namespace moereg::test
