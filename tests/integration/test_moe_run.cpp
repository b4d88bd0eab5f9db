// SPDX-License-Identifier: Apache-2.0
// `moereg moe run` reproduces each fixture's MoE block output from its checkpoint, in any
// stored layout, with both input dtypes and token counts that fill no block.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <set>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "quant_support.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_moe_run {
namespace {

struct fixture_case {
  const char* family;
  const char* dir;  // hf or hub
};

int moe_layer_of(const std::string& family) {
  json::value f = json::parse_file(test::fixture(family + "/fixture.json"));
  std::string block = f.find("moe_block")->as_string();  // model.layers.1.mlp
  std::string s = block.substr(0, block.rfind('.'));
  return std::stoi(s.substr(s.rfind('.') + 1));
}

// Write the first T rows of the fixture input as F32 or BF16.
void write_input(const std::string& path, const safetensors_file& ref, std::int64_t T, bool bf16) {
  const tensor_info* in = ref.find("input");
  std::int64_t H = in->shape[1];
  const float* x = reinterpret_cast<const float*>(ref.data(*in));
  safetensors_writer w(path, {{"input", bf16 ? dtype::BF16 : dtype::F32, {T, H}}}, {});
  if (bf16) {
    std::vector<std::uint16_t> b(static_cast<std::size_t>(T * H));
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(x[i]);
    w.write(0, 0, b.data(), b.size() * 2);
  } else {
    w.write(0, 0, x, static_cast<std::uint64_t>(T * H) * 4);
  }
  w.commit();
}

}  // namespace

TEST(MoeRun, ReproducesEveryFixtureMoeBlock) {
  for (auto [family, dir] : {fixture_case{"qwen3_moe", "hf"}, fixture_case{"qwen3_vl_moe", "hf"}, fixture_case{"qwen3_vl_moe", "hub"},
                             fixture_case{"qwen3_5_moe", "hf"}, fixture_case{"qwen3_5_moe", "hub"}, fixture_case{"mixtral", "hf"},
                             fixture_case{"deepseek_v2", "hf"}, fixture_case{"deepseek_v3", "hf"}}) {
    std::string fam = family;
    safetensors_file ref(test::fixture(fam + "/moe_block.safetensors"));
    const tensor_info* out_ref = ref.find("output");
    const tensor_info* ids_ref = ref.find("topk_ids");
    const std::int64_t T_all = out_ref->shape[0], H = out_ref->shape[1], K = ids_ref->shape[1];
    for (std::int64_t T : {T_all, std::int64_t{7}, std::int64_t{1}})
      for (bool bf16 : {false, true}) {
        SCOPED_TRACE(fam + "/" + dir + " T=" + std::to_string(T) + (bf16 ? " bf16" : " f32"));
        test::temp_dir d;
        write_input(d / "in.safetensors", ref, T, bf16);
        auto r = test::run_moereg("moe run " + test::fixture(fam + "/" + dir) + " --layer " + std::to_string(moe_layer_of(fam)) +
                                  " --input " + (d / "in.safetensors") + " --output " + (d / "out.safetensors") + " --backend cpu");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_NE(r.output.find("backend cpu"), std::string::npos) << r.output;
        // The backend's own account of create (kernels, any copy of the experts) is logged.
        EXPECT_NE(r.output.find("moe run: backend cpu: {\"backend\":\"cpu\""), std::string::npos) << r.output;
        safetensors_file got(d / "out.safetensors");
        const tensor_info* o = got.find("output");
        const tensor_info* ids = got.find("topk_ids");
        ASSERT_TRUE(o && ids && got.find("topk_weights"));
        ASSERT_EQ(o->shape, (std::vector<std::int64_t>{T, H}));
        ASSERT_EQ(ids->type, dtype::I64);
        const float* a = reinterpret_cast<const float*>(got.data(*o));
        const float* b = reinterpret_cast<const float*>(ref.data(*out_ref));
        double num = 0, den = 0, max_diff = 0, max_ref = 0;
        for (std::int64_t i = 0; i < T * H; ++i) {
          num += (a[i] - b[i]) * double(a[i] - b[i]);
          den += double(b[i]) * b[i];
          max_diff = std::max(max_diff, std::abs(double(a[i]) - b[i]));
          max_ref = std::max(max_ref, std::abs(double(b[i])));
        }
        EXPECT_LE(std::sqrt(num / den), 1e-2);
        if (!bf16) {
          EXPECT_LE(max_diff, 1e-5 * max_ref) << "float32 math must match to the fixture tolerance";
          const auto* gi = reinterpret_cast<const std::int64_t*>(got.data(*ids));
          const auto* ri = reinterpret_cast<const std::int64_t*>(ref.data(*ids_ref));
          for (std::int64_t t = 0; t < T; ++t)
            EXPECT_EQ(std::set<std::int64_t>(gi + t * K, gi + (t + 1) * K), std::set<std::int64_t>(ri + t * K, ri + (t + 1) * K))
                << "token " << t;
        }
      }
  }
}

