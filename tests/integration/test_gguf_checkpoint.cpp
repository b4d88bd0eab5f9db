// SPDX-License-Identifier: Apache-2.0
// GGUF files as checkpoints: written by `convert --to gguf` from the fixtures, read back
// (with config.json beside them, or bare, the config made from the metadata), converted to
// transformers_v5 and hf bit-exactly; inspect and verify on .gguf; ggml blocks carried
// untouched; split files; malformed files named in one error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "conversion_support.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/gguf/gguf_tensor_file.h"
#include "moereg/gguf/gguf_writer.h"
#include "quant_support.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_checkpoint {
namespace {

const char* gguf_families[] = {"qwen3_moe", "deepseek_v2", "deepseek_v3", "mixtral"};

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 8)) & 0xFF);
  return s;
}

// A tiny qwen3moe GGUF with Q8_0 experts (block 32): E=2, H=64, I=32, 1 layer.
void write_q8_model(const std::string& path, bool with_top_k = true) {
  gguf_metadata md = {{"general.architecture", gguf_value::string("qwen3moe")},
                      {"qwen3moe.block_count", gguf_value::u32(1)},
                      {"qwen3moe.expert_count", gguf_value::u32(2)},
                      {"qwen3moe.embedding_length", gguf_value::u32(64)},
                      {"qwen3moe.expert_feed_forward_length", gguf_value::u32(32)}};
  if (with_top_k) md.emplace_back("qwen3moe.expert_used_count", gguf_value::u32(1));
  std::vector<gguf_tensor_spec> specs = {{"blk.0.ffn_gate_exps.weight", ggml_type::Q8_0, {2, 32, 64}},
                                         {"blk.0.ffn_up_exps.weight", ggml_type::Q8_0, {2, 32, 64}},
                                         {"blk.0.ffn_down_exps.weight", ggml_type::Q8_0, {2, 64, 32}},
                                         {"blk.0.ffn_gate_inp.weight", ggml_type::F32, {2, 64}}};
  gguf_writer w(path, md, specs);
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    std::string b = pattern(w.tensors()[i].nbytes, static_cast<unsigned>(i));
    w.write(i, 0, b.data(), b.size());
  }
  w.commit();
}

// llama.cpp's LlamaModel.permute, written out independently of the hook: numpy's
// w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols), i.e. output row
// (h, j, t) of shape (n_head, hd/2, 2) is input row (h, t, j) of shape (n_head, 2, hd/2).
std::string llama_cpp_permute(const std::byte* w, std::size_t rows, std::size_t row_bytes, std::size_t n_head) {
  std::string out(rows * row_bytes, '\0');
  const std::size_t hd = rows / n_head, half = hd / 2;
  for (std::size_t h = 0; h < n_head; ++h)
    for (std::size_t j = 0; j < half; ++j)
      for (std::size_t t = 0; t < 2; ++t) {
        std::size_t dst = (h * half + j) * 2 + t, src = (h * 2 + t) * half + j;
        std::memcpy(out.data() + dst * row_bytes, w + src * row_bytes, row_bytes);
      }
  return out;
}

std::string bytes_of(const std::byte* p, std::size_t n) { return std::string(reinterpret_cast<const char*>(p), n); }

}  // namespace

