// SPDX-License-Identifier: Apache-2.0
// `moereg moe run` on GGUF experts as llama.cpp's quantizer writes them
// (../shared/fixtures/gguf_llamacpp: qwen3_moe Q8_0 and Q4_0 files, whose down projections
// stay F16 because I = 24 is no whole number of 32-value blocks). The cpu backend reads the
// ggml blocks where they lie and decodes them per K pass into its tiles; the result must agree
// with running the same layer after `convert --dtype bf16` (core's ggml decoder, each weight
// rounded once to bf16), on every kernel set this machine runs and on the emulated AMX unit.
// The bound: relative L2 <= 5e-3 with F32 input (the reference's weights are rounded to bf16,
// ~2^-9 each) and <= 1e-2 with BF16 input (bf16 intermediate too).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "moe_run_support.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build compiles this file with others.
namespace test_moe_run_gguf {
namespace {

constexpr std::int64_t H = 64;

}  // namespace

TEST(MoeRunGguf, LlamaCppQuantizedExpertsMatchTheBf16DequantizedLayerOnEveryIsa) {
  for (const char* file : {"qwen3_moe-q8_0.gguf", "qwen3_moe-q4_0.gguf"}) {
    SCOPED_TRACE(file);
    const std::string gguf = test::fixture(std::string("gguf_llamacpp/") + file);
    const std::string blocks = std::string(file).find("q8_0") != std::string::npos ? "Q8_0" : "Q4_0";
    test::temp_dir d;
    auto conv = test::run_moereg("convert " + gguf + " " + (d / "bf16") + " --to hf --dtype bf16");
    ASSERT_EQ(conv.exit_code, 0) << conv.output;
    for (bool bf16 : {false, true}) {
      const std::int64_t T = bf16 ? 1 : 19;
      const std::string in = d / (bf16 ? "in_b.safetensors" : "in_f.safetensors");
      test::write_random_input(in, T, H, bf16, 9);
      test::moe_run_output b = test::moe_run_cpu(d / "bf16", in, d / "out_bf16.safetensors", "");
      for (const char* isa : {"", "avx2", "scalar", "amx_emulated"}) {
        SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + " input, isa=" + isa);
        std::string opts = std::string("--backend-option isa=") + isa;
        if (std::string(isa) == "amx_emulated") opts += " --backend-option unit_min_rows=1";
        test::moe_run_output q = test::moe_run_cpu(gguf, in, d / "out_q.safetensors", opts);
        EXPECT_NE(q.log.find("w13 packed " + blocks + ", w2 mapped F16 (layout gguf, ggml blocks read as stored)"), std::string::npos)
            << q.log;
        ASSERT_EQ(q.out.size(), static_cast<std::size_t>(T * H));
        ASSERT_EQ(b.out.size(), q.out.size());
        EXPECT_EQ(q.ids, b.ids);  // the router is F32 in both: same experts
        EXPECT_LE(test::rel_l2(q.out, b.out), bf16 ? 1e-2 : 5e-3);
      }
    }
  }
}

}  // namespace test_moe_run_gguf
