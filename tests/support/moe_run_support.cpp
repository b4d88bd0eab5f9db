// SPDX-License-Identifier: Apache-2.0
#include "moe_run_support.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/tensor/dtype.h"
#include "test_support.h"

namespace moereg::test {

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

moe_run_output moe_run_cpu(const std::string& ckpt, const std::string& in, const std::string& out_path,
                           const std::string& extra) {
  auto r = run_moereg("moe run " + ckpt + " --layer 1 --input " + in + " --output " + out_path + " --backend cpu " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  moe_run_output o;
  o.log = r.output;
  if (r.exit_code != 0) return o;
  safetensors_file f(out_path);
  const tensor_info* t = f.find("output");
  const tensor_info* ids = f.find("topk_ids");
  EXPECT_TRUE(t && ids) << out_path << ": no output or topk_ids tensor";
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

}  // namespace moereg::test
