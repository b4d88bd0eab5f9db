// SPDX-License-Identifier: Apache-2.0
// A checkpoint's tokenizer in and out of GGUF (docs/gguf.md): llama.cpp's own vocab-only GGUFs
// -> tokenizer files -> tokenizer.* keys again, key by key; a fixture with a tokenizer.json ->
// .gguf -> safetensors and its tokenizer files; the plugin YAML's gguf.tokenizer_pre.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/gguf/gguf_tokenizer.h"
#include "moereg/layout/family_spec.h"

#include "test_support.h"
#include "tokenizer_support.h"

namespace fs = std::filesystem;

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_tokenizer {
namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Where the keys read back differ, per vocab file: files of older llama.cpp converters, whose
// keys its converter of today would not write either (docs/gguf.md):
// - baichuan has no tokenizer.ggml.pre; a SentencePiece tokenizer now gets "default";
// - command-r and deepseek-coder type added tokens that look special (<|...|>, <｜...｜>) as
//   USER_DEFINED; the converter now makes them CONTROL (does_token_look_special).
const std::map<std::string, std::vector<std::string>> known_losses = {
    {"ggml-vocab-baichuan.gguf", {"tokenizer.ggml.pre"}},
    {"ggml-vocab-command-r.gguf", {"tokenizer.ggml.token_type"}},
    {"ggml-vocab-deepseek-coder.gguf", {"tokenizer.ggml.token_type"}},
};

// The vocab file's tokenizer written as files into `dir`, then read back the way `convert --to
// gguf` reads a checkpoint's (the source's pre name standing in for the family's, its token
// count for config.json's vocab_size).
gguf_tokenizer_result round_trip(const gguf_file& f, const std::string& dir) {
  for (const auto& [name, bytes] : gguf_tokenizer_files(f.metadata(), f.path())) write_bytes(dir + "/" + name, bytes);
  gguf_tokenizer_options o;
  o.pre = f.get_string("tokenizer.ggml.pre").value_or("");
  o.vocab_size = f.find("tokenizer.ggml.tokens")->array_size();
  return gguf_tokenizer_from_dir(dir, o);
}

TEST(GgufTokenizer, LlamaCppVocabsRoundTripThroughTokenizerFilesKeyByKey) {
  const std::vector<std::string> files = llamacpp_vocab_files();
  if (files.empty()) GTEST_SKIP() << "llama.cpp package absent (run scripts/fetch-llamacpp.sh, then re-run cmake)";
  int compared = 0;
  for (const auto& path : files) {
    gguf_file f(path);
    const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
    const std::string name = fs::path(path).filename().string();
    temp_dir d;
    if (model != "gpt2" && model != "llama") {  // bert, t5, gemma4: not written back, and said so
      std::string skipped;
      EXPECT_TRUE(gguf_tokenizer_files(f.metadata(), path, &skipped).empty()) << name;
      EXPECT_TRUE(contains(skipped, "\"" + model + "\"")) << skipped;
      continue;
    }
    if (model == "gpt2" && !f.find("tokenizer.ggml.pre")) {
      // Converted before llama.cpp named pre-tokenizers (aquila, gpt-neox): without the name
      // a BPE tokenizer.json is not converted, and the reason says which YAML key gives it.
      gguf_tokenizer_result back = round_trip(f, d.path());
      EXPECT_TRUE(back.keys.empty()) << name;
      EXPECT_TRUE(contains(back.skipped, "gguf.tokenizer_pre")) << name << ": " << back.skipped;
      continue;
    }
    ++compared;
    gguf_tokenizer_result back = round_trip(f, d.path());
    EXPECT_TRUE(back.skipped.empty()) << name << ": " << back.skipped;
    std::vector<std::string> diff = key_differences(f.metadata(), back.keys);
    auto known = known_losses.find(name);
    std::vector<std::string> expected = known == known_losses.end() ? std::vector<std::string>{} : known->second;
    std::vector<std::string> diff_keys;
    for (const auto& line : diff) diff_keys.push_back(line.substr(0, line.find(':')));
    EXPECT_EQ(diff_keys, expected) << name << ":\n  " << [&] {
      std::string s;
      for (const auto& l : diff) s += l + "\n  ";
      return s;
    }();
  }
  EXPECT_GE(compared, 12);  // the package's gpt2 vocabularies with a pre name, and its llama ones
}

TEST(GgufTokenizer, FixtureWithTokenizerJsonBecomesGgufKeysAndComesBack) {
  // qwen3_moe's hf/ with a small byte-level BPE tokenizer beside it: the .gguf gets llama.cpp's
  // "gpt2" keys with the family's pre-tokenizer, padded to config.json's vocab_size (128).
  temp_dir d;
  fs::create_directories(d / "hf");
  for (std::string f : {"config.json", "model.safetensors"}) fs::copy_file(fixture("qwen3_moe/hf/" + f), d / ("hf/" + f));
  write_small_bpe_tokenizer(d / "hf");
  command_result r = run_moereg("convert " + quoted(d / "hf") + " " + quoted(d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  gguf_file g(d / "g/model.gguf");
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.get_string("tokenizer.ggml.pre"), "qwen2");  // plugins/qwen3_moe: gguf.tokenizer_pre
  const gguf_value* tokens = g.find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  ASSERT_EQ(tokens->array_size(), 128u);
  EXPECT_EQ(tokens->item(108).as_string(), "Hello");
  EXPECT_EQ(tokens->item(110).as_string(), "<|im_start|>");
  EXPECT_EQ(tokens->item(120).as_string(), "[PAD120]");
  const gguf_value* types = g.find("tokenizer.ggml.token_type");
  ASSERT_NE(types, nullptr);
  EXPECT_EQ(types->element_type(), gguf_type::i32);
  EXPECT_EQ(types->item(0).as_i64(), 1);    // NORMAL
  EXPECT_EQ(types->item(111).as_i64(), 3);  // CONTROL
  EXPECT_EQ(types->item(112).as_i64(), 4);  // USER_DEFINED
  EXPECT_EQ(types->item(127).as_i64(), 5);  // UNUSED
  const gguf_value* merges = g.find("tokenizer.ggml.merges");
  ASSERT_NE(merges, nullptr);
  ASSERT_EQ(merges->array_size(), 13u);
  EXPECT_EQ(merges->item(2).as_string(), "\xC4\xA0t he");
  EXPECT_EQ(g.get_uint("tokenizer.ggml.eos_token_id"), 111u);
  EXPECT_EQ(g.get_uint("tokenizer.ggml.padding_token_id"), 109u);
  EXPECT_EQ(g.find("tokenizer.ggml.bos_token_id"), nullptr);  // bos_token null
  ASSERT_NE(g.find("tokenizer.ggml.add_bos_token"), nullptr);
  EXPECT_FALSE(g.find("tokenizer.ggml.add_bos_token")->as_bool());
  EXPECT_TRUE(contains(g.get_string("tokenizer.chat_template").value_or(""), "<|im_start|>{{ m.role }}"));

  // Back to safetensors from the bare file: tokenizer.json and tokenizer_config.json are written
  // from the keys, and read as a checkpoint's again they give the same keys.
  r = run_moereg("convert " + quoted(d / "g/model.gguf") + " " + quoted(d / "back") + " --to hf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(d / "back/tokenizer.json"));
  ASSERT_TRUE(fs::exists(d / "back/tokenizer_config.json"));
  gguf_tokenizer_options o;
  o.pre = "qwen2";
  o.vocab_size = 128;
  EXPECT_EQ(key_differences(g.metadata(), gguf_tokenizer_from_dir(d / "back", o).keys), std::vector<std::string>{});
  // And to a .gguf again from there: the same tokenizer keys.
  r = run_moereg("convert " + quoted(d / "back") + " " + quoted(d / "g2") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(key_differences(g.metadata(), gguf_file(d / "g2/model.gguf").metadata()), std::vector<std::string>{});
}

TEST(GgufTokenizer, WithoutTokenizerFilesTheGgufSaysNoneAsBefore) {
  temp_dir d;
  command_result r = run_moereg("convert " + quoted(fixture("qwen3_moe/hf")) + " " + quoted(d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  gguf_file g(d / "g/model.gguf");
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "none");
  EXPECT_EQ(tokenizer_keys(g.metadata()).size(), 1u);
  EXPECT_EQ(g.get_uint("qwen3moe.vocab_size"), 128u);
}

TEST(GgufTokenizer, TokenIdPastTheVocabularyIsAnErrorNamingTheFile) {
  temp_dir d;
  write_small_bpe_tokenizer(d.path());
  gguf_tokenizer_options o;
  o.pre = "qwen2";
  o.vocab_size = 100;  // the merged tokens and the added ones lie past it
  try {
    gguf_tokenizer_from_dir(d.path(), o);
    FAIL() << "no error";
  } catch (const error& e) {
    EXPECT_TRUE(contains(e.what(), d / "tokenizer.json")) << e.what();
    EXPECT_TRUE(contains(e.what(), "past the model's vocabulary of 100")) << e.what();
  }
}

TEST(GgufTokenizer, ByteLevelBpeWithoutAPreNameIsSkippedAndSaysWhy) {
  temp_dir d;
  write_small_bpe_tokenizer(d.path());
  gguf_tokenizer_result r = gguf_tokenizer_from_dir(d.path(), {});
  EXPECT_TRUE(r.keys.empty());
  EXPECT_TRUE(contains(r.skipped, "gguf.tokenizer_pre")) << r.skipped;
}

TEST(GgufTokenizer, SentencePieceModelRoundTripsBitForBit) {
  std::vector<sentencepiece_piece> pieces = {{"<unk>", 0.0f, gguf_token_type::unknown},
                                             {"<s>", 0.0f, gguf_token_type::control},
                                             {"<0x0A>", 0.0f, gguf_token_type::byte},
                                             {"\xE2\x96\x81the", -1.5f, gguf_token_type::normal},
                                             {"<x>", -1000.0f, gguf_token_type::user_defined}};
  std::string bytes = write_sentencepiece_model(pieces, {});
  std::vector<sentencepiece_piece> back = read_sentencepiece_model(bytes, "t.model");
  ASSERT_EQ(back.size(), pieces.size());
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(back[i].piece, pieces[i].piece);
    EXPECT_EQ(back[i].score, pieces[i].score);
    EXPECT_EQ(back[i].type, pieces[i].type);
  }
  // A truncation inside a field is an error naming the file; one between pieces (protobuf
  // cannot tell) gives the pieces before it, unchanged.
  int refused = 0;
  for (std::size_t n = 1; n < bytes.size(); ++n) {
    try {
      auto p = read_sentencepiece_model(bytes.substr(0, n), "t.model");
      ASSERT_LE(p.size(), pieces.size());
      for (std::size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i].piece, pieces[i].piece) << n;
    } catch (const error& e) {
      ++refused;
      EXPECT_TRUE(contains(e.what(), "t.model")) << e.what();
    }
  }
  EXPECT_GT(refused, 0);
}

family_spec parse(const std::string& gguf_section, const std::string& model_type) {
  const std::string manifest = R"(
name: tiny
version: "1"
api_version: 1
model_types: [tiny_a, tiny_b]
dims: {E: num_experts, H: hidden_size, I: moe_intermediate_size}
moe_layers: {count: num_hidden_layers}
layouts:
  hf:
    experts:
      gate: {key: "layers.{layer}.experts.{expert}.w1.weight"}
      up:   {key: "layers.{layer}.experts.{expert}.w3.weight"}
      down: {key: "layers.{layer}.experts.{expert}.w2.weight"}
gguf:
  architecture: tiny
)" + gguf_section;
  return parse_family_spec(YAML::Load(manifest), "p.yaml", model_type);
}

TEST(GgufTokenizer, PluginYamlDeclaresThePreTokenizerPerModelType) {
  EXPECT_EQ(parse("  tokenizer_pre: qwen2\n", "tiny_a").gguf.tokenizer_pre, "qwen2");
  EXPECT_EQ(parse("", "tiny_a").gguf.tokenizer_pre, "");
  const std::string list = "  tokenizer_pre:\n    - {pre: deepseek-llm, model_type: tiny_a}\n    - {pre: deepseek-v3}\n";
  EXPECT_EQ(parse(list, "tiny_a").gguf.tokenizer_pre, "deepseek-llm");
  EXPECT_EQ(parse(list, "tiny_b").gguf.tokenizer_pre, "deepseek-v3");
  for (const char* bad : {"  tokenizer_pre: {pre: x}\n", "  tokenizer_pre:\n    - {name: x}\n", "  tokenizer_pre: \"\"\n"}) {
    try {
      parse(bad, "tiny_a");
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const error& e) {
      EXPECT_TRUE(contains(e.what(), "p.yaml")) << e.what();
      EXPECT_TRUE(contains(e.what(), "tokenizer_pre")) << e.what();
    }
  }
}

}  // namespace
}  // namespace test_gguf_tokenizer
}  // namespace moereg::test
