// SPDX-License-Identifier: Apache-2.0
// The cpu backend's options at create: applied as given, a bad key or value refused by name,
// and the copies of the experts that create makes (the matrix unit's tile-ordered copy,
// quantize=) bounded by the memory they may take (copy_memory_limit).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_cpu_block.h"

using namespace moereg;
using test::block_weights;
using test::clear_option;
using test::cpu_api;
using test::describe;
using test::moe_fixture;
using test::relative_error;
using test::set_option;
using test::take;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cpu_backend_options {

namespace {

// A layer of the fixture's block made with exactly these options (not the test-wide ones); the
// error, "" on success.
std::string create_with(const moe_fixture& fx, const block_weights& bw, std::vector<moereg_backend_option> kv,
                        moereg_backend** b) {
  return take(cpu_api()->create_with_options(&bw.w, &fx.routing, nullptr, kv.data(), kv.size(), b));
}

}  // namespace

// Backend options (API 2): applied as given, an unknown key or a bad value refused by name,
// with nothing created.
TEST(cpu_backend, options_are_applied_and_checked_by_name) {
  ASSERT_NE(cpu_api(), nullptr);
  moe_fixture fx("qwen3_moe");
  block_weights bw(fx);
  auto create = [&](std::vector<moereg_backend_option> kv, moereg_backend** b) { return create_with(fx, bw, kv, b); };
  moereg_backend* b = nullptr;
  ASSERT_EQ(create({{"k_block", "96"}, {"isa", "scalar"}, {"k_block", "48"}}, &b), "");
  const std::string d = describe(b);
  EXPECT_NE(d.find("\"k_block\":48"), std::string::npos) << d;  // the later one wins
  EXPECT_NE(d.find("\"isa\":\"scalar\""), std::string::npos) << d;
  cpu_api()->destroy(b);
  b = nullptr;
  EXPECT_EQ(create({{"kblock", "4"}}, &b),
            "1: backend option 'kblock' is not a cpu backend option (it takes isa, k_block, unit_k_block, unit_prefetch, stream_y, "
            "unit_panels, tile_weights, copy_memory_limit, unit_min_rows, panel_min_rows, phases, quantize, quantize_group, "
            "int_dot, numa, pool_spin_us)");
  EXPECT_EQ(create({{"k_block", "0"}}, &b), "1: backend option k_block=0: expected an integer in 1..1073741824");
  EXPECT_EQ(create({{"isa", "sse2"}}, &b),
            "1: backend option isa=sse2: expected amx, avx512bf16, avx512f, avx_vnni, avx2, scalar or amx_emulated");
  EXPECT_EQ(create({{"phases", "maybe"}}, &b), "1: backend option phases=maybe: expected 0 or 1 (or true/false, on/off)");
  EXPECT_EQ(create({{"copy_memory_limit", "-1"}}, &b),
            "1: backend option copy_memory_limit=-1: expected an integer in 0..4611686018427387904");
  EXPECT_EQ(b, nullptr);
}

// The matrix unit's tile-ordered copy (tile_weights) is made only where it fits the memory it
// may take (copy_memory_limit, by default MemAvailable less an eighth: the copy is overcommitted
// anonymous memory, so a copy larger than memory would get the process killed while written):
// past it the layer reads the weights in place, computes the same, and describe says why.
TEST(cpu_backend, tile_copy_is_made_only_where_it_fits_its_memory) {
  ASSERT_NE(cpu_api(), nullptr);
  set_option("isa", "amx_emulated");
  set_option("tile_weights", "1");
  moe_fixture fx("qwen3_moe");
  block_weights bw(fx);
  std::string d;
  set_option("copy_memory_limit", "1");
  EXPECT_LE(relative_error(fx, bw, 37, {true, false, 2}, &d), 1e-2);
  EXPECT_EQ(d.find("\"tile_weight_bytes\""), std::string::npos) << d;
  EXPECT_NE(d.find("\"weights\":\"read in place"), std::string::npos) << d;
  EXPECT_NE(d.find("\"tile_weights_skipped\":\"the tile-ordered copy needs "), std::string::npos) << d;
  EXPECT_NE(d.find(" bytes and backend option copy_memory_limit allows 1\""), std::string::npos) << d;
  EXPECT_NE(d.find("\"unit_min_rows\":2"), std::string::npos) << d;  // the in-place defaults
  EXPECT_NE(d.find("\"unit_k_block\":1024"), std::string::npos) << d;
  set_option("copy_memory_limit", "1000000000");
  EXPECT_LE(relative_error(fx, bw, 37, {true, false, 2}, &d), 1e-2);
  EXPECT_NE(d.find("\"tile_weight_bytes\""), std::string::npos) << d;
  EXPECT_EQ(d.find("tile_weights_skipped"), std::string::npos) << d;
  EXPECT_NE(d.find("\"unit_k_block\":256"), std::string::npos) << d;
  clear_option("copy_memory_limit");  // the default: this small layer fits any host's memory
  EXPECT_LE(relative_error(fx, bw, 37, {true, false, 2}, &d), 1e-2);
  EXPECT_NE(d.find("\"tile_weight_bytes\""), std::string::npos) << d;
  clear_option("tile_weights");
  clear_option("isa");
}

// quantize= makes a copy too, which the caller asked for: past copy_memory_limit it is refused
// by name (not quantized silently otherwise), nothing created.
TEST(cpu_backend, quantized_copy_past_its_memory_is_refused) {
  ASSERT_NE(cpu_api(), nullptr);
  moe_fixture fx("qwen3_moe");
  block_weights bw(fx);
  auto create = [&](std::vector<moereg_backend_option> kv, moereg_backend** b) { return create_with(fx, bw, kv, b); };
  moereg_backend* b = nullptr;
  const std::string err = create({{"quantize", "int8"}, {"copy_memory_limit", "1000"}}, &b);
  EXPECT_EQ(b, nullptr);
  EXPECT_EQ(err.rfind("2: backend option quantize: the quantized copy of the experts needs ", 0), 0u) << err;
  EXPECT_NE(err.find(" bytes and backend option copy_memory_limit allows 1000 "), std::string::npos) << err;
  ASSERT_EQ(create({{"quantize", "int8"}, {"copy_memory_limit", "1000000000"}}, &b), "");
  EXPECT_NE(describe(b).find("\"quantize\":\"int8\""), std::string::npos) << describe(b);
  cpu_api()->destroy(b);
}

}  // namespace test_cpu_backend_options