TEST(MoeRun, BadInputsAreClearErrors) {
  test::temp_dir d;
  safetensors_file ref(test::fixture("qwen3_moe/moe_block.safetensors"));
  write_input(d / "in.safetensors", ref, 4, false);
  auto r = test::run_moereg("moe run " + test::fixture("deepseek_v3/hf") + " --layer 0 --input " + (d / "in.safetensors") +
                            " --output " + (d / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("layer 0 is not a MoE layer of this checkpoint (its MoE layers: 1, 2)"), std::string::npos) << r.output;
  r = test::run_moereg("moe run " + test::fixture("mixtral/hf") + " --layer 1 --input " + test::fixture("qwen3_moe/hf/config.json") +
                       " --output " + (d / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  // A safetensors file without `input` says what it holds.
  r = test::run_moereg("moe run " + test::fixture("mixtral/hf") + " --layer 1 --input " + test::fixture("qwen3_moe/hf/model.safetensors") +
                       " --output " + (d / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "model.safetensors: no tensor named 'input' (expected input [T, H]); it holds lm_head.weight [")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "in all): save the activations under the name `input`")) << r.output;
  r = test::run_moereg("moe run " + test::fixture("mixtral/hf") + " --layer 1 --input " + (d / "in.safetensors") +
                       " --output " + (d / "o.safetensors") + " --backend nonesuch");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no backend named 'nonesuch'"), std::string::npos) << r.output;
  EXPECT_EQ(test::run_moereg("moe run " + test::fixture("mixtral/hf") + " --input x --output y").exit_code, 2) << "--layer is required";
  // A NaN activation routed arbitrarily and gave NaN rows with exit 0.
  {
    std::string bytes = test::read_bytes(d / "in.safetensors");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    const float nan = NAN;
    std::memcpy(bytes.data() + 8 + n + 4 * 5, &nan, 4);  // element [0, 5] of the F32 input
    test::write_bytes(d / "nan.safetensors", bytes);
    r = test::run_moereg("moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input " + (d / "nan.safetensors") +
                         " --output " + (d / "o3.safetensors"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(test::contains(r.output, "nan.safetensors: 'input': element [0, 5] is NaN, expected finite activations")) << r.output;
    EXPECT_FALSE(std::filesystem::exists(d / "o3.safetensors"));
  }
  // An expert slice keeps the whole router; its failure blamed the plugin's router shape.
  r = test::run_moereg("convert " + test::fixture("mixtral/hf") + " " + (d / "slice") + " --to hf --experts 2:4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("moe run " + (d / "slice") + " --layer 1 --input " + (d / "in.safetensors") + " --output " +
                       (d / "o2.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "an expert slice of a larger model (experts 2..3 of ")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "o2.safetensors"));
}

// DeepSeek-V2 with n_shared_experts null has no shared expert (transformers builds none);
// moe run refused it for the family's declared shared-expert tensors. One layer without the
// shared expert that another layer has is still a damaged checkpoint.
TEST(MoeRun, AModelWithoutSharedExpertsRunsAndAMissingOneIsNamed) {
  test::temp_dir d;
  checkpoint src = checkpoint::open(test::fixture("deepseek_v2/hf"));
  auto write_without = [&](const std::string& dir, const std::string& dropped) {
    std::vector<test::tiny_tensor> ts;
    for (const auto& t : src.tensors())
      if (t.info->name.find(dropped) == std::string::npos)
        ts.push_back({t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())});
    json::value cfg = json::parse(json::dump(src.config()), "config.json");
    if (dropped == ".mlp.shared_experts.") cfg.set("n_shared_experts", json::value(nullptr));
    test::write_checkpoint(dir, cfg, ts);
  };
  safetensors_file ref(test::fixture("deepseek_v2/moe_block.safetensors"));
  write_input(d / "in.safetensors", ref, 3, false);
  write_without(d / "none", ".mlp.shared_experts.");
  auto r = test::run_moereg("moe run " + (d / "none") + " --layer 1 --backend cpu --input " + (d / "in.safetensors") + " --output " +
                            (d / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(d / "o.safetensors")) << r.output;

  write_without(d / "one", "layers.2.mlp.shared_experts.");
  r = test::run_moereg("moe run " + (d / "one") + " --layer 2 --backend cpu --input " + (d / "in.safetensors") + " --output " +
                       (d / "o2.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "layer 2 has no shared expert ('model.layers.2.mlp.shared_experts.gate_proj.weight' and its up and down projections) but layer 1 has one")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "o2.safetensors"));
}

// A router of the wrong shape was blamed on the plugin's routing, naming neither file nor tensor.
TEST(MoeRun, ARouterOfTheWrongShapeIsNamedByFileAndTensor) {
  test::temp_dir d;
  checkpoint hf = checkpoint::open(test::fixture("qwen3_moe/hf"));
  const std::string router = "model.layers.1.mlp.gate.weight";
  std::vector<test::tiny_tensor> ts;
  std::vector<std::int64_t> stored;
  for (const auto& t : hf.tensors()) {
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    if (x.name == router) {
      stored = x.shape;
      x.shape = {x.shape[0] / 2, x.shape[1] * 2};  // same bytes, other shape
    }
    ts.push_back(std::move(x));
  }
  ASSERT_EQ(stored.size(), 2u);
  test::write_checkpoint(d / "ck", hf.config(), ts);
  safetensors_file ref(test::fixture("qwen3_moe/moe_block.safetensors"));
  write_input(d / "in.safetensors", ref, 4, false);
  auto r = test::run_moereg("moe run " + (d / "ck") + " --layer 1 --input " + (d / "in.safetensors") + " --output " +
                            (d / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "model.safetensors: " + router + ": shape [" + std::to_string(stored[0] / 2) + ", " +
                                           std::to_string(stored[1] * 2) + "], expected [" + std::to_string(stored[0]) + ", " +
                                           std::to_string(stored[1]) + "] (the router of layer 1"))
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "o.safetensors"));
}

// --output over what the run reads lost the checkpoint with exit status 0 (the result replaced
// model.safetensors); a new .safetensors beside the shards would be read as one next time.
TEST(MoeRun, OutputOverTheInputOrTheCheckpointIsRefused) {
  test::temp_dir d;
  const std::string ck = d / "ck";
  std::filesystem::copy(test::fixture("qwen3_moe/hf"), ck, std::filesystem::copy_options::recursive);
  safetensors_file ref(test::fixture("qwen3_moe/moe_block.safetensors"));
  write_input(d / "in.safetensors", ref, 4, false);
  const std::string shard = test::read_bytes(ck + "/model.safetensors"), input = test::read_bytes(d / "in.safetensors");
  const std::string run = "moe run " + ck + " --layer 1 --backend cpu --input " + (d / "in.safetensors") + " --output ";
  struct bad_output {
    std::string path, says;
  };
  for (const auto& [path, says] : {bad_output{ck + "/model.safetensors", "a file of the checkpoint"},
                                   bad_output{ck + "/config.json", "a file of the checkpoint"},
                                   bad_output{d / "in.safetensors", "is the input file"},
                                   bad_output{ck + "/result.safetensors", "inside the checkpoint directory"},
                                   // "cannot rename into place: Is a directory" once the work was done
                                   bad_output{d.path(), "is a directory; expected the path of the .safetensors file"},
                                   bad_output{d / "new/", "is a directory; expected the path of the .safetensors file"}}) {
    auto r = test::run_moereg(run + path);
    EXPECT_NE(r.exit_code, 0) << path << "\n" << r.output;
    EXPECT_TRUE(test::contains(r.output, says)) << r.output;
  }
  EXPECT_EQ(test::read_bytes(ck + "/model.safetensors"), shard);
  EXPECT_EQ(test::read_bytes(d / "in.safetensors"), input);
  EXPECT_FALSE(std::filesystem::exists(ck + "/result.safetensors"));
  auto r = test::run_moereg(run + (d / "out.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("verify " + ck + " " + test::fixture("qwen3_moe/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// `moereg moe bench` on the tiny preset: one row per token count, timed, and (where a python
// with torch is found, as in CI: python3-torch) the PyTorch eager loop on the same weights
// agrees with the backend to bf16 rounding.
// The JSON summary within the command's output (stdout and stderr arrive together here).
json::value json_of(const std::string& output) {
  return json::parse(output.substr(output.find('{'), output.rfind('}') - output.find('{') + 1), "moe bench --json");
}

// Whether a python with torch is found as moe bench looks for one (python3, then /usr/bin/python3).
bool have_torch() {
  return std::system("python3 -c 'import torch' >/dev/null 2>&1") == 0 ||
         std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

// PyTorch is not a moereg dependency: without it the benchmark says, before timing
// anything, how to get it and how to run without it.
TEST(MoeBench, MissingPyTorchSaysHowToGetIt) {
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1 --min-seconds 0.01 --backend cpu --python /bin/false");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--python /bin/false: cannot import torch"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("apt-get install python3-torch"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("scripts/install-test-deps.sh"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--no-reference"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("weights written"), std::string::npos) << "PyTorch is checked before any work\n" << r.output;
}

TEST(MoeBench, TinyPresetRowsAndReference) {
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1,5 --min-seconds 0.01 --backend cpu --json --no-reference --log-level off");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json_of(r.output);
  const auto& rows = v.find("rows")->as_array();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].find("tokens")->as_int(), 1);
  EXPECT_EQ(rows[1].find("tokens")->as_int(), 5);
  for (const auto& row : rows) EXPECT_GT(row.find("seconds")->as_double(), 0.0);
  EXPECT_GT(v.find("read_bandwidth_bytes_per_second")->as_double(), 0.0);
  // Which build ran: the file the registry loaded the backend from.
  const std::string lib = v.find("backend_library")->as_string();
  EXPECT_NE(lib.find("libmoereg_backend_cpu"), std::string::npos) << lib;

#if defined(__SANITIZE_ADDRESS__)
  // The reference half times PyTorch, not moereg's memory use: the Release run checks it.
  GTEST_SKIP() << "sanitizer build: the PyTorch reference half runs in the Release build";
#endif
  if (!have_torch()) GTEST_SKIP() << "no python with torch here: the reference half is not checked";
  r = test::run_moereg("moe bench --preset tiny --tokens 3 --min-seconds 0.01 --backend cpu --json --log-level off");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  v = json_of(r.output);
  const auto& row = v.find("rows")->as_array().at(0);
  EXPECT_GT(row.find("reference_seconds")->as_double(), 0.0);
  EXPECT_LE(row.find("max_rel_diff_vs_reference")->as_double(), 2e-2);
  EXPECT_FALSE(v.find("torch")->as_string().empty());
  EXPECT_GE(row.find("reference_runs")->as_int(), 3);

  // A reference row estimated over --reference-max-seconds is skipped, saying why; the
  // backend's own row is still timed.
  r = test::run_moereg("moe bench --preset tiny --tokens 3 --min-seconds 0.01 --backend cpu --reference-max-seconds 1e-9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("T=3: no reference, estimated"), std::string::npos) << r.output;
  r = test::run_moereg("moe bench --preset tiny --tokens 3 --min-seconds 0.01 --backend cpu --json --log-level off "
                       "--reference-max-seconds 1e-9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  v = json_of(r.output);
  const auto& skipped = v.find("rows")->as_array().at(0);
  EXPECT_TRUE(skipped.find("reference_seconds")->is_null());
  EXPECT_NE(skipped.find("reference_skipped")->as_string().find("over the 1e-09 s limit"), std::string::npos)
      << skipped.find("reference_skipped")->as_string();
  EXPECT_GT(skipped.find("seconds")->as_double(), 0.0);

  EXPECT_EQ(test::run_moereg("moe bench --preset nosuch").exit_code, 2);
}

// moe bench with the cpu backend's online quantization (--backend-option quantize=int4):
// each row counts the bytes the backend reads, from its describe (codes and scales), not bf16.
TEST(MoeBench, QuantizedExpertsCountTheBytesTheyRead) {
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1 --min-seconds 0.01 --backend cpu --json --no-reference "
                            "--log-level off --backend-option quantize=int4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json_of(r.output);
  EXPECT_EQ(v.find("backend_describe")->find("quantize")->as_string(), "int4");
  // tiny: H = 256, I = 128, shared Is = 128 (bf16), T = 1 with K = 2 hits two experts; int4 in
  // groups of 128: codes 3 I H / 2 bytes and (2 I ceil(H/128) + H ceil(I/128)) F32 scales.
  const double expert = 3.0 * 128 * 256 / 2 + (2.0 * 128 * 2 + 256 * 1) * 4, shared = 3.0 * 128 * 256 * 2;
  EXPECT_DOUBLE_EQ(v.find("rows")->as_array().at(0).find("weight_bytes")->as_double(), 2 * expert + shared);
}

// moe bench --weights f8_e4m3: the experts go to the backend as E4M3 bytes with 128x128 block
// scales (rows count those bytes), PyTorch runs the same experts dequantized to bf16, and the
// two agree to bf16 rounding (a backend or a bench that dequantized differently would not).
TEST(MoeBench, Fp8WeightsRunAsStoredAgainstTheirDequantizedReference) {
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1 --min-seconds 0.01 --backend cpu --json --no-reference "
                            "--log-level off --weights f8_e4m3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json_of(r.output);
  EXPECT_EQ(v.find("backend_describe")->find("w13_dtype")->as_string(), "f8_e4m3");
  // tiny: H = 256, I = 128, K = 2, shared Is = 128, in F8 too (as DeepSeek-V3 ships it). Per
  // expert 3 I H bytes and (2 ceil(I/128) ceil(H/128) + ceil(H/128) ceil(I/128)) = 6 F32 scales.
  const double expert = 3.0 * 128 * 256 + 6 * 4, shared = expert;
  EXPECT_EQ(v.find("backend_describe")->find("shared_w13_dtype")->as_string(), "f8_e4m3");
  EXPECT_DOUBLE_EQ(v.find("rows")->as_array().at(0).find("weight_bytes")->as_double(), 2 * expert + shared);

  r = test::run_moereg("moe bench --preset tiny --weights f8");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("weights 'f8', expected bf16 or f8_e4m3"), std::string::npos) << r.output;

#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "sanitizer build: the PyTorch reference half runs in the Release build";
#endif
  if (!have_torch()) GTEST_SKIP() << "no python with torch here: the reference half is not checked";
  r = test::run_moereg("moe bench --preset tiny --tokens 1,9 --min-seconds 0.01 --backend cpu --json --log-level off "
                       "--weights f8_e4m3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  v = json_of(r.output);
  for (const auto& row : v.find("rows")->as_array())
    EXPECT_LE(row.find("max_rel_diff_vs_reference")->as_double(), 2e-2) << row.find("tokens")->as_int();
}

// The timing cycles over inputs routed afresh until the experts they hit outgrow the
// last-level cache (or all are hit, or 16 inputs): tiny's whole layer fits any cache, so at
// T = 1 (two of eight experts per input) it takes at least four inputs, and the table marks
// the row as possibly read from the cache, and the JSON gives the share of the cycle the cache
// can hold. The read bandwidth is the best of the probe's patterns, each one reported.
TEST(MoeBench, RotatesInputsAndSaysWhenTheCacheMayServeThem) {
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1 --min-seconds 0.01 --backend cpu --json --no-reference --log-level off");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json_of(r.output);
  const json::value& row = v.find("rows")->as_array().at(0);
  EXPECT_GE(row.find("rotations")->as_int(), 4);
  EXPECT_LE(row.find("rotations")->as_int(), 16);
  const double expert = 3.0 * 128 * 256 * 2, shared = expert;  // bf16, I = Is = 128, H = 256
  EXPECT_DOUBLE_EQ(row.find("weight_bytes")->as_double(), 2 * expert + shared);
  const double hit = (row.find("cycle_bytes")->as_double() - shared) / expert;
  EXPECT_EQ(hit, std::floor(hit));
  EXPECT_GE(hit, 2);
  EXPECT_LE(hit, 8);
  double best = 0;
  std::size_t patterns = 0;
  for (const auto& [name, rate] : v.find("read_patterns_bytes_per_second")->as_object()) {
    EXPECT_GT(rate.as_double(), 0.0) << name;
    best = std::max(best, rate.as_double());
    ++patterns;
  }
  EXPECT_EQ(patterns, 5u);
  EXPECT_DOUBLE_EQ(v.find("read_bandwidth_bytes_per_second")->as_double(), best);
  const bool llc_known = v.find("last_level_cache_bytes")->as_int() > 0;
  // The share of the cycle the cache can hold (what "of bw" may exceed 100 % by): all of tiny's.
  if (llc_known) {
    const double llc = static_cast<double>(v.find("last_level_cache_bytes")->as_int());
    EXPECT_DOUBLE_EQ(row.find("cache_share_of_cycle")->as_double(), std::min(1.0, llc / row.find("cycle_bytes")->as_double()));
  } else {
    EXPECT_TRUE(row.find("cache_share_of_cycle")->is_null());
  }

  r = test::run_moereg("moe bench --preset tiny --tokens 1 --min-seconds 0.01 --backend cpu --no-reference --log-level off");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("read bandwidth is the best of: 1 stream "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("forwards cycle over inputs routed afresh (experts read per cycle): T=1 "), std::string::npos) << r.output;
  if (llc_known) {
    EXPECT_NE(r.output.find("%* "), std::string::npos) << r.output;
  }
}

// --backend auto: a backend that outscores every other one but refuses the layer (UNSUPPORTED, as a
// GPU backend does for FP8 experts) hands over to the next best; asked for by name, its
// refusal is the error.
TEST(MoeRun, AutoFallsBackWhenTheBestBackendRefusesTheLayer) {
  test::temp_dir tmp;
  const std::string dir = tmp / "vendor";
  std::filesystem::create_directories(dir);
  ::chmod(tmp.path().c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  std::filesystem::copy_file(std::string(MOEREG_ABI_LIB_DIR) + "/libmoereg_backend_abitest-fast.so",
                             dir + "/libmoereg_backend_abitest-fast.so");
  const std::string base = "moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input " +
                           test::fixture("qwen3_moe/moe_block.safetensors") + " --output " + (tmp / "out.safetensors") +
                           " --plugin-path " + dir;
  auto r = test::run_moereg(base);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("abitest refused the layer"), std::string::npos) << r.output;
  // cpu here; cuda on a GPU machine (the test backend outscores both).
  EXPECT_TRUE(r.output.find("next best: cpu") != std::string::npos || r.output.find("next best: cuda") != std::string::npos)
      << r.output;
  safetensors_file out(tmp / "out.safetensors");
  EXPECT_NE(out.find("output"), nullptr);

  r = test::run_moereg(base + " --backend abitest");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("backend abitest create: the abitest backend is a registry test fixture"), std::string::npos)
      << r.output;
}

// --backend-option key=value reaches the backend's create_with_options (plugin API 2): the cpu
// backend applies it (its describe says so) and refuses an unknown key or a bad value by
// name; a malformed option is a usage error; a version 1 backend (abitest) takes none.
TEST(MoeRun, BackendOptionsReachTheBackendAndAreCheckedByName) {
  test::temp_dir tmp;
  const std::string base = "moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input " +
                           test::fixture("qwen3_moe/moe_block.safetensors") + " --output " + (tmp / "out.safetensors") +
                           " --backend cpu --log-level info";
  auto r = test::run_moereg(base + " --backend-option k_block=16 --backend-option isa=scalar");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The backend's describe, logged by moe run.
  EXPECT_NE(r.output.find("\"k_block\":16"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"isa\":\"scalar\""), std::string::npos) << r.output;

  r = test::run_moereg(base + " --backend-option kblock=16");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("backend cpu create: backend option 'kblock' is not a cpu backend option (it takes isa, k_block"),
            std::string::npos)
      << r.output;
  r = test::run_moereg(base + " --backend-option k_block=lots");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("backend option k_block=lots: expected an integer in 1.."), std::string::npos) << r.output;
  r = test::run_moereg(base + " --backend-option k_block");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--backend-option 'k_block': expected key=value"), std::string::npos) << r.output;

  const std::string dir = tmp / "vendor";
  std::filesystem::create_directories(dir);
  ::chmod(tmp.path().c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  std::filesystem::copy_file(std::string(MOEREG_ABI_LIB_DIR) + "/libmoereg_backend_abitest-fast.so",
                             dir + "/libmoereg_backend_abitest-fast.so");
  r = test::run_moereg("moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input " +
                       test::fixture("qwen3_moe/moe_block.safetensors") + " --output " + (tmp / "out2.safetensors") +
                       " --plugin-path " + dir + " --backend abitest --backend-option k_block=16");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("backend abitest takes no backend options (--backend-option k_block=...): its table is plugin API 1"),
            std::string::npos)
      << r.output;
}

// Two benches at once in one work directory: the second's sweep keeps the first's directory.
TEST(MoeBench, TwoBenchesShareAWorkDir) {
  test::temp_dir d;
  const std::string bench = std::string(MOEREG_BUILD_DIR) + "/bin/moereg moe bench --preset tiny --backend cpu --no-reference "
                            "--log-level warn --work-dir " + d.path();
  auto r = test::run_command("sh -c '(" + bench + " --tokens 1,16 --min-seconds 1 >/dev/null 2>&1; echo first=$?) & sleep 0.5; " +
                             bench + " --tokens 1 --min-seconds 0.01 >/dev/null 2>&1; echo second=$?; wait'");
  EXPECT_NE(r.output.find("first=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("second=0"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::is_empty(d.path())) << "both removed their directories";
}

TEST(MoeBench, AWorkDirThatIsNotADirectoryIsAUsageError) {
  test::temp_dir d;
  const std::string file = d / "a-file";
  test::write_bytes(file, "x");
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1 --backend cpu --no-reference --work-dir " + file);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("moereg: --work-dir " + file + ": not a directory"), std::string::npos) << r.output;
}

// A bench killed before its cleanup leaves moereg-bench-PID in the work directory; the next
// bench removes each whose process is gone and keeps a live one's.
TEST(MoeBench, RemovesWhatAKilledBenchLeft) {
  test::temp_dir d;
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  const std::string mine = d / ("moereg-bench-" + std::string(host) + "-");
  const std::string gone = mine + "2147483646", live = mine + std::to_string(::getpid()), other = mine + "notapid",
                    other_host = d / "moereg-bench-another-host-2147483646";
  // The owner file's lock decides, not the PID (a bench of another PID namespace has a PID this
  // one cannot see): unlocked under a live PID (1), gone; locked under a PID that does not exist
  // here, alive. Without an owner file (`live`, `other`) a directory is still being made.
  const std::string unlocked = mine + "1", locked = mine + "2147483645";
  for (const auto& dir : {gone, live, other, other_host, unlocked, locked}) {
    std::filesystem::create_directories(dir);
    test::write_bytes(dir + "/weights.safetensors", "x");
  }
  test::write_bytes(unlocked + "/.owner", "");
  test::write_bytes(gone + "/.owner", "");
  const int held = ::open((locked + "/.owner").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  auto r = test::run_moereg("moe bench --preset tiny --tokens 1 --min-seconds 0.01 --backend cpu --no-reference --work-dir " +
                            d.path() + " --log-level info");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(gone)) << "nobody holds its owner lock";
  EXPECT_NE(r.output.find("removed " + gone + " (3 files), left by a bench process that is gone"), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::exists(live + "/weights.safetensors")) << "no owner file yet: being made";
  EXPECT_TRUE(std::filesystem::exists(other)) << "not a bench directory name";
  EXPECT_TRUE(std::filesystem::exists(other_host)) << "another host's bench may be running";
  EXPECT_FALSE(std::filesystem::exists(unlocked)) << "nobody holds its owner lock";
  EXPECT_TRUE(std::filesystem::exists(locked + "/weights.safetensors")) << "its owner lock is held";
  ::close(held);
}

}  // namespace test_moe_run
