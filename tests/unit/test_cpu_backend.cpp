// SPDX-License-Identifier: Apache-2.0
// The cpu backend library, loaded from the build tree with dlopen as any host would, run on
// every fixture's MoE block (routing from moereg::router) for several T, both input dtypes,
// bf16 and f32 weights, every kernel set this machine runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <string>
#include <vector>

#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "test_cpu_block.h"

using namespace moereg;
using test::cpu_api;
using test::describe;
using test::for_each_isa;
using test::make_view;
using test::moe_fixture;
using test::take;
using test::set_option;
using test::clear_option;
using test::create_with_test_options;
using test::block_weights;
using test::relative_error;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cpu_backend {

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

namespace {
// The first fixture's MoE block with T rows of its input (its rows repeated as needed), routed
// by its router: what the option tests below create backends on and run.
struct routed_block {
  moe_fixture fx{test::moe_fixture_families().front()};
  block_weights bw{fx};
  std::int64_t H, T;
  routing_result r;
  std::vector<float> x;

  explicit routed_block(std::int64_t tokens) : H(bw.w.hidden), T(tokens), x(static_cast<std::size_t>(tokens * H)) {
    const std::vector<float> in = test::tensor_f32(*fx.io, "input");
    const std::int64_t rows = static_cast<std::int64_t>(in.size()) / H;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < H; ++h) x[static_cast<std::size_t>(t * H + h)] = in[static_cast<std::size_t>((t % rows) * H + h)];
    router(fx.routing, fx.family).route(make_view(x.data(), MOEREG_DTYPE_F32, {T, H}), r);
  }
  // A backend on `threads` threads, created with the test option key=value (cleared after);
  // the creation's error text ("" on success) in `error`.
  moereg_backend* create(const char* key, const char* value, int threads, std::string& error) {
    set_option(key, value);
    moereg_backend_options opts{};
    opts.threads = threads;
    moereg_backend* b = nullptr;
    error = take(create_with_test_options(&bw.w, &fx.routing, &opts, &b));
    clear_option(key);
    return b;
  }
  // One forward of `input` (x, or x as bf16) into out; the error text, "" on success.
  std::string forward(moereg_backend* b, const void* input, std::int32_t dtype, std::vector<float>& out) {
    const moereg_tensor_view xv = make_view(input, dtype, {T, H});
    const moereg_tensor_view ids = make_view(r.ids.data(), MOEREG_DTYPE_I64, {T, r.top_k});
    const moereg_tensor_view wts = make_view(r.weights.data(), MOEREG_DTYPE_F32, {T, r.top_k});
    out.assign(x.size(), NAN);
    moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {T, H});
    return take(cpu_api()->forward(b, &xv, &ids, &wts, &ov));
  }
};
}  // namespace

// The pool's threads poll for a while between runs and then sleep (cpu_thread_pool.cpp): forwards
// back to back start on polling threads, forwards after a pause on sleeping ones. Either way every
// item runs once: each of 48 forwards with pauses of 0 to 2 ms between them gives the first
// forward's output bit for bit (a lost or doubled item would not), on 4 threads; with the
// default polling and with pool_spin_us=0 (always sleeping).
TEST(cpu_backend, forwards_after_any_pause_compute_the_same) {
  ASSERT_NE(cpu_api(), nullptr);
  routed_block blk(7);
  for (const char* spin : {"100", "0"}) {  // the default, and sleeping at once (pool_spin_us=0)
    SCOPED_TRACE(std::string("pool_spin_us=") + spin);
    std::string error;
    moereg_backend* b = blk.create("pool_spin_us", spin, 4, error);
    ASSERT_EQ(error, "");
    ASSERT_NE(b, nullptr);
    EXPECT_NE(describe(b).find(std::string("\"pool_spin_us\":") + spin + ","), std::string::npos) << describe(b);
    std::vector<float> first, out;
    ASSERT_EQ(blk.forward(b, blk.x.data(), MOEREG_DTYPE_F32, first), "");
    ASSERT_TRUE(std::all_of(first.begin(), first.end(), [](float v) { return std::isfinite(v); }));
    ASSERT_TRUE(std::any_of(first.begin(), first.end(), [](float v) { return v != 0.0f; }));
    const int pauses_us[] = {0, 20, 60, 150, 400, 2000};
    for (int i = 0; i < 48; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(pauses_us[i % 6]));
      ASSERT_EQ(blk.forward(b, blk.x.data(), MOEREG_DTYPE_F32, out), "");
      EXPECT_EQ(std::memcmp(out.data(), first.data(), out.size() * sizeof(float)), 0)
          << "forward " << i << " after a " << pauses_us[i % 6] << " us pause";
    }
    cpu_api()->destroy(b);
  }
}

