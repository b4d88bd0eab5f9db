// `moereg moe run` on FP8 experts (deepseek_v3_fp8 fixture, layer 1): the CPU backend reads
// the F8_E4M3 bytes and their 128x128 block scales as stored and dequantizes on the fly. It
// must agree with running the same layer after `convert --dtype bf16` (experts dequantized
// once by core/quant, value x scale rounded to bf16), which shares none of the backend's
// FP8 code. The fixture has no moe_block.safetensors: the input is random.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "test_support.h"

using namespace moereg;

namespace {

void write_random_input(const std::string& path, std::int64_t T, std::int64_t H, bool bf16, unsigned seed) {
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

run_output moe_run(const std::string& ckpt, const std::string& in, const std::string& out_path) {
  auto r = test::run_moereg("moe run " + ckpt + " --layer 1 --input " + in + " --output " + out_path + " --backend cpu");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  run_output o;
  o.log = r.output;
  if (r.exit_code != 0) return o;
  safetensors_file f(out_path);
  const tensor_info* t = f.find("output");
  const tensor_info* ids = f.find("topk_ids");
  EXPECT_TRUE(t && ids);
  if (!t || !ids) return o;
  const float* p = reinterpret_cast<const float*>(f.data(*t));
  o.out.assign(p, p + t->numel());
  const std::int64_t* q = reinterpret_cast<const std::int64_t*>(f.data(*ids));
  o.ids.assign(q, q + ids->numel());
  return o;
}

}  // namespace

TEST(MoeRunFp8, Fp8ExpertsMatchTheBf16DequantizedLayer) {
  test::temp_dir d;
  const std::string fp8 = test::fixture("deepseek_v3_fp8/hf");
  auto conv = test::run_moereg("convert " + fp8 + " " + (d / "bf16") + " --to hf --dtype bf16");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  {
    safetensors_file check(d / "bf16/model.safetensors");
    const tensor_info* e = check.find("model.layers.1.mlp.experts.0.gate_proj.weight");
    ASSERT_TRUE(e);
    ASSERT_EQ(e->type, dtype::BF16);  // the reference really is dequantized
  }
  const std::int64_t H = 256;
  for (std::int64_t T : {std::int64_t{37}, std::int64_t{1}})
    for (bool bf16 : {false, true}) {
      SCOPED_TRACE("T=" + std::to_string(T) + (bf16 ? " bf16" : " f32"));
      const std::string in = d / ("in" + std::to_string(T) + (bf16 ? "b" : "f") + ".safetensors");
      write_random_input(in, T, H, bf16, 7 + static_cast<unsigned>(T));
      run_output q = moe_run(fp8, in, d / "out_fp8.safetensors");
      run_output b = moe_run(d / "bf16", in, d / "out_bf16.safetensors");
      EXPECT_NE(q.log.find("FP8 with 128x128 block scales"), std::string::npos) << q.log;
      EXPECT_EQ(b.log.find("FP8"), std::string::npos) << b.log;
      ASSERT_EQ(q.out.size(), static_cast<std::size_t>(T * H));
      ASSERT_EQ(b.out.size(), q.out.size());
      EXPECT_EQ(q.ids, b.ids);  // the router is not quantized: same experts
      double num = 0, den = 0;
      for (std::size_t i = 0; i < q.out.size(); ++i) {
        num += (double(q.out[i]) - b.out[i]) * (double(q.out[i]) - b.out[i]);
        den += double(b.out[i]) * b.out[i];
      }
      ASSERT_GT(den, 0);
      EXPECT_LE(std::sqrt(num / den), 1e-2);
    }
}
