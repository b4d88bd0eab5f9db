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

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/dtype.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build compiles this file with others.
namespace test_moe_run_gguf {
namespace {

constexpr std::int64_t H = 64;

void write_input(const std::string& path, std::int64_t T, bool bf16, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(T * H));
  for (auto& v : x) v = normal(rng);
  safetensors_writer w(path, {{"input", bf16 ? dtype::BF16 : dtype::F32, {T, H}}}, {});
  if (bf16) {
    std::vector<std::uint16_t> b(x.size());
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(x[i]);
    w.write(0, 0, b.data(), b.size() * 2);
  } else {
    w.write(0, 0, x.data(), x.size() * 4);
  }
  w.commit();
}

struct run_output {
  std::vector<float> out;
  std::vector<std::int64_t> ids;
  std::string log;
};

run_output moe_run(const std::string& ckpt, const std::string& in, const std::string& out_path, const std::string& extra) {
  auto r = test::run_moereg("moe run " + ckpt + " --layer 1 --input " + in + " --output " + out_path + " --backend cpu " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  run_output o;
  o.log = r.output;
  if (r.exit_code != 0) return o;
  safetensors_file f(out_path);
  const tensor_info* t = f.find("output");
  const tensor_info* ids = f.find("topk_ids");
  if (!t || !ids) return o;
  const float* p = reinterpret_cast<const float*>(f.data(*t));
  o.out.assign(p, p + t->numel());
  const std::int64_t* q = reinterpret_cast<const std::int64_t*>(f.data(*ids));
  o.ids.assign(q, q + ids->numel());
  return o;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : INFINITY;
}

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
      write_input(in, T, bf16, 9);
      run_output b = moe_run(d / "bf16", in, d / "out_bf16.safetensors", "");
      for (const char* isa : {"", "avx2", "scalar", "amx_emulated"}) {
        SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + " input, isa=" + isa);
        std::string opts = std::string("--backend-option isa=") + isa;
        if (std::string(isa) == "amx_emulated") opts += " --backend-option unit_min_rows=1";
        run_output q = moe_run(gguf, in, d / "out_q.safetensors", opts);
        EXPECT_NE(q.log.find("w13 packed " + blocks + ", w2 mapped F16 (layout gguf, ggml blocks read as stored)"), std::string::npos)
            << q.log;
        ASSERT_EQ(q.out.size(), static_cast<std::size_t>(T * H));
        ASSERT_EQ(b.out.size(), q.out.size());
        EXPECT_EQ(q.ids, b.ids);  // the router is F32 in both: same experts
        EXPECT_LE(rel_l2(q.out, b.out), bf16 ? 1e-2 : 5e-3);
      }
    }
  }
}

}  // namespace test_moe_run_gguf