// stream_y (on by default) writes the down tiles' whole lines of y with streaming stores on
// the AMX units; off, with normal stores. The values are the same either way: bf16 input (the
// unit's path where the CPU has AMX), T = 33 (full and partial token tiles), outputs bit for bit,
// and describe says which was asked for.
TEST(cpu_backend, stream_y_on_and_off_compute_the_same) {
  ASSERT_NE(cpu_api(), nullptr);
  routed_block blk(33);
  std::vector<std::uint16_t> xb(blk.x.size());
  for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = f32_to_bf16(blk.x[i]);
  std::vector<float> outs[2];
  for (int on = 0; on < 2; ++on) {
    SCOPED_TRACE(on ? "stream_y=1" : "stream_y=0");
    std::string error;
    moereg_backend* b = blk.create("stream_y", on ? "1" : "0", 3, error);
    ASSERT_EQ(error, "");
    ASSERT_NE(b, nullptr);
    EXPECT_NE(describe(b).find(on ? "\"stream_y\":true" : "\"stream_y\":false"), std::string::npos) << describe(b);
    ASSERT_EQ(blk.forward(b, xb.data(), MOEREG_DTYPE_BF16, outs[on]), "");
    cpu_api()->destroy(b);
    ASSERT_TRUE(std::all_of(outs[on].begin(), outs[on].end(), [](float v) { return std::isfinite(v); }));
  }
  EXPECT_EQ(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)), 0);
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

