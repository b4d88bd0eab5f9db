// SPDX-License-Identifier: Apache-2.0
// The cpu backend library, loaded from the build tree with dlopen as any host would, run on
// every fixture's MoE block (routing from moereg::router) for several T, both input dtypes,
// bf16 and f32 weights, every kernel set this machine runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "test_cpu_backend_util.h"
#include "test_cpu_fixture_util.h"

using namespace moereg;
using test::cpu_api;
using test::describe;
using test::for_each_isa;
using test::make_view;
using test::moe_fixture;
using test::take;

namespace {

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
double relative_error(const moe_fixture& fx, const block_weights& bw, std::int64_t T, const run_case& rc,
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
  EXPECT_EQ(take(cpu_api()->create(&bw.w, &fx.routing, &opts, &b)), "");
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

}  // namespace

TEST(cpu_backend, loads_and_probes) {
  ASSERT_NE(cpu_api(), nullptr);
  EXPECT_EQ(cpu_api()->api_version, static_cast<uint32_t>(MOEREG_PLUGIN_API_VERSION));
  EXPECT_STREQ(cpu_api()->name, "cpu");
  char reason[128] = {};
  EXPECT_GT(cpu_api()->probe(reason, sizeof reason), 0);
  EXPECT_NE(std::string(reason).find("cores"), std::string::npos) << reason;
}

TEST(cpu_backend, every_fixture_f32_input_matches_reference_tightly) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    for (const auto& fam : test::moe_fixture_families()) {
      SCOPED_TRACE(fam);
      moe_fixture fx(fam);
      block_weights bw(fx);
      for (std::int64_t T : {1, 7, 16, 33}) {
        EXPECT_LE(relative_error(fx, bw, T, {false, false, 2}), 1e-5) << "T=" << T;
      }
    }
  });
}

TEST(cpu_backend, every_fixture_bf16_input_within_bf16_bound) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    for (const auto& fam : test::moe_fixture_families()) {
      SCOPED_TRACE(fam);
      moe_fixture fx(fam);
      block_weights bw(fx);
      for (std::int64_t T : {1, 7, 16, 33}) {
        double e = relative_error(fx, bw, T, {true, false, 3});
        EXPECT_LE(e, 1e-2) << "T=" << T;
        EXPECT_GT(e, 1e-6) << "T=" << T << ": bf16 input should compute in bf16, yet matches f32 math exactly";
      }
    }
  });
}

TEST(cpu_backend, f32_weights_and_one_thread) {
  ASSERT_NE(cpu_api(), nullptr);
  for (const auto& fam : test::moe_fixture_families()) {
    SCOPED_TRACE(fam);
    moe_fixture fx(fam);
    block_weights bw(fx);
    bw.to_f32();
    EXPECT_LE(relative_error(fx, bw, 33, {false, true, 1}), 1e-5);
    EXPECT_LE(relative_error(fx, bw, 5, {true, true, 2}), 1e-2);
  }
}

// MOEREG_CPU_KBLOCK below the fixtures' H and I: gate/up and down sums run in several K
// passes (with a ragged last pass) whenever an expert has more rows than one tile.
TEST(cpu_backend, k_blocked_passes_match_reference) {
  ASSERT_NE(cpu_api(), nullptr);
  for (const char* kb : {"16", "40"}) {
    SCOPED_TRACE(std::string("MOEREG_CPU_KBLOCK=") + kb);
    ::setenv("MOEREG_CPU_KBLOCK", kb, 1);
    for_each_isa([kb] {
      for (const auto& fam : test::moe_fixture_families()) {
        SCOPED_TRACE(fam);
        moe_fixture fx(fam);
        block_weights bw(fx);
        ASSERT_GT(bw.w.hidden, 40);  // and I = 24: 16 splits the down sums too
        std::string d;
        EXPECT_LE(relative_error(fx, bw, 33, {false, false, 2}, &d), 1e-5);
        EXPECT_NE(d.find(std::string("\"k_block\":") + kb), std::string::npos) << d;
        EXPECT_LE(relative_error(fx, bw, 70, {true, false, 2}), 1e-2);
      }
    });
  }
  ::unsetenv("MOEREG_CPU_KBLOCK");
}

