// SPDX-License-Identifier: Apache-2.0
// Reading what llama.cpp itself writes (../shared/fixtures/gguf_llamacpp: its converter's bf16
// files and its quantizer's Q8_0 / Q4_0 files) through the moereg command line: the config
// made from the metadata, bf16 files back to hf equal to the fixture, quantized files decoded
// to safetensors with --dtype, mixed expert types per tensor, errors naming ggml types.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/gguf/ggml_dequant.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/tensor/dtype.h"
#include "test_support.h"

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_llamacpp_files {
namespace {

std::string llamacpp_file(const std::string& name) { return fixture("gguf_llamacpp/" + name); }

// A ggml tensor of `f` decoded to float32 (moereg's decoding; tests/integration/test_llamacpp.cpp
// checks it bit for bit against ggml's own).
std::vector<float> decoded(const gguf_file& f, const std::string& name) {
  const gguf_tensor* t = f.find_tensor(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  std::int64_t n = 1;
  for (std::uint64_t d : t->ne) n *= static_cast<std::int64_t>(d);
  std::vector<float> out(static_cast<std::size_t>(n));
  ggml_dequantize(t->type, f.data(*t), out.data(), n);
  return out;
}

// The values of a safetensors tensor as float32.
std::vector<float> values(const checkpoint& c, const std::string& name) {
  const checkpoint::entry* e = c.find(name);
  EXPECT_NE(e, nullptr) << name;
  if (!e) return {};
  std::vector<float> out(e->info->numel());
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (e->info->type == dtype::F32) {
      std::memcpy(&out[i], e->data() + 4 * i, 4);
    } else {
      std::uint16_t h;
      std::memcpy(&h, e->data() + 2 * i, 2);
      out[i] = bf16_to_f32(h);
    }
  }
  return out;
}

TEST(GgufFromLlamaCpp, ConfigFromMetadataHasVocabSizeAndNormTopkProb) {
  temp_dir d;
  // llama.cpp's converter writes no vocab_size without a tokenizer and no expert_weights_norm
  // for qwen3moe (its qwen3moe always renormalizes; transformers' default is false).
  command_result r = run_moereg("convert " + llamacpp_file("qwen3_moe.gguf") + " " + (d / "hf") + " --to hf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value c = json::parse_file(d / "hf/config.json");
  ASSERT_NE(c.find_path("vocab_size"), nullptr);
  EXPECT_EQ(c.find_path("vocab_size")->as_int(), 128);
  ASSERT_NE(c.find_path("norm_topk_prob"), nullptr);
  EXPECT_TRUE(c.find_path("norm_topk_prob")->as_bool());
  // deepseek2 without the key: llama.cpp's default, false.
  r = run_moereg("convert " + llamacpp_file("mixtral.gguf") + " " + (d / "mixtral") + " --to hf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json::parse_file(d / "mixtral/config.json").find_path("vocab_size")->as_int(), 128);
}

// llama.cpp's bf16 conversions, each read back equal to its fixture's hf/.
const char* const bf16_files[] = {"qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3"};
// Its quantized files, decoded with --dtype (lossy: compared with ggml's own decoding below).
const char* const quantized_files[] = {"qwen3_moe-q8_0", "qwen3_moe-q4_0"};

TEST(GgufFromLlamaCpp, Bf16FilesEqualTheFixtureThroughVerify) {
  // Norms and routers F32 in the file, narrowed back exactly to the model's bf16; deepseek2's
  // attn_k_b / attn_v_b joined back into kv_b_proj (config from the metadata: *_mla keys).
  for (const char* f : bf16_files) {
    command_result r = run_moereg("verify " + llamacpp_file(std::string(f) + ".gguf") + " " + fixture(std::string(f) + "/hf"));
    EXPECT_EQ(r.exit_code, 0) << f << "\n" << r.output;
  }
}

TEST(GgufFromLlamaCpp, EveryFileOfTheFolderIsCovered) {
  // A file added to ../shared/fixtures/gguf_llamacpp must join one of the lists above.
  std::vector<std::string> known;
  for (const char* f : bf16_files) known.push_back(std::string(f) + ".gguf");
  for (const char* f : quantized_files) known.push_back(std::string(f) + ".gguf");
  int seen = 0;
  for (const auto& e : std::filesystem::directory_iterator(fixture("gguf_llamacpp"))) {
    if (e.path().extension() != ".gguf") continue;
    ++seen;
    EXPECT_NE(std::find(known.begin(), known.end(), e.path().filename().string()), known.end())
        << e.path() << " is read by no test";
  }
  EXPECT_EQ(seen, static_cast<int>(known.size()));
}

TEST(GgufFromLlamaCpp, DeepseekSplitAttentionConvertsToHfBitExact) {
  // convert (not only verify): the joined kv_b_proj written whole, config.json from metadata
  // with the per-head lengths of the *_mla keys, not the MQA ones.
  for (const char* f : {"deepseek_v2", "deepseek_v3"}) {
    SCOPED_TRACE(f);
    temp_dir d;
    command_result r = run_moereg("convert " + llamacpp_file(std::string(f) + ".gguf") + " " + (d / "hf") + " --to hf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_moereg("verify " + (d / "hf") + " " + fixture(std::string(f) + "/hf"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    json::value c = json::parse_file(d / "hf/config.json"), ref = json::parse_file(fixture(std::string(f) + "/hf/config.json"));
    for (const char* k : {"qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "kv_lora_rank", "num_attention_heads"}) {
      ASSERT_NE(c.find_path(k), nullptr) << k;
      EXPECT_EQ(c.find_path(k)->as_int(), ref.find_path(k)->as_int()) << k;
    }
  }
}

TEST(GgufFromLlamaCpp, DeepseekSplitAttentionDecodesWithDtype) {
  // --dtype f32: the transposed attn_k_b rows are gathered before decoding, so the joined
  // kv_b_proj holds the bf16 values widened exactly.
  temp_dir d;
  command_result r = run_moereg("convert " + llamacpp_file("deepseek_v3.gguf") + " " + (d / "hf") + " --to hf --dtype f32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  checkpoint out = checkpoint::open(d / "hf"), ref = checkpoint::open(fixture("deepseek_v3/hf"));
  for (const char* name : {"model.layers.0.self_attn.kv_b_proj.weight", "model.layers.2.self_attn.kv_b_proj.weight"}) {
    std::vector<float> a = values(out, name), b = values(ref, name);
    ASSERT_EQ(a.size(), b.size()) << name;
    EXPECT_EQ(out.find(name)->info->type, dtype::F32);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), 4 * a.size()), 0) << name;
  }
}

TEST(GgufFromLlamaCpp, QuantizedFileWithoutDtypeIsRefusedNamingTheGgmlType) {
  temp_dir d;
  command_result r = run_moereg("convert " + llamacpp_file("qwen3_moe-q8_0.gguf") + " " + (d / "hf") + " --to hf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("blk.0.ffn_gate_exps.weight holds Q8_0 blocks, which only a .gguf can hold (layout 'hf' writes "
                          "safetensors, 8 output tensors from it; --dtype bf16 or f32 decodes them)"),
            std::string::npos)
      << r.output;
  // One line per stored tensor: 2 layers x (gate, up) Q8_0 experts, 4 Q8_0 attention matrices
  // per layer, the embedding and the output (down stays F16, which safetensors holds).
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1 + 2 * 2 + 2 * 4 + 2) << r.output;
  EXPECT_EQ(r.output.find(" U8"), std::string::npos) << "an internal dtype name leaked: " << r.output;
}

// Every value of the safetensors output is the source's ggml decoding, written as F32, or as
// BF16 rounded once from it.
void expect_decoded(const std::string& gguf_name, const std::string& dtype_flag) {
  SCOPED_TRACE(gguf_name + " --dtype " + dtype_flag);
  temp_dir d;
  command_result r =
      run_moereg("convert " + llamacpp_file(gguf_name) + " " + (d / "hf") + " --to hf --dtype " + dtype_flag);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  gguf_file src(llamacpp_file(gguf_name));
  checkpoint out = checkpoint::open(d / "hf");
  const bool bf16 = dtype_flag == "bf16";
  auto expect_rows = [&](const std::vector<float>& from, std::size_t first, const std::string& name) {
    std::vector<float> got = values(out, name);
    ASSERT_FALSE(got.empty()) << name;
    const checkpoint::entry* e = out.find(name);
    EXPECT_EQ(e->info->type, bf16 ? dtype::BF16 : dtype::F32) << name;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const float want = bf16 ? bf16_to_f32(f32_to_bf16(from[first + i])) : from[first + i];
      if (std::memcmp(&want, &got[i], 4) != 0) {
        ADD_FAILURE() << name << " element " << i << ": " << got[i] << ", expected " << want;
        return;
      }
    }
  };
  // Q8_0 / Q4_0 attention, and a layer's experts: gate and up quantized, down left F16.
  expect_rows(decoded(src, "blk.0.attn_q.weight"), 0, "model.layers.0.self_attn.q_proj.weight");
  const std::size_t I = 24, H = 64;
  for (std::size_t x : {0u, 5u}) {
    expect_rows(decoded(src, "blk.1.ffn_gate_exps.weight"), x * I * H, "model.layers.1.mlp.experts." + std::to_string(x) + ".gate_proj.weight");
    expect_rows(decoded(src, "blk.1.ffn_up_exps.weight"), x * I * H, "model.layers.1.mlp.experts." + std::to_string(x) + ".up_proj.weight");
    expect_rows(decoded(src, "blk.1.ffn_down_exps.weight"), x * I * H, "model.layers.1.mlp.experts." + std::to_string(x) + ".down_proj.weight");
  }
}

TEST(GgufFromLlamaCpp, QuantizedFilesDecodeToBf16AndF32) {
  for (const char* f : {"qwen3_moe-q8_0.gguf", "qwen3_moe-q4_0.gguf"})
    for (const char* t : {"f32", "bf16"}) expect_decoded(f, t);
}

TEST(GgufFromLlamaCpp, DecodedQ8_0IsCloseToTheBf16Original) {
  // A layout error (gate and up swapped, experts out of order) is far above Q8_0's error.
  temp_dir d;
  command_result r = run_moereg("convert " + llamacpp_file("qwen3_moe-q8_0.gguf") + " " + (d / "hf") + " --to hf --dtype f32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  checkpoint out = checkpoint::open(d / "hf"), ref = checkpoint::open(fixture("qwen3_moe/hf"));
  int compared = 0;
  for (const auto& e : ref.tensors()) {
    std::vector<float> a = values(ref, e.info->name), b = values(out, e.info->name);
    ASSERT_EQ(a.size(), b.size()) << e.info->name;
    float max_ref = 0, max_diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(a[i]));
      max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
    }
    EXPECT_LE(max_diff, 0.01f * max_ref) << e.info->name;
    ++compared;
  }
  EXPECT_EQ(compared, 69);
}

TEST(GgufFromLlamaCpp, MixedExpertTypesPassThroughPerTensor) {
  // Q8_0 gate/up beside F16 down in one layer: a .gguf written from it keeps each tensor's type.
  temp_dir d;
  command_result r = run_moereg("convert " + llamacpp_file("qwen3_moe-q8_0.gguf") + " " + (d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  gguf_file src(llamacpp_file("qwen3_moe-q8_0.gguf")), out(d / "g/model.gguf");
  for (const char* name : {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_down_exps.weight", "blk.0.attn_q.weight"}) {
    const gguf_tensor *a = src.find_tensor(name), *b = out.find_tensor(name);
    ASSERT_TRUE(a && b) << name;
    EXPECT_EQ(a->type, b->type) << name;
    ASSERT_EQ(a->nbytes, b->nbytes) << name;
    EXPECT_EQ(std::memcmp(src.data(*a), out.data(*b), a->nbytes), 0) << name;
  }
  EXPECT_EQ(src.find_tensor("blk.1.ffn_gate_exps.weight")->type, ggml_type::Q8_0);
  EXPECT_EQ(src.find_tensor("blk.1.ffn_down_exps.weight")->type, ggml_type::F16);
}

// A NaN block scale decoded to a block of NaN weights in a complete-looking checkpoint (exit 0).
TEST(GgufFromLlamaCpp, ANonFiniteBlockScaleIsRefusedWhenDecoding) {
  temp_dir d;
  const std::string src = llamacpp_file("qwen3_moe-q8_0.gguf"), bad = d / "bad.gguf";
  std::filesystem::copy_file(src, bad);
  std::uint64_t at = 0;
  std::string name;
  {
    gguf_file f(src);
    for (const auto& t : f.tensors())
      if (t.type == ggml_type::Q8_0) {
        at = f.data_offset() + t.offset;  // its first block's f16 scale d
        name = t.name;
        break;
      }
  }
  ASSERT_FALSE(name.empty()) << "the fixture has Q8_0 tensors";
  std::string bytes = read_bytes(bad);
  bytes[at] = 0x00;
  bytes[at + 1] = 0x7e;  // f16 NaN
  write_bytes(bad, bytes);
  command_result r = run_moereg("convert " + bad + " " + (d / "out") + " --to hf --dtype bf16");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, bad + ": " + name + ": decoded element [0, 0] is NaN")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "out"));
}

}  // namespace
}  // namespace test_gguf_llamacpp_files
}  // namespace moereg::test