TEST(GgufCheckpoint, HfToGgufToTransformersV5AndBackIsBitExact) {
  for (const char* f : gguf_families) {
    SCOPED_TRACE(f);
    test::temp_dir d;
    std::string hf = test::fixture(std::string(f) + "/hf");
    auto r = test::run_moereg("convert " + hf + " " + (d / "g") + " --to gguf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(fs::exists(d / "g/model.gguf"));
    EXPECT_TRUE(fs::exists(d / "g/config.json")) << "the original config.json is written beside the .gguf";
    // The bare file: its config comes from the GGUF metadata alone.
    fs::copy_file(d / "g/model.gguf", d / "bare.gguf");
    r = test::run_moereg("convert " + (d / "bare.gguf") + " " + (d / "v5") + " --to transformers_v5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::expect_same_tensors(d / "v5/model.safetensors", test::fixture(std::string(f) + "/transformers_v5.safetensors"));
    // The directory (config.json beside model.gguf) back to the hub layout.
    r = test::run_moereg("convert " + (d / "g") + " " + (d / "hf") + " --to hf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::expect_same_tensors(d / "hf/model.safetensors", hf + "/model.safetensors");
    EXPECT_EQ(test::read_bytes(d / "hf/config.json"), test::read_bytes(hf + "/config.json"));
  }
}

// A bf16 model's F32 router (or DeepSeek's F32 selection bias) looked, in the .gguf moereg
// wrote, like llama.cpp's widening of a BF16 tensor, and came back BF16: silently when its
// values fit BF16, else refused ("not exactly representable in BF16"). The .gguf lists such
// tensors (moereg.f32_as_stored), and they come back F32, bit for bit.
TEST(GgufCheckpoint, ABf16ModelsF32RouterComesBackF32) {
  test::temp_dir d;
  checkpoint hf = checkpoint::open(test::fixture("qwen3_moe/hf"));
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : hf.tensors()) {
    test::tiny_tensor x{t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())};
    if (x.name.find(".mlp.gate.weight") != std::string::npos) {  // the router, as F32 values BF16 cannot hold
      x.type = dtype::F32;
      x.bytes.resize(t.info->numel() * 4);
      for (std::size_t i = 0; i < t.info->numel(); ++i) {
        const float v = 0.1f + 1e-4f * static_cast<float>(i % 97);
        std::memcpy(x.bytes.data() + 4 * i, &v, 4);
      }
    }
    ts.push_back(std::move(x));
  }
  test::write_checkpoint(d / "src", hf.config(), ts);
  auto r = test::run_moereg("convert " + (d / "src") + " " + (d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string& in : {d / "g", d / "g/model.gguf"}) {  // with its config.json, and alone
    fs::remove_all(d / "back");
    r = test::run_moereg("convert " + in + " " + (d / "back") + " --to hf");
    ASSERT_EQ(r.exit_code, 0) << in << "\n" << r.output;
    r = test::run_moereg("verify " + (d / "src") + " " + (d / "back"));
    EXPECT_EQ(r.exit_code, 0) << in << "\n" << r.output;
  }
}

// A qwen3_moe model with dense layers (mlp_only_layers) made a .gguf whose metadata cannot say
// so: it read back only with its config.json, and alone failed as "no layout matches". Writing
// it warns, saying why.
TEST(GgufCheckpoint, DenseLayersTheMetadataCannotCarryAreWarnedAbout) {
  test::temp_dir d;
  checkpoint hf = checkpoint::open(test::fixture("qwen3_moe/hf"));
  std::vector<test::tiny_tensor> ts;
  for (const auto& t : hf.tensors()) {
    if (t.info->name.rfind("model.layers.0.mlp.", 0) == 0) continue;  // layer 0: experts and router out
    ts.push_back({t.info->name, t.info->type, t.info->shape, std::vector<std::byte>(t.data(), t.data() + t.info->nbytes())});
  }
  const std::int64_t H = 64, I = 96;
  for (const auto& [proj, shape] : std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
           {"gate", {I, H}}, {"up", {I, H}}, {"down", {H, I}}})
    ts.push_back({"model.layers.0.mlp." + proj + "_proj.weight", dtype::BF16, shape, std::vector<std::byte>(static_cast<std::size_t>(H * I * 2))});
  json::value cfg = json::parse(json::dump(hf.config()), "config.json");
  cfg.set("mlp_only_layers", json::value(json::array{json::value(0)}));
  test::write_checkpoint(d / "src", cfg, ts);
  auto r = test::run_moereg("convert " + (d / "src") + " " + (d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "its dense layers (config.json mlp_only_layers) are not recorded in the .gguf's metadata")) << r.output;
  r = test::run_moereg("convert " + (d / "g") + " " + (d / "back") + " --to hf");  // with its config.json
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("verify " + (d / "src") + " " + (d / "back"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // A model without dense layers says nothing of the kind.
  r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "g2") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(test::contains(r.output, "dense layers")) << r.output;
}

TEST(GgufCheckpoint, WrittenFileHasLlamaCppNamesShapesAndMetadata) {
  test::temp_dir d;
  test::convert(test::fixture("qwen3_moe/hf"), d / "g", "gguf");
  gguf_file g(d / "g/model.gguf");
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.get_string("general.architecture"), "qwen3moe");
  EXPECT_EQ(g.get_uint("qwen3moe.expert_count"), 8u);
  EXPECT_EQ(g.get_uint("qwen3moe.expert_used_count"), 2u);
  EXPECT_EQ(g.get_uint("qwen3moe.embedding_length"), 64u);
  EXPECT_EQ(g.get_uint("qwen3moe.expert_feed_forward_length"), 24u);
  EXPECT_EQ(g.get_uint("qwen3moe.feed_forward_length"), 96u);
  EXPECT_EQ(g.get_uint("qwen3moe.block_count"), 2u);
  EXPECT_EQ(g.get_uint("qwen3moe.context_length"), 64u);
  EXPECT_EQ(g.get_uint("qwen3moe.attention.head_count"), 4u);
  EXPECT_EQ(g.get_uint("qwen3moe.attention.head_count_kv"), 2u);
  EXPECT_EQ(g.get_uint("qwen3moe.attention.key_length"), 16u);
  EXPECT_EQ(g.find("qwen3moe.rope.freq_base")->type(), gguf_type::f32);
  EXPECT_FLOAT_EQ(static_cast<float>(*g.get_float("qwen3moe.rope.freq_base")), 10000.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(*g.get_float("qwen3moe.attention.layer_norm_rms_epsilon")), 1e-6f);
  const gguf_tensor* gate = g.find_tensor("blk.1.ffn_gate_exps.weight");
  const gguf_tensor* down = g.find_tensor("blk.1.ffn_down_exps.weight");
  ASSERT_TRUE(gate && down);
  EXPECT_EQ(gate->ne, (std::vector<std::uint64_t>{64, 24, 8}));  // {H, I, E}
  EXPECT_EQ(down->ne, (std::vector<std::uint64_t>{24, 64, 8}));  // {I, H, E}
  EXPECT_EQ(gate->type, ggml_type::BF16);
  for (const char* n : {"token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight",
                        "blk.0.ffn_norm.weight", "blk.0.ffn_gate_inp.weight", "blk.0.attn_k_norm.weight"})
    EXPECT_NE(g.find_tensor(n), nullptr) << n;
  // Expert 3's gate rows are the hf tensor of expert 3, bit for bit.
  checkpoint hf = checkpoint::open(test::fixture("qwen3_moe/hf"));
  const auto* e3 = hf.find("model.layers.1.mlp.experts.3.gate_proj.weight");
  ASSERT_TRUE(e3);
  EXPECT_EQ(std::memcmp(g.data(*gate) + 3 * e3->info->nbytes(), e3->data(), e3->info->nbytes()), 0);
}

TEST(GgufCheckpoint, DeepseekV3FileNamesItsGatingFunctionAndReadsBackAsV3) {
  test::temp_dir d;
  test::convert(test::fixture("deepseek_v3/hf"), d / "g", "gguf");
  gguf_file g(d / "g/model.gguf");
  EXPECT_EQ(g.get_string("general.architecture"), "deepseek2");
  EXPECT_EQ(g.get_uint("deepseek2.expert_gating_func"), 2u);
  EXPECT_EQ(g.get_uint("deepseek2.leading_dense_block_count"), 1u);
  EXPECT_FLOAT_EQ(static_cast<float>(*g.get_float("deepseek2.expert_weights_scale")), 2.5f);
  EXPECT_NE(g.find_tensor("blk.1.exp_probs_b.bias"), nullptr);
  EXPECT_NE(g.find_tensor("blk.1.ffn_gate_shexp.weight"), nullptr);
  auto r = test::run_moereg("inspect " + (d / "g/model.gguf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model_type deepseek_v3"), std::string::npos) << r.output;
  test::temp_dir d2;
  test::convert(test::fixture("deepseek_v2/hf"), d2 / "g", "gguf");
  r = test::run_moereg("inspect " + (d2 / "g/model.gguf"));
  EXPECT_NE(r.output.find("model_type deepseek_v2"), std::string::npos) << r.output;
}

TEST(GgufCheckpoint, InspectAndVerifyOpenGgufFiles) {
  test::temp_dir d;
  test::convert(test::fixture("qwen3_moe/hf"), d / "g", "gguf");
  auto r = test::run_moereg("inspect " + (d / "g/model.gguf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("family      qwen3_moe (model_type qwen3_moe), layout gguf; E=8 H=64 I=24 K=2"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("blk.{0,1}.ffn_gate_exps.weight"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[8, 24, 64]"), std::string::npos) << "PyTorch order\n" << r.output;
  r = test::run_moereg("verify " + (d / "g/model.gguf") + " " + test::fixture("qwen3_moe/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("through layouts gguf and hf"), std::string::npos) << r.output;
  // One changed expert byte is found.
  fs::copy_file(d / "g/model.gguf", d / "changed.gguf");
  {
    gguf_file g(d / "changed.gguf");
    std::uint64_t at = g.data_offset() + g.find_tensor("blk.0.ffn_up_exps.weight")->offset + 10;
    std::fstream f(d / "changed.gguf", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f.put('\x7f');
  }
  r = test::run_moereg("verify " + (d / "changed.gguf") + " " + test::fixture("qwen3_moe/hf"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST(GgufCheckpoint, MalformedGgufIsOneErrorNamingTheFile) {
  test::temp_dir d;
  test::convert(test::fixture("qwen3_moe/hf"), d / "g", "gguf");
  std::string bytes = test::read_bytes(d / "g/model.gguf");
  test::write_bytes(d / "cut.gguf", bytes.substr(0, bytes.size() - 100));
  for (const char* cmd : {"inspect ", "convert --to transformers_v5 "}) {
    std::string args = std::string(cmd) + (d / "cut.gguf") + (std::string(cmd) == "inspect " ? "" : " " + (d / "out"));
    auto r = test::run_moereg(args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(d / "cut.gguf"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("gguf header"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("to end within the file"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(d / "out"));
  test::write_bytes(d / "junk.gguf", "GGUF\x09\0\0\0 and then nothing useful");
  auto r = test::run_moereg("inspect " + (d / "junk.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(d / "junk.gguf" + ": gguf header: version"), std::string::npos) << r.output;
}

TEST(GgufCheckpoint, QuantizedBlocksAreOpaqueBytesCarriedUntouched) {
  test::temp_dir d;
  write_q8_model(d / "q.gguf");
  checkpoint c = checkpoint::open(d / "q.gguf");
  const auto* gate = c.find("blk.0.ffn_gate_exps.weight");
  ASSERT_TRUE(gate);
  EXPECT_EQ(gate->info->type, dtype::U8);
  EXPECT_EQ(gate->info->ggml_blocks, static_cast<std::uint32_t>(ggml_type::Q8_0));
  EXPECT_EQ(gate->info->shape, (std::vector<std::int64_t>{2, 32, 64 / 32 * 34})) << "byte shape: rows of whole blocks";
  EXPECT_EQ(element_shape(*gate->info), (std::vector<std::int64_t>{2, 32, 64}));
  auto r = test::run_moereg("inspect " + (d / "q.gguf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Q8_0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("layout gguf; E=2 H=64 I=32 K=1"), std::string::npos) << r.output;
  // gguf -> gguf: every block passes through untouched, the metadata carries over.
  r = test::run_moereg("convert " + (d / "q.gguf") + " " + (d / "out") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  gguf_file a(d / "q.gguf"), b(d / "out/model.gguf");
  for (const auto& t : a.tensors()) {
    const gguf_tensor* u = b.find_tensor(t.name);
    ASSERT_TRUE(u) << t.name;
    EXPECT_EQ(u->type, t.type);
    EXPECT_EQ(u->ne, t.ne);
    EXPECT_EQ(std::memcmp(a.data(t), b.data(*u), t.nbytes), 0) << t.name;
  }
  EXPECT_EQ(b.get_uint("qwen3moe.expert_used_count"), 1u);
  // safetensors cannot hold ggml blocks: refused before anything is written.
  r = test::run_moereg("convert " + (d / "q.gguf") + " " + (d / "v5") + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("Q8_0 blocks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("only a .gguf can hold"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "v5"));
}

TEST(GgufCheckpoint, ConfigFromMetadataNeedsTopK) {
  test::temp_dir d;
  write_q8_model(d / "q.gguf", false);
  auto r = test::run_moereg("inspect " + (d / "q.gguf"));
  EXPECT_EQ(r.exit_code, 0) << "inspect still lists the tensors\n" << r.output;
  EXPECT_NE(r.output.find("no 'qwen3moe.expert_used_count'"), std::string::npos) << r.output;
  gguf_file g(d / "q.gguf");
  family_spec spec = test::source_catalog().resolve("qwen3_moe", "qwen3_moe");
  EXPECT_THROW(gguf_config(g, spec), error);
  write_q8_model(d / "k.gguf");
  json::value c = gguf_config(gguf_file(d / "k.gguf"), spec);
  EXPECT_EQ(c.find("num_experts")->as_int(), 2);
  EXPECT_EQ(c.find("hidden_size")->as_int(), 64);
  EXPECT_EQ(c.find("moe_intermediate_size")->as_int(), 32);
  EXPECT_EQ(c.find("num_experts_per_tok")->as_int(), 1);
  EXPECT_EQ(c.find("num_hidden_layers")->as_int(), 1);
  EXPECT_EQ(c.find("model_type")->as_string(), "qwen3_moe");
}

TEST(GgufCheckpoint, SplitFilesOpenFromTheFirstPart) {
  test::temp_dir d;
  test::convert(test::fixture("qwen3_moe/hf"), d / "g", "gguf");
  gguf_file whole(d / "g/model.gguf");
  // Two parts: the metadata in the first, the tensors shared out.
  std::vector<std::string> parts = {d / "m-00001-of-00002.gguf", d / "m-00002-of-00002.gguf"};
  for (int p = 0; p < 2; ++p) {
    std::vector<gguf_tensor_spec> specs;
    std::vector<const gguf_tensor*> src;
    for (std::size_t i = static_cast<std::size_t>(p); i < whole.tensors().size(); i += 2) {
      const auto& t = whole.tensors()[i];
      specs.push_back({t.name, t.type, t.shape});
      src.push_back(&t);
    }
    gguf_writer w(parts[static_cast<std::size_t>(p)], p == 0 ? whole.metadata() : gguf_metadata{}, specs);
    for (std::size_t i = 0; i < src.size(); ++i) w.write(i, 0, whole.data(*src[i]), src[i]->nbytes);
    w.commit();
  }
  checkpoint c = checkpoint::open(parts[0]);
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_EQ(c.tensors().size(), whole.tensors().size());
  auto r = test::run_moereg("verify " + parts[0] + " " + test::fixture("qwen3_moe/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THROW(checkpoint::open(parts[1]), error) << "a later part names part 1";
  fs::remove(parts[1]);
  try {
    checkpoint::open(parts[0]);
    ADD_FAILURE() << "a missing part is an error";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("m-00002-of-00002.gguf is missing"), std::string::npos) << e.what();
  }
}

TEST(GgufCheckpoint, PluginGgufSectionIsChecked) {
  YAML::Node root = YAML::LoadFile(test::source_catalog().find("qwen3_moe")->path);
  root.remove("gguf");
  family_catalog none;
  auto errors = none.check({"qwen3_moe", "p.yaml", root}).problems;
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("layout 'gguf' writes a .gguf (container: gguf), so the plugin needs a 'gguf' section"),
            std::string::npos)
      << errors[0];
  root["gguf"] = YAML::Load(
      "{architecture: qwen3moe, metadata: [{key: a, config: x, value: 1}, {key: b, config: y, type: u7},"
      " {key: c, config: z, type: bool_array}, {key: d, config: w, default: [1]}, {key: e, product: [p, q], config: r}]}");
  errors = none.check({"qwen3_moe", "p.yaml", root}).problems;
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_NE(errors[0].find("gguf.metadata 'a' needs exactly one of 'config', 'value', 'sum' and 'product'"), std::string::npos)
      << errors[0];
  EXPECT_NE(errors[1].find("type is 'u7', expected u32"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("a bool_array entry needs 'strings'"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("default is for type i32_array"), std::string::npos) << errors[3];
  EXPECT_NE(errors[4].find("gguf.metadata 'e' needs exactly one of"), std::string::npos) << errors[4];
  // A layout's squeezes name a key and a small axis.
  root.remove("gguf");
  root["gguf"] = YAML::Load("{architecture: qwen3moe}");
  root["layouts"]["gguf"]["squeezes"] = YAML::Load("[{key: \"blk.{layer}.x.weight\", axis: -1}, {key: \"blk.{layer}.y.weight\"}]");
  errors = none.check({"qwen3_moe", "p.yaml", root}).problems;
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("axis must be an integer from 0 to 7"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("a squeeze needs 'key'"), std::string::npos) << errors[1];
}

TEST(GgufCheckpoint, MetadataThatDoesNotFitItsTypeIsAnError) {
  family_spec spec = test::source_catalog().resolve("qwen3_moe", "qwen3_moe");
  json::value cfg = json::parse(R"({"hidden_size": 64, "num_attention_heads": -4})", "cfg");
  try {
    gguf_metadata_for(spec, cfg, "cfg.json");
    ADD_FAILURE() << "a negative u32 is refused";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json: 'num_attention_heads' = -4"), std::string::npos) << e.what();
  }
  cfg = json::parse(R"({"hidden_size": 64, "rms_norm_eps": 1e-6, "norm_topk_prob": true})", "cfg");
  gguf_metadata md = gguf_metadata_for(spec, cfg, "cfg.json");
  ASSERT_EQ(md.size(), 4u) << "general.architecture and the three present fields";
  EXPECT_EQ(md[0].second.as_string(), "qwen3moe");
  EXPECT_EQ(md[1].first, "qwen3moe.embedding_length");
  EXPECT_EQ(md[1].second.type(), gguf_type::u32);
  EXPECT_EQ(md[2].second.type(), gguf_type::f32);
  EXPECT_EQ(md[3].second.type(), gguf_type::boolean);
}

TEST(GgufCheckpoint, Fp8CannotBeAGgufAndGgufNamesKeepsItInSafetensors) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture("deepseek_v3_fp8/hf") + " " + (d / "g") + " --to gguf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("(a .gguf file) is not possible"), std::string::npos) << r.output;
  // One line for every tensor of the dtype (it was one line a tensor: 33 here), with the way out.
  EXPECT_NE(r.output.find(" tensors of dtype F8_E4M3 (blk.0."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("GGUF has no such element type"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("convert with --dtype bf16"), std::string::npos) << r.output;
  EXPECT_LE(std::count(r.output.begin(), r.output.end(), '\n'), 4) << r.output;
  EXPECT_FALSE(fs::exists(d / "g"));
  // The same names in safetensors: detected as gguf_names (the files are safetensors), not gguf.
  r = test::run_moereg("convert " + test::fixture("deepseek_v3/hf") + " " + (d / "n") + " --to gguf_names");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(d / "n/model.safetensors"));
  r = test::run_moereg("inspect " + (d / "n"));
  EXPECT_NE(r.output.find("layout gguf_names"), std::string::npos) << r.output;
}

TEST(GgufCheckpoint, MixtralIsLlamaArchitectureWithAttentionRowsInLlamaCppOrder) {
  test::temp_dir d;
  test::convert(test::fixture("mixtral/hf"), d / "g", "gguf");
  gguf_file g(d / "g/model.gguf");
  checkpoint hf = checkpoint::open(test::fixture("mixtral/hf"));
  // q has num_attention_heads (4) heads, k num_key_value_heads (2): 16 rows each.
  for (int layer : {0, 1}) {
    const std::string l = std::to_string(layer);
    struct proj {
      const char* hf_name;
      const char* gguf_name;
      std::size_t heads;
    };
    for (const proj& p : {proj{"q_proj", "attn_q", 4}, proj{"k_proj", "attn_k", 2}}) {
      SCOPED_TRACE(std::string(p.gguf_name) + " layer " + l);
      const auto* src = hf.find("model.layers." + l + ".self_attn." + p.hf_name + ".weight");
      const gguf_tensor* t = g.find_tensor("blk." + l + "." + p.gguf_name + ".weight");
      ASSERT_TRUE(src && t);
      ASSERT_EQ(t->nbytes, src->info->nbytes());
      const auto rows = static_cast<std::size_t>(src->info->shape[0]), row_bytes = src->info->nbytes() / rows;
      EXPECT_EQ(bytes_of(g.data(*t), t->nbytes), llama_cpp_permute(src->data(), rows, row_bytes, p.heads));
      EXPECT_NE(bytes_of(g.data(*t), t->nbytes), bytes_of(src->data(), t->nbytes)) << "the rows really moved";
    }
    // v and o are not rotated: stored as they are.
    const auto* v = hf.find("model.layers." + l + ".self_attn.v_proj.weight");
    const gguf_tensor* gv = g.find_tensor("blk." + l + ".attn_v.weight");
    ASSERT_TRUE(v && gv);
    EXPECT_EQ(bytes_of(g.data(*gv), gv->nbytes), bytes_of(v->data(), v->info->nbytes()));
  }
  // The metadata llama.cpp's llama architecture reads for an MoE model.
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.metadata().front().first, "general.architecture");
  EXPECT_EQ(g.get_uint("llama.expert_count"), 8u);
  EXPECT_EQ(g.get_uint("llama.expert_used_count"), 2u);
  EXPECT_EQ(g.get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(g.get_uint("llama.feed_forward_length"), 24u);
  EXPECT_EQ(g.get_uint("llama.block_count"), 2u);
  EXPECT_EQ(g.get_uint("llama.context_length"), 64u);
  EXPECT_EQ(g.get_uint("llama.attention.head_count"), 4u);
  EXPECT_EQ(g.get_uint("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(g.get_uint("llama.vocab_size"), 128u);
  EXPECT_EQ(g.find("llama.expert_count")->type(), gguf_type::u32);
  EXPECT_EQ(g.find("llama.rope.freq_base")->type(), gguf_type::f32);
  EXPECT_FLOAT_EQ(static_cast<float>(*g.get_float("llama.rope.freq_base")), 1.0e6f) << "from rope_parameters.rope_theta";
  EXPECT_EQ(g.find("llama.attention.layer_norm_rms_epsilon")->type(), gguf_type::f32);
  EXPECT_FLOAT_EQ(static_cast<float>(*g.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  // head_dim is null in this config: llama.cpp then derives it (64 / 4), so nothing is written.
  EXPECT_EQ(g.find("llama.attention.key_length"), nullptr);
  EXPECT_EQ(g.find("llama.rope.dimension_count"), nullptr);
  // Names and stacking as convert_hf_to_gguf.py writes Mixtral: w1 -> gate, w3 -> up, w2 -> down.
  const gguf_tensor* gate = g.find_tensor("blk.1.ffn_gate_exps.weight");
  const gguf_tensor* up = g.find_tensor("blk.1.ffn_up_exps.weight");
  const gguf_tensor* down = g.find_tensor("blk.1.ffn_down_exps.weight");
  const gguf_tensor* router = g.find_tensor("blk.1.ffn_gate_inp.weight");
  ASSERT_TRUE(gate && up && down && router);
  EXPECT_EQ(gate->ne, (std::vector<std::uint64_t>{64, 24, 8}));
  EXPECT_EQ(down->ne, (std::vector<std::uint64_t>{24, 64, 8}));
  EXPECT_EQ(router->ne, (std::vector<std::uint64_t>{64, 8}));
  const auto* w3 = hf.find("model.layers.1.block_sparse_moe.experts.5.w3.weight");
  ASSERT_TRUE(w3);
  EXPECT_EQ(std::memcmp(g.data(*up) + 5 * w3->info->nbytes(), w3->data(), w3->info->nbytes()), 0);
  for (const char* n : {"token_embd.weight", "output_norm.weight", "output.weight", "blk.0.attn_norm.weight",
                        "blk.0.ffn_norm.weight", "blk.0.attn_output.weight"})
    EXPECT_NE(g.find_tensor(n), nullptr) << n;
  EXPECT_EQ(g.tensors().size(), 23u);
}

TEST(GgufCheckpoint, MixtralHeadDimIsWrittenAndReadBackWhenTheConfigHasIt) {
  family_spec spec = test::source_catalog().resolve("mixtral", "mixtral");
  json::value cfg = json::parse(R"({"hidden_size": 64, "num_attention_heads": 4, "head_dim": 32, "rope_theta": 5e5})", "cfg");
  gguf_metadata md = gguf_metadata_for(spec, cfg, "cfg.json");
  auto value = [&](const std::string& key) -> const gguf_value* {
    for (const auto& [k, v] : md)
      if (k == key) return &v;
    return nullptr;
  };
  ASSERT_TRUE(value("llama.attention.key_length") && value("llama.attention.value_length") && value("llama.rope.dimension_count"));
  EXPECT_EQ(value("llama.attention.key_length")->as_u64(), 32u);
  EXPECT_EQ(value("llama.rope.dimension_count")->as_u64(), 32u);
  EXPECT_FLOAT_EQ(static_cast<float>(value("llama.rope.freq_base")->as_f64()), 5e5f) << "plain rope_theta (transformers 4)";
  // A bare file reads it back into head_dim (and the head counts the permutation needs).
  test::temp_dir d;
  test::convert(test::fixture("mixtral/hf"), d / "g", "gguf");
  gguf_file g(d / "g/model.gguf");
  json::value c = gguf_config(g, spec);
  EXPECT_EQ(c.find("model_type")->as_string(), "mixtral");
  EXPECT_EQ(c.find("num_attention_heads")->as_int(), 4);
  EXPECT_EQ(c.find("num_key_value_heads")->as_int(), 2);
  EXPECT_EQ(c.find("num_local_experts")->as_int(), 8);
  EXPECT_EQ(c.find("intermediate_size")->as_int(), 24);
  EXPECT_EQ(c.find("head_dim"), nullptr);
}

TEST(GgufCheckpoint, MixtralGgufFromMistralNativeEqualsFromHf) {
  // The mistral plugin's mixtral variant inherits the gguf layout; its own permute_qk (the
  // same code) decodes wq/wk and encodes attn_q/attn_k.
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture("mixtral/hf") + " " + (d / "native") + " --to mistral");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("convert " + (d / "native") + " " + (d / "from_native") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  test::convert(test::fixture("mixtral/hf"), d / "from_hf", "gguf");
  test::expect_same_tensors(d / "from_native/model.gguf", d / "from_hf/model.gguf");
  // Native wq rows are already in llama.cpp's order: attn_q is wq byte for byte.
  checkpoint native = checkpoint::open(d / "native", {false});
  gguf_file g(d / "from_hf/model.gguf");
  const auto* wk = native.find("layers.1.attention.wk.weight");
  const gguf_tensor* k = g.find_tensor("blk.1.attn_k.weight");
  ASSERT_TRUE(wk && k);
  EXPECT_EQ(bytes_of(g.data(*k), k->nbytes), bytes_of(wk->data(), wk->info->nbytes()));
  r = test::run_moereg("convert " + (d / "from_hf") + " " + (d / "back") + " --to mistral");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  test::expect_same_tensors(d / "back/consolidated.safetensors", d / "native/consolidated.safetensors");
}

TEST(GgufCheckpoint, MixtralHeadCountThatDoesNotSplitTheRowsIsOneError) {
  test::temp_dir d;
  fs::create_directories(d / "m");
  std::string cfg = test::read_bytes(test::fixture("mixtral/hf/config.json"));
  auto at = cfg.find("\"num_key_value_heads\": 2");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, std::strlen("\"num_key_value_heads\": 2"), "\"num_key_value_heads\": 3");
  test::write_bytes(d / "m/config.json", cfg);
  fs::copy_file(test::fixture("mixtral/hf/model.safetensors"), d / "m/model.safetensors");
  auto r = test::run_moereg("convert " + (d / "m") + " " + (d / "g") + " --to gguf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  // Refused with the metadata, before the permute_qk hook would find the rows do not split.
  EXPECT_NE(r.output.find("config.json: 'num_attention_heads' (gguf metadata 'llama.attention.head_count') = 4 is not a "
                          "multiple of 'num_key_value_heads' (gguf metadata 'llama.attention.head_count_kv') = 3"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(d / "g/model.gguf"));
  EXPECT_FALSE(fs::exists(d / "g/.model.gguf.partial"));
}

TEST(GgufCheckpoint, DenseLlamaFileIsNotTakenForMixtral) {
  // Architecture `llama` maps to the mixtral plugin; a dense Llama has no experts to convert.
  test::temp_dir d;
  gguf_metadata md = {{"general.architecture", gguf_value::string("llama")},
                      {"llama.block_count", gguf_value::u32(1)},
                      {"llama.embedding_length", gguf_value::u32(64)},
                      {"llama.feed_forward_length", gguf_value::u32(32)},
                      {"llama.attention.head_count", gguf_value::u32(4)}};
  std::vector<gguf_tensor_spec> specs = {{"token_embd.weight", ggml_type::F32, {16, 64}},
                                         {"blk.0.attn_q.weight", ggml_type::F32, {64, 64}},
                                         {"blk.0.ffn_gate.weight", ggml_type::F32, {32, 64}},
                                         {"blk.0.ffn_up.weight", ggml_type::F32, {32, 64}},
                                         {"blk.0.ffn_down.weight", ggml_type::F32, {64, 32}}};
  gguf_writer w(d / "dense.gguf", md, specs);
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    std::string b = pattern(w.tensors()[i].nbytes, static_cast<unsigned>(i));
    w.write(i, 0, b.data(), b.size());
  }
  w.commit();
  auto r = test::run_moereg("convert " + (d / "dense.gguf") + " " + (d / "out") + " --to hf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(d / "dense.gguf" + ": gguf metadata has no 'llama.expert_used_count'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));
}

}  // namespace test_gguf_checkpoint