TEST(cpu_backend, describe_reports_isa_and_scratch_growth) {
  ASSERT_NE(cpu_api(), nullptr);
  moe_fixture fx("qwen3_5_moe");
  block_weights bw(fx);
  std::string d;
  relative_error(fx, bw, 100, {true, false, 2}, &d);  // created for 64 tokens: grows once
  EXPECT_NE(d.find("\"scratch_grows\":1"), std::string::npos) << d;
  EXPECT_NE(d.find("\"scratch_tokens\":100"), std::string::npos) << d;
  EXPECT_NE(d.find("\"shared_expert\":true"), std::string::npos) << d;
  EXPECT_NE(d.find("\"isa\":\""), std::string::npos) << d;
}

TEST(cpu_backend, refuses_bad_ids_and_unsupported_weights) {
  ASSERT_NE(cpu_api(), nullptr);
  moe_fixture fx("qwen3_moe");
  block_weights bw(fx);
  moereg_backend* b = nullptr;
  ASSERT_EQ(take(cpu_api()->create(&bw.w, &fx.routing, nullptr, &b)), "");
  std::vector<float> x(64, 0.5f), out(64), w = {1.0f, 0.0f};
  std::vector<std::int32_t> ids = {3, 8};
  moereg_tensor_view xv = make_view(x.data(), MOEREG_DTYPE_F32, {1, 64});
  moereg_tensor_view iv = make_view(ids.data(), MOEREG_DTYPE_I32, {1, 2});
  moereg_tensor_view wv = make_view(w.data(), MOEREG_DTYPE_F32, {1, 2});
  moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {1, 64});
  EXPECT_EQ(take(cpu_api()->forward(b, &xv, &iv, &wv, &ov)), "1: topk_ids[0, 1] = 8, expected 0..7");
  moereg_tensor_view bad = make_view(x.data(), MOEREG_DTYPE_F32, {1, 32});
  EXPECT_EQ(take(cpu_api()->forward(b, &bad, &iv, &wv, &ov)), "1: x: expected shape [1, 64], found [1, 32]");
  cpu_api()->destroy(b);
  moereg_moe_weights fp8 = bw.w;
  fp8.w13.dtype = MOEREG_DTYPE_F8_E4M3;
  b = nullptr;
  EXPECT_EQ(take(cpu_api()->create(&fp8, &fx.routing, nullptr, &b)), "1: w13_scale: required with F8_E4M3 w13");
  moereg_moe_weights e5m2 = bw.w;
  e5m2.w2.dtype = MOEREG_DTYPE_F8_E5M2;
  EXPECT_EQ(take(cpu_api()->create(&e5m2, &fx.routing, nullptr, &b)),
            "2: w2: dtype F8_E5M2 is not supported by the cpu backend (expected BF16, F32 or F8_E4M3 with block scales)");
  EXPECT_EQ(b, nullptr);
  cpu_api()->destroy(nullptr);
}

// MOEREG_CPU_PANEL_ROWS=1: bf16 weights widened into f32 panels per K pass (the path FP8
// takes) on every kernel set, also with K passes shorter than the fixtures' H and I.
TEST(cpu_backend, weight_panel_path_matches_reference) {
  ASSERT_NE(cpu_api(), nullptr);
  ::setenv("MOEREG_CPU_PANEL_ROWS", "1", 1);
  for (const char* kb : {"1024", "16"}) {
    SCOPED_TRACE(std::string("MOEREG_CPU_KBLOCK=") + kb);
    ::setenv("MOEREG_CPU_KBLOCK", kb, 1);
    for_each_isa([] {
      for (const auto& fam : test::moe_fixture_families()) {
        SCOPED_TRACE(fam);
        moe_fixture fx(fam);
        block_weights bw(fx);
        std::string d;
        EXPECT_LE(relative_error(fx, bw, 33, {false, false, 2}, &d), 1e-5);
        EXPECT_NE(d.find("\"panel_min_rows\":1"), std::string::npos) << d;
        EXPECT_LE(relative_error(fx, bw, 9, {true, false, 2}), 1e-2);
      }
    });
  }
  ::unsetenv("MOEREG_CPU_KBLOCK");
  ::unsetenv("MOEREG_CPU_PANEL_ROWS");
}