// k_block below the fixtures' H and I: gate/up and down sums run in several K
// passes (with a ragged last pass) whenever an expert has more rows than one tile.
TEST(cpu_backend, k_blocked_passes_match_reference) {
  ASSERT_NE(cpu_api(), nullptr);
  for (const char* kb : {"16", "40"}) {
    SCOPED_TRACE(std::string("k_block=") + kb);
    set_option("k_block", kb);
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
  clear_option("k_block");
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

// panel_min_rows=1: bf16 weights widened into f32 panels per K pass (the path FP8
// takes) on every kernel set, also with K passes shorter than the fixtures' H and I.
TEST(cpu_backend, weight_panel_path_matches_reference) {
  ASSERT_NE(cpu_api(), nullptr);
  set_option("panel_min_rows", "1");
  for (const char* kb : {"1024", "16"}) {
    SCOPED_TRACE(std::string("k_block=") + kb);
    set_option("k_block", kb);
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
  clear_option("k_block");
  clear_option("panel_min_rows");
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
  set_option("unit_min_rows", "1");
  for (const char* isa : {"amx_emulated", "amx"}) {
    if (std::string(isa) == "amx" && !has_amx) continue;
    SCOPED_TRACE(std::string("isa=") + isa);
    set_option("isa", isa);
    for (const char* kb : {"1024", "20", "64"}) {
      SCOPED_TRACE(std::string("k_block=unit_k_block=") + kb);
      set_option("k_block", kb);
      set_option("unit_k_block", kb);  // the tile-ordered copy's passes (256 by default)
      // Weight tiles from the tile-ordered copy made at create, copied into panels per pass,
      // and read in place.
      const bool tiles = kb[0] == '2';
      const char* panels = kb[0] == '1' ? "1" : "0";
      SCOPED_TRACE(std::string("unit_panels=") + panels + (tiles ? " tile_weights=1" : ""));
      set_option("unit_panels", panels);
      set_option("tile_weights", tiles ? "1" : "0");
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
          EXPECT_EQ(d.find("\"tile_weight_huge_page_bytes\"") != std::string::npos, tiles) << d;
          EXPECT_NE(d.find(std::string("\"unit_k_block\":") + kb), std::string::npos) << d;
        }
        // F32 input keeps f32 math: the unit (bf16 only) stays out of it; also after a bf16
        // forward on the same handle, whose experts all ran on the unit.
        EXPECT_LE(relative_error(fx, bw, 37, {false, false, 2}), 1e-5);
        EXPECT_LE(relative_error(fx, bw, 37, {true, false, 2, true}), 1e-2);
      }
    }
  }
  clear_option("k_block");
  clear_option("unit_k_block");
  clear_option("isa");
  clear_option("unit_min_rows");
  clear_option("unit_panels");
  clear_option("tile_weights");
}

// Online quantization at create (quantize=int8|int4): the fixtures' bf16 experts become
// codes with a scale per row (int8) or per group of inputs (int4), read through every kernel
// set and the emulated unit. Stated accuracy against the fixture's float32 reference
// (max |out - ref| / max |ref|, F32 input): int8 per row <= 2e-2; int4 in groups of 32 <= 0.3
// (measured 0.11-0.23 on these layers of 24-96 inputs per row). describe reports the codes' bytes.
TEST(cpu_backend, online_quantization_within_stated_bounds) {
  ASSERT_NE(cpu_api(), nullptr);
  for_each_isa([] {
    for (const auto& fam : test::moe_fixture_families()) {
      SCOPED_TRACE(fam);
      moe_fixture fx(fam);
      block_weights bw(fx);
      const std::int64_t E = bw.w.num_experts, H = bw.w.hidden, I = bw.w.intermediate;
      std::string d;
      set_option("quantize", "int8");
      const double e8 = relative_error(fx, bw, 33, {false, false, 2}, &d);
      EXPECT_LE(e8, 2e-2);
      EXPECT_GT(e8, 1e-5);  // really quantized
      EXPECT_NE(d.find("\"quantize\":\"int8\""), std::string::npos) << d;
      EXPECT_NE(d.find("\"w13_dtype\":\"int8\""), std::string::npos) << d;
      EXPECT_NE(d.find("\"weight_bytes\":" + std::to_string(E * 3 * I * H)), std::string::npos) << d;
      EXPECT_LE(relative_error(fx, bw, 9, {true, false, 2}), 3e-2);  // bf16 input: its own rounding on top
      set_option("quantize", "int4");
      set_option("quantize_group", "32");
      const double e4 = relative_error(fx, bw, 33, {false, false, 2}, &d);
      EXPECT_LE(e4, 0.3);
      EXPECT_GT(e4, e8);
      EXPECT_NE(d.find("\"weight_bytes\":" + std::to_string(E * 3 * I * H / 2)), std::string::npos) << d;
      clear_option("quantize_group");
      clear_option("quantize");
    }
  });
}

TEST(cpu_backend, online_quantization_refuses_quantized_experts) {
  ASSERT_NE(cpu_api(), nullptr);
  moe_fixture fx("qwen3_moe");
  block_weights bw(fx);
  std::vector<std::uint8_t> codes13(static_cast<std::size_t>(bw.w.num_experts * 2 * bw.w.intermediate * bw.w.hidden));
  std::vector<std::uint8_t> codes2(static_cast<std::size_t>(bw.w.num_experts * bw.w.hidden * bw.w.intermediate));
  moereg_moe_weights w = bw.w;
  w.w13 = make_view(codes13.data(), MOEREG_DTYPE_F8_E4M3, {w.num_experts, 2 * w.intermediate, w.hidden});
  w.w2 = make_view(codes2.data(), MOEREG_DTYPE_F8_E4M3, {w.num_experts, w.hidden, w.intermediate});
  std::vector<float> s13(static_cast<std::size_t>(w.num_experts * 2), 1.0f), s2(static_cast<std::size_t>(w.num_experts), 1.0f);
  w.w13_scale = make_view(s13.data(), MOEREG_DTYPE_F32, {w.num_experts, 2, 1});
  w.w2_scale = make_view(s2.data(), MOEREG_DTYPE_F32, {w.num_experts, 1, 1});
  w.scale_block[0] = 1 << 20;
  w.scale_block[1] = 1 << 20;
  moereg_backend_option kv[] = {{"quantize", "int8"}};
  moereg_backend* b = nullptr;
  EXPECT_EQ(take(cpu_api()->create_with_options(&w, &fx.routing, nullptr, kv, 1, &b)),
            "1: backend option quantize=int8: the experts are already quantized (F8_E4M3); it quantizes BF16 or F32 experts");
  EXPECT_EQ(b, nullptr);
}

// NUMA placement with an injected topology (numa=0;1: two nodes of one CPU each, on any
// machine): experts split in proportion to each node's threads, each node's threads taking
// their own experts' items first, the copies (online-quantized codes here) written by the
// expert's node. Results are those of one node; numa=off and a one-node topology change
// nothing; a malformed topology is refused by name.
TEST(cpu_backend, numa_partition_with_an_injected_topology) {
  ASSERT_NE(cpu_api(), nullptr);
  for (const auto& fam : test::moe_fixture_families()) {
    SCOPED_TRACE(fam);
    moe_fixture fx(fam);
    block_weights bw(fx);
    const std::int64_t E = bw.w.num_experts;
    std::string d;
    set_option("numa", "0;1");
    EXPECT_LE(relative_error(fx, bw, 33, {false, false, 2}, &d), 1e-5);
    EXPECT_NE(d.find("\"numa_nodes\":2,\"experts_per_node\":[" + std::to_string(E / 2) + "," + std::to_string(E - E / 2) +
                     "],\"thread_nodes\":[0,1]"),
              std::string::npos)
        << d;
    EXPECT_LE(relative_error(fx, bw, 70, {true, false, 2}), 1e-2);
    set_option("numa", "0-3;4-7;8");  // three nodes, four threads: 2, 1, 1 threads
    EXPECT_LE(relative_error(fx, bw, 33, {false, false, 4}, &d), 1e-5);
    EXPECT_NE(d.find("\"thread_nodes\":[0,1,2,0]"), std::string::npos) << d;
    set_option("quantize", "int8");
    set_option("numa", "0;1");
    const double numa_q = relative_error(fx, bw, 33, {false, false, 2});
    set_option("numa", "off");
    EXPECT_EQ(relative_error(fx, bw, 33, {false, false, 2}, &d), numa_q);  // same codes, same sums
    EXPECT_NE(d.find("\"numa_nodes\":1"), std::string::npos) << d;
    clear_option("quantize");
    set_option("numa", "0-1");
    relative_error(fx, bw, 5, {false, false, 2}, &d);
    EXPECT_NE(d.find("\"numa_nodes\":1,"), std::string::npos) << d;
    clear_option("numa");
  }
  moe_fixture fx("qwen3_moe");
  block_weights bw(fx);
  moereg_backend_option kv[] = {{"numa", "0-3;x"}};
  moereg_backend* b = nullptr;
  EXPECT_EQ(take(cpu_api()->create_with_options(&bw.w, &fx.routing, nullptr, kv, 1, &b)),
            "1: backend option numa=0-3;x: 'x' is not a CPU number or range (expected e.g. 0-3,8)");
  EXPECT_EQ(b, nullptr);
}

}  // namespace test_cpu_backend