// The AMX path: the portable model of the matrix unit everywhere, the real unit where the CPU
// has one. Every expert with a token runs on the unit; T = 1100 gives experts more tokens than
// one work item takes (256), K passes of 32 and 64 cut the fixtures' H, I = 24 leaves half a
// weight tile and a zero-padded K step, 3 threads share the items, and the weight tiles are
// read from the tile-ordered copy, through panels and in place.
TEST(cpu_backend, matrix_unit_path_matches_reference) {
  ASSERT_NE(cpu_api(), nullptr);
  char reason[128] = {};
  cpu_api()->probe(reason, sizeof reason);
  const bool has_amx = std::string(reason).find("AMX") != std::string::npos;
  ::setenv("MOEREG_CPU_UNIT_ROWS", "1", 1);
  for (const char* isa : {"amx_emulated", "amx"}) {
    if (std::string(isa) == "amx" && !has_amx) continue;
    SCOPED_TRACE(std::string("MOEREG_CPU_ISA=") + isa);
    ::setenv("MOEREG_CPU_ISA", isa, 1);
    for (const char* kb : {"1024", "20", "64"}) {
      SCOPED_TRACE(std::string("MOEREG_CPU_KBLOCK=") + kb);
      ::setenv("MOEREG_CPU_KBLOCK", kb, 1);
      // Weight tiles from the tile-ordered copy made at create, copied into panels per pass,
      // and read in place.
      const bool tiles = kb[0] == '2';
      const char* panels = kb[0] == '1' ? "1" : "0";
      SCOPED_TRACE(std::string("MOEREG_CPU_UNIT_PANELS=") + panels + (tiles ? " MOEREG_CPU_UNIT_TILE_WEIGHTS=1" : ""));
      ::setenv("MOEREG_CPU_UNIT_PANELS", panels, 1);
      ::setenv("MOEREG_CPU_UNIT_TILE_WEIGHTS", tiles ? "1" : "0", 1);
      for (const auto& fam : test::moe_fixture_families()) {
        SCOPED_TRACE(fam);
        moe_fixture fx(fam);
        block_weights bw(fx);
        for (std::int64_t T : {1, 37, 1100}) {
          std::string d;
          double e = relative_error(fx, bw, T, {true, false, 3}, &d);
          EXPECT_LE(e, 1e-2) << "T=" << T;
          EXPECT_GT(e, 1e-6) << "T=" << T;
          EXPECT_NE(d.find(std::string("\"matrix_unit\":\"") + isa + "\""), std::string::npos) << d;
          EXPECT_EQ(d.find("\"tile_weight_bytes\"") != std::string::npos, tiles) << d;
        }
        // F32 input keeps f32 math: the unit (bf16 only) stays out of it; also after a bf16
        // forward on the same handle, whose experts all ran on the unit.
        EXPECT_LE(relative_error(fx, bw, 37, {false, false, 2}), 1e-5);
        EXPECT_LE(relative_error(fx, bw, 37, {true, false, 2, true}), 1e-2);
      }
    }
  }
  ::unsetenv("MOEREG_CPU_KBLOCK");
  ::unsetenv("MOEREG_CPU_ISA");
  ::unsetenv("MOEREG_CPU_UNIT_ROWS");
  ::unsetenv("MOEREG_CPU_UNIT_PANELS");
  ::unsetenv("MOEREG_CPU_UNIT_TILE_WEIGHTS");
}
